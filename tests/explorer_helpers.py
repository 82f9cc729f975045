"""A real ``vaekit explore`` server in a subprocess, plain HTTP requests to it, and headless Chromium
(Debian's, driven by Playwright; no browser download) for the explorer tests.

Run as a script to refresh the documentation screenshots from finished runs:
    python tests/explorer_helpers.py OUT.png RUN [RUN_B]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SRC = Path(__file__).resolve().parents[1] / "src"


@contextlib.contextmanager
def explorer(*runs: Path | str, extra: tuple[str, ...] = (), cwd: Path | None = None) -> Iterator[str]:
    """``python -m vaekit explore RUNS --port 0`` in a subprocess; yields its printed base URL
    (``http://127.0.0.1:PORT/``) once it listens; the server is stopped afterwards."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", *map(str, runs), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+/)", line)
        if match is None:
            proc.kill()
            raise AssertionError(f"the explorer did not start: {line!r}\n{proc.communicate()[1][-3000:]}")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def request(url: str, body: Any = None, raw: bytes | None = None, method: str | None = None,
            ) -> tuple[int, str, dict[str, Any] | None]:
    """(status, content type, JSON body or None) of one HTTP request; ``body`` is sent as JSON, ``raw`` as is."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, payload = err.code, err.headers.get("Content-Type", ""), err.read()
        err.close()
    parsed = json.loads(payload) if ctype.startswith("application/json") else None
    return status, ctype, parsed


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """(a Playwright page in headless Chromium, the list its console errors and page errors go into)."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


def open_explorer(page: Any, url: str) -> None:
    """Load the page and wait until every panel's map is drawn and its first decode shown."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


def point_position(page: Any, panel: int, j: int) -> tuple[float, float]:
    """Client coordinates of map point ``j`` of panel ``panel``."""
    x, y = page.evaluate(f"window.explorer.panels[{panel}].clientPosition({j})")
    return float(x), float(y)


def docs_screenshot(out: Path, *runs: str) -> Path:  # pragma: no cover - documentation helper
    """A screenshot of the explorer on ``runs``: in each panel an interpolation between map points 0 and 7
    and a drag from the map's centre to the same place near its top-left corner (20% in from each edge),
    whose decode is shown; then the first panel's most isolated point hovered."""
    with explorer(*runs) as url, browser_page(1500, 1000) as (page, errors):
        open_explorer(page, url)
        n = page.evaluate("window.explorer.panels.length")
        for i in range(n):
            box = page.locator(f"#run-{i} canvas.map").bounding_box()
            cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
            page.mouse.move(*point_position(page, i, 0))
            page.mouse.down()
            page.mouse.up()
            page.locator(f"#run-{i} .set-a").click()
            page.mouse.move(*point_position(page, i, 7))
            page.mouse.down()
            page.mouse.up()
            page.locator(f"#run-{i} .set-b").click()
            page.locator(f"#run-{i} .interpolate").click()
            page.wait_for_selector(f"#run-{i}[data-interpolated]")
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2, steps=8)
            page.mouse.up()
        j = page.evaluate("window.explorer.panels[0].isolatedPoint()")
        page.mouse.move(*point_position(page, 0, j))
        page.wait_for_selector(f"#run-0[data-hover-point='{j}']", state="attached")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out), full_page=True)
        assert not errors, errors
    return out


if __name__ == "__main__":  # pragma: no cover
    print(docs_screenshot(Path(sys.argv[1]), *sys.argv[2:]))
