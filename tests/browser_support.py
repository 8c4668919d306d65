"""The real-browser plumbing shared by the browser tests: `streamlit run app.py`
on a free localhost port over a given cache, headless Debian Chromium driven by
Python playwright, and the waits and checks every page test needs.

Both context managers skip the test (with the reason) when /usr/bin/chromium or
playwright is absent, and always stop what they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("PANDA_SCREENSHOTS", ROOT / "docs" / "img"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium, or scripts/setup.sh --browser)")
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")


@contextmanager
def streamlit_server(cache: Path, extra_env: dict[str, str] | None = None,
                     unset: tuple[str, ...] = ()) -> Iterator[str]:
    """`streamlit run app.py` on a free port over `cache` (with `extra_env` set and
    the variables in `unset` removed); yields its URL and is always killed at
    the end (its whole process group)."""
    _require_browser()
    port = _free_port()
    env = os.environ | {"PANDA_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env |= extra_env or {}
    for name in unset:
        env.pop(name, None)
    log = open(cache / "streamlit-test.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start listening within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@contextmanager
def chromium_page() -> Iterator:
    """One headless Chromium tab (1400 x 1800), closed at the end."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def settle(page, text: str, timeout: float = 120, plots: int = 0) -> None:
    """Wait for the page's own content (Streamlit renders over a websocket, so
    the load event says nothing), then until no spinner or running script is
    left and at least `plots` plotly figures are drawn."""
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout * 1000)
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = page.locator('[data-testid="stSpinner"], [data-testid="stStatusWidgetRunningIcon"], '
                            '[data-stale="true"]').count()
        if not busy and page.locator(".js-plotly-plot").count() >= plots:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"page with '{text}' still busy after {timeout:.0f} s")
    time.sleep(1.5)  # let plotly finish drawing


def no_exception(page) -> None:
    """No Python exception box and no error alert on the page."""
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.locator(
        '[data-testid="stAlertContentError"]').first.inner_text()


def shoot(page, name: str) -> None:
    """Screenshot the whole page. Streamlit scrolls inside its main container,
    so the viewport is grown to the content's height for the picture."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : 1800; }")
    page.set_viewport_size({"width": 1400, "height": int(min(max(900, height + 20), 6000))})
    time.sleep(1.5)  # plotly redraws on resize
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1800})
