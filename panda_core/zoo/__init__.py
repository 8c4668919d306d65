"""The prompt zoo: prompts trained by the project itself and shipped in the
repository (`zoo/` at its root), so a fresh clone has real prompts, and a
study bundle computed from them, before anything is trained here.

- `files`: where the zoo lives, its manifest, the checks of its files;
- `plan`: what the zoo holds (backbones, tasks, prompt types, budgets) and its expected size;
- `scoring`: scoring a prompt on its own task or zero-shot on another, as training and transfer do;
- `build`: `zoo build`, training or reusing each planned prompt and writing its file;
- `install`: `zoo install` / `zoo list`, the zoo's prompts in the cache (origin "zoo");
- `bundle_build`: `zoo bundle`, the zero-shot matrix, indicator matrices, layouts and correlations.

Reading the bundle (what the app shows on a fresh clone) lives in
`panda_core.ops.bundle`. docs/zoo.md says what is in the zoo and why.
Importing this package loads no torch.
"""

from __future__ import annotations

from .files import (
    BUNDLE,
    CHECK_ITEMS,
    ENV,
    MANIFEST,
    SIZE_BUDGET,
    entry_problems,
    read_manifest,
    zoo_dir,
    zoo_problems,
)

__all__ = ["BUNDLE", "CHECK_ITEMS", "ENV", "MANIFEST", "SIZE_BUDGET", "entry_problems", "read_manifest", "zoo_dir",
           "zoo_problems"]
