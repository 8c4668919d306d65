"""Generated blocks inside hand-written markdown pages: a table a study renders
goes between `<!-- NAME:start -->` and `<!-- NAME:end -->`, so regenerating it
never touches the prose around it."""

from __future__ import annotations

from pathlib import Path


def write_block(path: Path, name: str, body: str) -> None:
    """Replace the block `name` of `path` with `body` (appended at the end when the page has none yet)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = Path(path).read_text()
    if start not in text:
        text = f"{text.rstrip()}\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    Path(path).write_text(f"{head}{start}\n{body}\n{end}{tail}")
