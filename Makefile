# Everyday commands. `make run` and `make test` set everything up on first use.
PY := .venv/bin/python

.PHONY: setup run test test-fast lint bench report clean-env

setup:
	scripts/setup.sh
	$(PY) -m panda_core zoo install --json >&2  # the prompt zoo into the cache (docs/zoo.md); idempotent

run: setup
	$(PY) -m streamlit run app.py

test:
	scripts/setup.sh --browser
	$(PY) -m pytest -q -m "slow or not slow"

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

lint:
	$(PY) -m ruff check panda_core pages app.py tests

bench: setup
	$(PY) -m panda_core bench --json

report: setup
	$(PY) -m panda_core report --json

clean-env:
	rm -rf .venv
