"""The latent explorer (``vaekit explore``) against a real server started by the test (a subprocess on
127.0.0.1, port 0) and, for the page, a real headless Chromium driven by Playwright.

References are independent of the explorer: decoded outputs are compared with ``model.decode`` of the
run loaded by ``vaekit.api.load`` (pixels re-quantised by numpy), the PCA map with a numpy SVD of the
codes computed here from ``model.encode``, the KL order with torch.distributions' closed-form KL.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from explorer_helpers import CHROMIUM, browser_page, explorer, open_explorer, point_position, request
from PIL import Image
from tiny_runs import tiny_config
from torch.distributions import Normal, kl_divergence

from vaekit.api import load
from vaekit.runload import load_run
from vaekit.train import fit


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs: digits d = 2 (VAE), digits d = 4 label-conditional (VAE), a CSV table d = 2
    conditioned on one covariate column (dose)."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    a, b, dose = rng.normal(size=(400, 1)), rng.normal(size=(400, 1)), rng.uniform(0, 5, size=(400, 1))
    table = np.hstack([a, a + b + 0.5 * dose, 10 + 3 * b, dose])
    csv = root / "table.csv"
    csv.write_text("height,weight,age,dose\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in table) + "\n")
    out = {}
    for name, extra in (("vae2", {}), ("cvae4", {"model.latent_dim": "4", "model.condition": "label"}),
                        ("table", {"data.path": str(csv), "data.name": "", "model.likelihood": "gaussian",
                                   "model.condition": "covariates", "data.condition_columns": "dose"})):
        out[name] = fit(tiny_config(name=name, **{"train.epochs": "1", **extra}), runs_root=root)[0]
    return out


@pytest.fixture(scope="module")
def server(runs):
    """One explorer serving the two digits runs side by side: yields its base URL."""
    with explorer(runs["vae2"], runs["cvae4"]) as url:
        yield url


def png_pixels(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def expected_pixels(x: torch.Tensor) -> np.ndarray:
    """Decoder means of a Bernoulli run (values in [0, 1]) as 8-bit grey levels."""
    return np.rint(np.clip(x.double().numpy(), 0, 1) * 255).astype(np.uint8)


def test_the_server_binds_loopback_and_describes_both_runs(server, runs):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server)
    status, _, info = request(server + "api/runs")
    assert status == 200
    a, b = info["runs"]
    assert (a["name"], a["latent_dim"], a["condition"], list(a["methods"])) == ("vae2", 2, "none", ["latent"])
    assert (b["name"], b["latent_dim"], b["condition"], b["n_classes"]) == ("cvae4", 4, "label", 10)
    assert b["methods"]["pca"] is None and b["methods"]["tsne"] is None
    assert b["methods"]["umap"] is not None and "umap-learn" in b["methods"]["umap"]  # not installed
    status, ctype, _ = request(server)
    assert status == 200 and ctype.startswith("text/html")


def test_sliders_are_ordered_by_closed_form_kl(server, runs):
    model, _, _, data = load_run(runs["vae2"])
    with torch.no_grad():
        q = model.encode(data.test.x)
        kl = kl_divergence(Normal(q.mean, q.stddev), Normal(0.0, 1.0)).double().mean(0).numpy()
    dims = request(server + "api/runs")[2]["runs"][0]["dims"]
    assert [d["dim"] for d in dims] == list(np.argsort(-kl, kind="stable"))
    np.testing.assert_allclose([d["kl"] for d in dims], kl[[d["dim"] for d in dims]], rtol=1e-5)


def test_decode_is_model_decode_and_the_2d_map_is_the_latent_plane(server, runs):
    model = load(runs["vae2"]).eval()
    z = [0.7, -1.3]
    status, _, out = request(server + "api/runs/0/decode", {"z": z})
    assert status == 200 and out["z"] == z
    with torch.no_grad():
        ref = model.decode(torch.tensor([z])).mean[0]
    np.testing.assert_array_equal(png_pixels(out["output"]["png"]), expected_pixels(ref))
    status, _, at = request(server + "api/runs/0/decode", {"map": [0.25, -0.5], "method": "latent"})
    assert status == 200 and at["z"] == [0.25, -0.5]
    _, _, points = request(server + "api/runs/0/map?method=latent")
    _, _, _, data = load_run(runs["vae2"])
    with torch.no_grad():
        means = model.encode(data.test.x).mean.double().numpy()
    np.testing.assert_allclose(points["points"], means, atol=1e-4)
    assert points["labels"] == data.test.y.tolist()


def test_pca_map_decodes_its_inverse_plus_the_mean_with_the_chosen_label(server, runs):
    model, _, _, data = load_run(runs["cvae4"])
    with torch.no_grad():
        codes = model.encode(data.test.x, y=data.test.y).mean.double().numpy()
    centre = codes.mean(0)
    _, _, vt = np.linalg.svd(codes - centre, full_matrices=False)
    status, _, m = request(server + "api/runs/1/map?method=pca")
    assert status == 200
    points = np.asarray(m["points"])
    reference = (codes - centre) @ vt[:2].T
    signs = np.sign((points * reference).sum(0))  # principal axes are defined up to sign
    np.testing.assert_allclose(points, reference * signs, atol=1e-4)
    uv = [0.4, -0.3]
    status, _, out = request(server + "api/runs/1/decode", {"map": uv, "method": "pca", "label": 3})
    assert status == 200
    np.testing.assert_allclose(out["z"], centre + np.asarray(uv) @ (vt[:2] * signs[:, None]), atol=1e-6)
    with torch.no_grad():
        ref3 = model.decode(torch.tensor([out["z"]], dtype=torch.float32), y=torch.tensor([3])).mean[0]
    np.testing.assert_array_equal(png_pixels(out["output"]["png"]), expected_pixels(ref3))
    other = request(server + "api/runs/1/decode", {"z": out["z"], "label": 7})[2]
    assert not np.array_equal(png_pixels(other["output"]["png"]), png_pixels(out["output"]["png"]))


def test_a_point_shows_its_input_and_the_models_reconstruction(server, runs):
    model = load(runs["vae2"]).eval()
    status, _, p = request(server + "api/runs/0/points/5")
    assert status == 200 and p["index"] == 5
    x = png_pixels(p["input"]["png"])
    assert set(np.unique(x)) <= {0, 255}  # the served input of a Bernoulli run: binarised
    x_hat = model.reconstruct(torch.from_numpy(x / 255.0).float()[None])[0]
    np.testing.assert_array_equal(png_pixels(p["reconstruction"]["png"]), expected_pixels(x_hat))


def test_interpolation_decodes_the_straight_line(server, runs):
    model = load(runs["vae2"]).eval()
    a, b = [-1.0, 2.0], [1.5, -0.5]
    status, _, out = request(server + "api/runs/0/interpolate", {"from": a, "to": b, "steps": 5})
    assert status == 200
    line = np.linspace(0, 1, 5)[:, None] * (np.asarray(b) - a) + a
    np.testing.assert_allclose(out["z"], line, atol=1e-12)
    with torch.no_grad():
        ref = model.decode(torch.tensor(line, dtype=torch.float32)).mean
    for got, want in zip(out["outputs"], ref, strict=True):
        np.testing.assert_array_equal(png_pixels(got["png"]), expected_pixels(want))


BAD = [  # (path, JSON body or raw bytes, status, words the message must hold)
    ("api/runs/0/decode", {"z": [1.0]}, 400, ("list of 2 numbers", "list of 1")),
    ("api/runs/0/decode", {"z": [1.0, 2.0, 3.0]}, 400, ("list of 2 numbers",)),
    ("api/runs/0/decode", b'{"z": [NaN, 0]}', 400, ("NaN",)),
    ("api/runs/0/decode", b'{"z": [1e999, 0]}', 400, ("NaN or infinite",)),
    ("api/runs/0/decode", {"z": ["a", 0]}, 400, ("only numbers",)),
    ("api/runs/0/decode", {"z": [True, 0]}, 400, ("only numbers",)),
    ("api/runs/0/decode", {"z": "0,0"}, 400, ("list of 2 numbers",)),
    ("api/runs/0/decode", b"{not json", 400, ("not JSON",)),
    ("api/runs/0/decode", b"[0, 0]", 400, ("JSON object",)),
    ("api/runs/0/decode", {}, 400, ('"z"', '"map"')),
    ("api/runs/0/decode", {"z": [0, 0], "label": 1}, 400, ("not label-conditional",)),
    ("api/runs/0/decode", {"map": [0, 0], "method": "pca"}, 400, ("latent",)),
    ("api/runs/1/decode", {"z": [0, 0, 0, 0]}, 400, ("label-conditional", "0..9")),
    ("api/runs/1/decode", {"z": [0, 0, 0, 0], "label": 10}, 400, ("0..9",)),
    ("api/runs/1/decode", {"z": [0, 0, 0, 0], "label": 2.5}, 400, ("whole number",)),
    ("api/runs/0/interpolate", {"from": [0, 0], "to": [1, 1], "steps": 1}, 400, ("2..32",)),
    ("api/runs/0/interpolate", {"from": [0, 0], "to": [1]}, 400, ('"to"',)),
    ("api/runs/0/map?method=umap", None, 400, ("latent",)),
    ("api/runs/1/map?method=umap", None, 400, ("unavailable", "umap-learn")),
    ("api/runs/0/points/99999", None, 400, ("does not exist",)),
    ("api/runs/2/map", None, 404, ("runs 0..1",)),
    ("api/runs/0/decode", None, 405, ("POST",)),
    ("api/runs/0/map", {"z": [0, 0]}, 405, ("GET",)),
    ("etc/passwd", None, 404, ("no such page",)),
    ("static/../app.py", None, 404, ("no such page",)),
    ("api/runs/0/decode", b'{"z": [' + b"0," * 40000 + b"0]}", 413, ("limited",)),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_requests_get_a_status_and_a_json_message(server, path, body, status, words):
    raw = body if isinstance(body, bytes) else None
    got, ctype, payload = request(server + path, None if raw is not None else body, raw=raw)
    assert got == status
    assert ctype == "application/json" and set(payload) == {"error"}
    assert "Traceback" not in payload["error"] and "\n" not in payload["error"]
    for word in words:
        assert word in payload["error"]


def test_a_table_run_decodes_a_row_in_data_units_with_a_points_covariates(runs):
    model, _, _, data = load_run(runs["table"])
    model.eval()
    z = [0.5, -1.0]
    with explorer(runs["table"]) as url:
        info = request(url + "api/runs")[2]["runs"][0]
        assert info["condition"] == "covariates"
        assert info["view"] == {"kind": "table", "columns": ["height", "weight", "age"]}
        status, _, out = request(url + "api/runs/0/decode", {"z": z, "point": 3})
        row = request(url + "api/runs/0/points/3")[2]["row"]
        mean_c = request(url + "api/runs/0/decode", {"z": z})[2]
    assert status == 200 and out["output"]["columns"] == ["height", "weight", "age"]
    with torch.no_grad():
        ref = model.decode(torch.tensor([z]), c=data.test.c[row:row + 1]).mean[0].double().numpy()
        ref_mean = model.decode(torch.tensor([z]), c=data.test.c.mean(0, keepdim=True)).mean[0].double().numpy()
    np.testing.assert_allclose(out["output"]["values"], ref, rtol=1e-5)
    np.testing.assert_allclose(mean_c["output"]["values"], ref_mean, rtol=1e-5)
    assert 5 < out["output"]["values"][2] < 15  # data units: the age column is centred near 10, not 0


def test_tsne_map_decodes_a_points_code_and_between_points_its_neighbours(server, runs):
    model, _, _, data = load_run(runs["cvae4"])
    with torch.no_grad():
        codes = model.encode(data.test.x, y=data.test.y).mean.double().numpy()
    status, _, m = request(server + "api/runs/1/map?method=tsne")
    assert status == 200
    points = np.asarray(m["points"])
    assert points.shape == (len(codes), 2) and np.isfinite(points).all()
    at = request(server + "api/runs/1/decode", {"map": m["points"][11], "method": "tsne", "label": 0})[2]
    np.testing.assert_allclose(at["z"], codes[11], rtol=0, atol=1e-6)  # the point's own code
    uv = points[11] + np.array([0.37, -0.21])
    between = request(server + "api/runs/1/decode", {"map": uv.tolist(), "method": "tsne", "label": 0})[2]
    dist = np.linalg.norm(points - uv, axis=1)
    near = np.argsort(dist)[:5]
    expected = (codes[near] / dist[near, None]).sum(0) / (1 / dist[near]).sum()
    np.testing.assert_allclose(between["z"], expected, rtol=1e-9, atol=1e-9)


def test_cli_refuses_three_runs_a_bad_port_and_a_missing_run(runs, tmp_path):
    three = run_vaekit("explore", str(runs["vae2"]), str(runs["vae2"]), str(runs["vae2"]), "--port", "0")
    assert three.returncode == 2 and three.stderr.startswith("vaekit: error:") and "two" in three.stderr
    port = run_vaekit("explore", str(runs["vae2"]), "--port", "70000")
    assert port.returncode == 2 and "--port" in port.stderr and len(port.stderr.strip().splitlines()) == 1
    missing = run_vaekit("explore", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("vaekit: error:")


# ------------------------------------------------------------------------------------------ in Chromium

def decoded_src(page, panel: int) -> str:
    return page.locator(f"#run-{panel} .output img").get_attribute("src")


def decodes(page, panel: int) -> int:
    return int(page.locator(f"#run-{panel}").get_attribute("data-decodes"))


def wait_decodes(page, panel: int, more_than: int) -> None:
    page.wait_for_function(f"Number(document.querySelector('#run-{panel}').dataset.decodes) > {more_than}")


@pytest.fixture
def page(server):
    if CHROMIUM is None:
        pytest.skip("chromium not on PATH; run scripts/install-browser.sh")
    with browser_page() as (pg, errors):
        open_explorer(pg, server)
        yield pg, errors
        assert errors == [], errors  # no console error and no script error, whatever the test did


@pytest.mark.browser
def test_page_loads_without_console_errors(page):
    pg, errors = page
    assert pg.locator("section.panel").count() == 2
    assert errors == []
    for i in (0, 1):
        assert pg.locator(f"#run-{i}").get_attribute("data-ready") == "1"
        assert decoded_src(pg, i).startswith("data:image/png;base64,")
    assert pg.locator("#run-0 .sliders input").count() == 2 and pg.locator("#run-1 .sliders input").count() == 4
    assert pg.locator("#run-1 select.label option").count() == 10


@pytest.mark.browser
def test_moving_a_slider_changes_the_decoded_image(page, runs):
    pg, _ = page
    before, n = decoded_src(pg, 0), decodes(pg, 0)
    first = pg.locator("#run-0 .sliders input").first
    first.fill("2.5")
    wait_decodes(pg, 0, n)
    after = decoded_src(pg, 0)
    assert after != before
    z = pg.evaluate("window.explorer.panels[0].z")
    assert z[int(first.get_attribute("data-dim"))] == 2.5
    with torch.no_grad():
        ref = load(runs["vae2"]).eval().decode(torch.tensor([z])).mean[0]
    np.testing.assert_array_equal(png_pixels(after), expected_pixels(ref))


@pytest.mark.browser
def test_clicking_and_dragging_on_the_map_decode_that_place(page, runs):
    pg, _ = page
    canvas = pg.locator("#run-0 canvas.map")
    box = canvas.bounding_box()
    border = pg.evaluate("document.querySelector('#run-0 canvas.map').clientLeft")
    x, y = box["x"] + border + 4, box["y"] + border + 4  # a corner: the map's margin, far from every point
    n = decodes(pg, 0)
    pg.mouse.click(x, y)
    wait_decodes(pg, 0, n)
    u0, u1, v0, v1 = pg.evaluate("window.explorer.panels[0].bounds")
    z = pg.evaluate("window.explorer.panels[0].z")
    # the mouse lands on whole CSS pixels while the canvas may start at a fractional one (text above it with a
    # line height of 19.6 px): the decoded place is within one pixel of the one asked for
    pixel = 1.0 / 420 * np.array([u1 - u0, v1 - v0])
    assert np.all(np.abs(np.subtract(z, [u0 + 4 / 420 * (u1 - u0), v0 + (1 - 4 / 420) * (v1 - v0)])) <= pixel)
    with torch.no_grad():
        ref = load(runs["vae2"]).eval().decode(torch.tensor([z])).mean[0]
    np.testing.assert_array_equal(png_pixels(decoded_src(pg, 0)), expected_pixels(ref))
    n = decodes(pg, 0)
    pg.mouse.move(x, y)
    pg.mouse.down()
    for step in range(1, 6):
        pg.mouse.move(x + 40 * step, y + 30 * step)
        wait_decodes(pg, 0, n)  # live: every move decodes before the next
        n = decodes(pg, 0)
    pg.mouse.up()
    z = pg.evaluate("window.explorer.panels[0].z")
    assert np.all(np.abs(np.subtract(z, [u0 + 204 / 420 * (u1 - u0), v0 + (1 - 154 / 420) * (v1 - v0)])) <= pixel)


@pytest.mark.browser
def test_hovering_a_point_shows_its_reconstruction(page, server):
    pg, _ = page
    j = pg.evaluate("window.explorer.panels[0].isolatedPoint()")
    pg.mouse.move(*point_position(pg, 0, j))
    pg.wait_for_selector(f"#run-0[data-hover-point='{j}']", state="attached")
    shown_in = pg.locator("#run-0 .hover-input img").get_attribute("src")
    shown_out = pg.locator("#run-0 .hover-reconstruction img").get_attribute("src")
    point = request(server + f"api/runs/0/points/{j}")[2]  # checked against the model above
    assert (shown_in, shown_out) == (point["input"]["png"], point["reconstruction"]["png"])


@pytest.mark.browser
def test_label_choice_and_interpolation_in_the_page(page):
    pg, _ = page
    before, n = decoded_src(pg, 1), decodes(pg, 1)
    pg.locator("#run-1 select.label").select_option("7")
    wait_decodes(pg, 1, n)
    assert decoded_src(pg, 1) != before
    pg.locator("#run-1 .set-a").click()
    n = decodes(pg, 1)
    pg.locator("#run-1 .sliders input").first.fill("-2")
    wait_decodes(pg, 1, n)
    pg.locator("#run-1 .set-b").click()
    pg.locator("#run-1 .interpolate").click()
    pg.wait_for_selector("#run-1[data-interpolated='8']", state="attached")
    assert pg.locator("#run-1 .strip img").count() == 8
    assert json.loads(pg.evaluate("JSON.stringify(window.explorer.panels[1].ends.A)")) != \
        json.loads(pg.evaluate("JSON.stringify(window.explorer.panels[1].ends.B)"))


@pytest.mark.browser
def test_the_page_draws_from_a_learned_prior_and_explores_a_draw(tmp_path):
    """A mixture-prior run beside a plain AE: the VAE's panel names its learned prior and decodes the
    mixture's own draws (checked against model.latent_prior.sample and model.decode); each press draws anew;
    a click on a draw loads its code; the AE, which has no prior, has no such control."""
    if CHROMIUM is None:
        pytest.skip("chromium not on PATH; run scripts/install-browser.sh")
    mog = fit(tiny_config(name="mog", **{"train.epochs": "1", "model.prior": "mog", "model.prior_components": "3"}),
              runs_root=tmp_path)[0]
    ae = fit(tiny_config(name="ae", **{"train.epochs": "1", "model.kind": "ae"}), runs_root=tmp_path)[0]
    model = load(mog).eval()
    with explorer(mog, ae) as url, browser_page() as (pg, errors):
        open_explorer(pg, url)
        assert "learned mog" in pg.locator("#run-0").inner_text()
        assert pg.locator("#run-1 .draw-prior").count() == 0
        pg.locator("#run-0 .prior-n").fill("6")
        pg.locator("#run-0 .draw-prior").click()
        pg.wait_for_selector("#run-0[data-prior-draws='6']", state="attached")
        shown = [pg.locator("#run-0 .prior-strip img").nth(i).get_attribute("src") for i in range(6)]
        z = torch.tensor(pg.evaluate("window.explorer.panels[0].priorCodes"))
        with torch.no_grad():
            draws = model.latent_prior.sample(6, torch.Generator().manual_seed(0))  # the first press: seed 0
            means = model.decode(draws).mean
        torch.testing.assert_close(z, draws)
        for i in range(6):
            np.testing.assert_array_equal(png_pixels(shown[i]), expected_pixels(means[i]))
        pg.locator("#run-0 .draw-prior").click()
        pg.wait_for_selector("#run-0[data-prior-seed='1']", state="attached")
        again = torch.tensor(pg.evaluate("window.explorer.panels[0].priorCodes"))
        assert again.shape == (6, 2) and not torch.equal(again, z)
        n = decodes(pg, 0)
        pg.locator("#run-0 .prior-strip img").nth(2).click()
        wait_decodes(pg, 0, n)
        torch.testing.assert_close(torch.tensor(pg.evaluate("window.explorer.panels[0].z")), again[2])
        assert errors == [], errors


SHARED = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "movielens-100k" / "u.data").is_file(), reason="MovieLens-100k not found")
def test_a_recommender_run_shows_the_top_items_of_a_decoded_point_and_a_users_items(tmp_path):
    """For a Mult-VAE the decoded output is its top 10 items with titles (the decoder's item probabilities,
    checked against model.decode), and a point's input is the items that user gave; in the page too."""
    config = tiny_config(name="rec", **{"data.name": "movielens-100k", "data.dir": str(SHARED), "model.hidden": "16",
                                        "model.latent_dim": "3", "model.input_norm": "l2", "train.epochs": "1",
                                        "train.batch_size": "100"})
    run = fit(config, runs_root=tmp_path)[0]
    model, _, _, data = load_run(run)
    items = data.rec.items
    with explorer(run) as url:
        z = [0.5, -1.0, 0.25]
        status, _, out = request(url + "api/runs/0/decode", {"z": z})
        assert status == 200 and out["output"]["kind"] == "items"
        with torch.no_grad():
            probs = model.eval().decode(torch.tensor([z])).mean[0].double().numpy()
        best = np.argsort(-probs, kind="stable")[:10]
        got = out["output"]["items"]
        assert [g["id"] for g in got] == [int(items[j]) for j in best]
        np.testing.assert_allclose([g["score"] for g in got], probs[best], rtol=1e-5)
        assert all(g["title"] == data.rec.title(g["id"]) for g in got) and "(19" in got[0]["title"]  # "(1996)"
        status, _, p = request(url + "api/runs/0/points/0")
        held = p["input"]["items"]
        row = data.test.batch(torch.tensor([int(p["row"])]))[0].numpy()
        assert [h["id"] for h in held] == [int(items[j]) for j in np.flatnonzero(row)[:10]]
        assert p["input"]["what"] == f"{int(row.sum())} items given" and p["reconstruction"]["kind"] == "items"
        if CHROMIUM is not None:
            with browser_page() as (pg, errors):
                open_explorer(pg, url)
                box = pg.locator("#run-0 canvas.map").bounding_box()
                pg.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
                pg.wait_for_selector("#run-0 .items li")
                shown = pg.locator("#run-0 .items li").all_text_contents()
                assert len(shown) >= 10 and all(re.search(r"\(\d+\) [0-9.e-]+$", s) for s in shown)
                assert not errors, errors
