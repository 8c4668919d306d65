"""Reading a user's table file (CSV/TSV/JSONL/JSON/parquet, optionally gzipped)
into a DataFrame, and its cells into labels and texts.

Users get files wrong in many ways (encodings, binary files, duplicated
headers, huge files, bad gzip): each is refused with a one-line `PandaError`
that names the fix. Nothing here writes anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import PandaError
from .files import one_line

USER_MAX_BYTES = 50 * 1024 * 1024
USER_MAX_ROWS = 200_000
USER_MAX_UNPACKED = 4 * USER_MAX_BYTES  # a .gz file may unpack to at most this much
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".jsonl", ".ndjson", ".jsonl.gz", ".json")


def show(value: Any, limit: int = 40) -> str:
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
                    raise PandaError(f"{show(path.name)} unpacks to more than {USER_MAX_UNPACKED // 2**20} MB; "
                                     "sample it down first")
    except (OSError, EOFError, zlib.error) as exc:
        raise PandaError(f"{show(path.name)} is not a readable gzip file ({show(one_line(exc), 80)}); "
                         "compress it again or give the plain file") from None
    return bytes(out)


def _check_text(path: Path, data: bytes) -> str:
    """Decode a text table: refuses binary files and other encodings with the fix."""
    name = show(path.name)
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


def read_table(path: Path) -> Any:
    """A DataFrame from CSV/TSV/JSONL/JSON/parquet with one-line errors for what users get wrong."""
    import io

    import pandas as pd

    suffix = _suffix(path)
    name = show(path.name)
    if suffix not in _TEXT_SUFFIXES + (".parquet", ".pq"):
        raise PandaError(f"{name}: unsupported file type '{show(suffix, 16)}'; use .csv, .tsv, .jsonl or .parquet")
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
                    raise PandaError(f"column '{show(dup)}' appears twice in the header of {name}; "
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
        raise PandaError(f"cannot read {name}: {show(one_line(exc), 120)}; install pyarrow") from None
    except (MemoryError, RecursionError):
        raise PandaError(f"{name} is too large or too deeply nested to read; sample it down first") from None
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise PandaError(f"cannot read {name} as {suffix.lstrip('.')}: {show(one_line(exc), 160)}; "
                         "check the file format") from None
    if not isinstance(df, pd.DataFrame):
        raise PandaError(f"{name} does not hold a table; give rows with a text and a label column")
    names = [str(c) for c in df.columns]
    dup = next((c for c in names if names.count(c) > 1), None)
    if dup is not None:
        raise PandaError(f"column '{show(dup)}' appears twice in {name}; rename one of them")
    df.columns = names
    return df


def label_value(v: Any) -> Any:
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
    return text_value(v)


def text_value(v: Any) -> str:
    """A cell as text: bytes decoded as UTF-8, unpaired surrogates replaced."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise PandaError("a cell holds bytes that are not UTF-8 text; store text columns as UTF-8 strings") from None
    text = str(v)
    return text.encode("utf-8", "replace").decode("utf-8").strip()


def is_missing(v: Any) -> bool:
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


def verbalizer(label: str) -> str:
    words = re.findall(r"[A-Za-z]+", label)
    return words[0].lower() if words else label


__all__ = ["USER_MAX_BYTES", "USER_MAX_ROWS", "USER_MAX_UNPACKED", "show", "read_table", "label_value",
           "text_value", "is_missing", "verbalizer"]
