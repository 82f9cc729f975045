"""The report and the comparison page as a person sees them: rendered by headless Chromium.

For each page: no broken image, no script error, every section present (from the rendered DOM), and a
screenshot that is not blank. Skipped when `chromium` is not installed (scripts/install-browser.sh).

Run as a script to refresh the documentation screenshots from finished runs:
    python tests/test_browser.py runs/<name>/report.html docs/report.png
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_vaekit
from PIL import Image

from vaekit.report import COMPARE_SECTION_IDS, SECTION_IDS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH; run scripts/install-browser.sh")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--virtual-time-budget=10000"]
# Injected into a copy of the page: records script errors, console.error calls and broken images into
# attributes of <html> once the page has loaded (the report itself has no scripts).
PROBE = """<script>
(function () {
  var errors = [];
  window.onerror = function (msg) { errors.push(String(msg)); };
  var consoleError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
    var root = document.documentElement;
    root.setAttribute("data-images", String(imgs.length));
    root.setAttribute("data-broken-images", String(broken));
    root.setAttribute("data-errors", JSON.stringify(errors));
    root.setAttribute("data-probe", "done");
  });
})();
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def rendered_dom(page: Path, profile: Path) -> tuple[str, str]:
    """(DOM after load, Chromium's stderr) of ``page`` with the probe script injected into a copy."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    proc = chromium("--dump-dom", probed.resolve().as_uri(), profile=profile)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def screenshot(page: Path, out: Path, profile: Path, height: int = 4000) -> Image.Image:
    proc = chromium(f"--screenshot={out}", f"--window-size=1280,{height}", page.resolve().as_uri(), profile=profile)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    image = Image.open(out)
    image.load()
    return image


def check_page(page: Path, sections: tuple[str, ...], tmp: Path) -> Image.Image:
    dom, log = rendered_dom(page, tmp / "profile")
    assert 'data-probe="done"' in dom, "the page never finished loading"
    n_images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert n_images >= 4
    assert re.search(r'data-broken-images="(\d+)"', dom).group(1) == "0"
    assert re.search(r'data-errors="([^"]*)"', dom).group(1) == "[]"
    assert "Uncaught" not in log  # script errors also reach Chromium's console log
    ids = re.findall(r'<section id="([^"]+)"', dom)
    for sid in sections:
        assert sid in ids, f"section {sid} missing from the rendered page"
    shot = screenshot(page, tmp / f"{page.stem}.png", tmp / "profile")
    assert shot.size == (1280, 4000)
    pixels = np.asarray(shot.convert("L"), dtype=np.float64)
    assert pixels.std() > 10, "blank screenshot"
    assert (pixels < 128).mean() > 0.01  # dark pixels: text and figures were drawn
    return shot


def test_report_and_comparison_render_in_chromium(tmp_path):
    def vaekit(*args: str) -> None:
        run_vaekit(*args, cwd=tmp_path, check=True)

    vaekit("compare", "--train", "ae,vae,beta-vae:4", "--name", "cmp", "--train.epochs", "3",
           "--model.latent_dim", "2", "--model.hidden", "64", "--data.limit", "600", "--k", "20", "--no-progress")
    vaekit("report", "runs/cmp/vae")
    check_page(tmp_path / "runs" / "cmp" / "vae" / "report.html", SECTION_IDS, tmp_path)
    check_page(tmp_path / "runs" / "cmp" / "compare.html", (*COMPARE_SECTION_IDS, "rate-distortion"), tmp_path)


def test_the_probe_sees_broken_images_and_script_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><section id="a">'
                    '<img alt="bad" src="data:image/png;base64,AAAA"></section>'
                    '<script>undefinedFunction();</script></body></html>')
    dom, _ = rendered_dom(page, tmp_path / "profile")
    assert re.search(r'data-broken-images="(\d+)"', dom).group(1) == "1"
    assert "undefinedFunction" in re.search(r'data-errors="([^"]*)"', dom).group(1)


def save_docs_screenshot(page: Path, out: Path, height: int = 9000) -> Path:
    """A full-page screenshot of ``page``, the empty bottom cropped away, written to ``out``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shot = screenshot(page, Path(tmp) / "shot.png", Path(tmp) / "profile", height=height).convert("RGB")
    pixels = np.asarray(shot.convert("L"))
    rows = np.nonzero((pixels < 240).any(1))[0]
    bottom = min(int(rows.max()) + 24, shot.height) if len(rows) else shot.height
    shot.crop((0, 0, shot.width, bottom)).save(out, optimize=True)
    return out


if __name__ == "__main__":  # pragma: no cover - documentation helper
    print(save_docs_screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
