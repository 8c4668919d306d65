"""The first look of a fresh clone, in a real browser (issue 13): with an empty
cache set up the way `make run` sets it up (task data and models prepared,
then `zoo install`), and no training run at all, the first visit to each of
Similarity, Clusters, Transfer and Metric validation shows real content - a
heatmap, a UMAP plot, a source ranking and a metric-validation table - and
says that it comes from the zoo and the study bundle shipped with the tool.

The shipped zoo (`zoo/`) is what is tested: it is installed by the project's
own command into a cache that holds no prompt and no run. Each page's time
from navigation to settled is printed (the bench's `page_render` case is the
measurement of record). Skipped with the reason when the shipped zoo has no
bundle yet, or when Chromium or playwright is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import ROOT, chromium_page, no_exception, settle, shoot, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHIPPED = ROOT / "zoo"
#: (url path, screenshot name, the caption that says the content is bundled, plotly figures expected)
FIRST_LOOK = [
    ("Similarity", "first_look_similarity", "Matrices bundled with the tool", 1),
    ("Clusters", "first_look_clusters", "UMAP coordinates bundled with the tool", 1),
    ("Transfer", "first_look_transfer", "Indicator scores bundled with the tool", 0),
    ("Metric_validation", "first_look_metric_validation", "Measured transfer: bundled with the tool", 0),
]


def _shipped_bundle() -> bool:
    manifest = json.loads((SHIPPED / "MANIFEST.json").read_text())
    return bool(manifest["prompts"]) and (SHIPPED / "bundle.json").is_file()


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory) -> Path:
    """A cache as a fresh clone has it after `make setup`: prepared tasks and
    models (linked from the project cache), the shipped zoo installed by
    `python -m panda_core zoo install`, and no prompt or run of the user's."""
    if not _shipped_bundle():
        pytest.skip("the shipped zoo has no prompts or bundle yet: `python -m panda_core zoo build` then "
                    "`zoo bundle` (docs/zoo.md)")
    from conftest import link_project_data

    root = tmp_path_factory.mktemp("first_look") / "cache"
    root.mkdir()
    link_project_data(root)
    env = os.environ | {"PANDA_CACHE": str(root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PANDA_ZOO_DIR", None)
    done = subprocess.run([sys.executable, "-m", "panda_core", "zoo", "install", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    installed = json.loads(done.stdout)
    assert installed["installed"] and not installed["problems"], installed
    return root


@pytest.fixture(scope="module")
def server(fresh_cache):
    with streamlit_server(fresh_cache, unset=("PANDA_ZOO_DIR",)) as url:  # the shipped zoo, as on a fresh clone
        yield url


@pytest.mark.parametrize("path,name,caption,plots", FIRST_LOOK, ids=[p[0] for p in FIRST_LOOK])
def test_first_visit_shows_bundled_content(server, fresh_cache, path, name, caption, plots):
    with chromium_page() as page:  # a new tab: a first visit, with nothing in the session
        start = time.perf_counter()
        page.goto(f"{server}/{path}")
        settle(page, caption, timeout=120, plots=plots)
        seconds = time.perf_counter() - start - 1.5  # settle's drawing pause
        no_exception(page)
        body = page.locator("[data-testid='stMain']").first.inner_text()
        assert "train prompts first" not in body.lower()
        assert "zoo prompts" in body  # the page says which prompts it shows
        if path == "Transfer":
            assert page.locator("[data-testid='stDataFrame']").count() >= 1  # the source ranking
            assert "values bundled with the tool" in body and "(measured: zero-shot" in body  # its measured column
        if path == "Metric_validation":
            assert page.get_by_text("Spearman", exact=False).count() >= 1
            assert page.locator("[data-testid='stTable']").count() >= 1
        print(f"first visit to {path}: {seconds:.1f} s to settled content")
        shoot(page, name)
    runs = fresh_cache / "runs.sqlite"
    if runs.exists():
        import sqlite3

        with sqlite3.connect(runs) as db:
            assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0, "a page started a run"
