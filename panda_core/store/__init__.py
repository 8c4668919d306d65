"""The cache: prompt artifacts (safetensors + JSON sidecar) and the run
registry (one SQLite database in WAL mode).

- `db`: schema, connections, write transactions, in-place migrations;
- `artifacts`: prompt files and their rows, and THE rule for a task's
  prompt (`latest_prompt`: the user's own prompts win over the zoo's);
- `runs`: the run registry (typed `Run` records, curves, the job queue's claim);
- `uploads`: staging files uploaded through the app.

The file checks (`inspect_safetensors`, `read_prompt_file`, ...) live in
`prompts.formats` and are re-exported here for older callers.
"""

from __future__ import annotations

from ..atomic import sha256_file
from ..prompts.formats import (
    FLOAT_DTYPES,
    MAX_PROMPT_BYTES,
    inspect_safetensors,
    read_prompt_file,
)
from .artifacts import (
    USER,
    ZOO,
    add_prompt_file,
    delete_prompt,
    drop_prompt_row,
    is_registered,
    latest_prompt,
    latest_prompt_id,
    latest_prompts,
    list_prompts,
    load_prompt,
    new_prompt_id,
    prompt_origin,
    prompt_path,
    prompt_rows,
    prompt_writer,
    register_prompt_row,
    save_prompt,
    without_shadowed_zoo,
)
from .db import _READY as _READY  # used by tests that move the database aside
from .db import SCHEMA, connect, forget, transaction
from .db import _query as _query  # used by older callers
from .runs import (
    ACTIVE,
    Run,
    add_curve_point,
    cancel_requested,
    claim_run,
    create_run,
    curve,
    done_run_for_key,
    done_runs_of_prompts,
    fail_dead_run,
    get_run,
    list_runs,
    run_record,
    run_records,
    update_run,
)
from .uploads import safe_filename, staged_upload

__all__ = [
    "ACTIVE", "FLOAT_DTYPES", "MAX_PROMPT_BYTES", "SCHEMA", "USER", "ZOO", "Run",
    "add_curve_point", "add_prompt_file", "cancel_requested", "claim_run", "connect", "create_run", "curve", "delete_prompt",
    "done_run_for_key", "done_runs_of_prompts", "drop_prompt_row", "fail_dead_run", "forget", "get_run", "inspect_safetensors",
    "is_registered", "latest_prompt", "latest_prompt_id", "latest_prompts", "list_prompts", "list_runs",
    "load_prompt", "new_prompt_id", "prompt_origin", "prompt_path", "prompt_rows", "prompt_writer", "read_prompt_file",
    "register_prompt_row", "run_record", "run_records", "safe_filename", "save_prompt", "sha256_file",
    "staged_upload", "transaction", "update_run", "without_shadowed_zoo",
]
