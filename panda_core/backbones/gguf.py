"""Model sizes from a GGUF file's header alone (smollm2 ships as a 4-bit GGUF
file), so listing backbones never parses the tokenizer arrays or loads
weights."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any


def _read_gguf_sizes(path: Path) -> dict[str, int]:
    """hidden / layers / FFN / vocab from a GGUF header, skipping the tokenizer
    arrays: gguf.GGUFReader parses everything and takes ~4 s."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    want = {"embedding_length": "hidden_size", "block_count": "num_layers", "feed_forward_length": "ffn_size"}
    found: dict[str, int] = {}
    with open(path, "rb") as fh:

        def read(fmt: str) -> Any:
            return struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))[0]

        def read_str() -> str:
            return fh.read(read("Q")).decode("utf-8", "replace")

        def skip(vtype: int) -> None:
            if vtype in scalar:
                fh.seek(struct.calcsize(scalar[vtype]), io.SEEK_CUR)
            elif vtype == 8:
                fh.seek(read("Q"), io.SEEK_CUR)
            elif vtype == 9:
                itype, count = read("I"), read("Q")
                if itype in scalar:
                    fh.seek(struct.calcsize(scalar[itype]) * count, io.SEEK_CUR)
                else:
                    for _ in range(count):
                        skip(itype)
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")

        if fh.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        read("I")  # version
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key, vtype = read_str(), read("I")
            short = key.rsplit(".", 1)[-1]
            if key.count(".") == 1 and short in want and vtype in scalar:
                found[want[short]] = int(read(scalar[vtype]))
                if len(found) == len(want):
                    break
            else:
                skip(vtype)
    return found
