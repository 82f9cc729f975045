"""Named datasets over the REAL files in ../shared/data (skipped with a reason if that folder is absent)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import DataConfig, load_data
from vaekit.data.download import sha256_file
from vaekit.data.named import SPECS, load_named, read_binarized, read_frey
from vaekit.errors import VaekitError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

pytestmark = pytest.mark.skipif(not (SHARED / "mnist").is_dir(),
                                reason=f"shared benchmark data not found at {SHARED}")


def cfg(**kw: object) -> DataConfig:
    return DataConfig(**{"dir": str(SHARED), "download": False, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def mnist_raw():
    return load_named("mnist", str(SHARED), download=False)


@pytest.fixture(scope="module")
def mnist_dynamic():
    return load_data(cfg(name="mnist", binarize="dynamic", binarize_seed=3), "bernoulli")


# ------------------------------------------------------------------------------------ checksums

@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_file_checksums_match_published(name: str) -> None:
    spec = SPECS[name]
    for f in spec.files.values():
        assert sha256_file(SHARED / spec.dirs[0] / f.names[0]) == f.sha256


def test_content_checksums_of_frey_and_binarized() -> None:
    frey = read_frey(SHARED / "frey-face" / "frey_rawface.mat")
    assert hashlib.sha256(frey.tobytes()).hexdigest() == SPECS["frey-faces"].files["ff"].content_sha256
    for split, f in SPECS["binarized-mnist"].files.items():
        x = read_binarized(SHARED / "binarized-mnist" / f"binarized_mnist_{split}.mat")
        assert hashlib.sha256(x.tobytes()).hexdigest() == f.content_sha256


def test_provenance_recorded_in_info(mnist_dynamic) -> None:
    files = mnist_dynamic.info["files"]
    assert set(files) == {"train-images", "train-labels", "test-images", "test-labels"}
    assert all(v["sha256_matches_published"] for v in files.values())


# ---------------------------------------------------------------------------------------- MNIST

def test_mnist_raw_shapes_labels_and_pixel_stats(mnist_raw) -> None:
    x, y = mnist_raw.x, mnist_raw.y
    assert x.shape == (70000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    train, test = mnist_raw.fixed["pool"], mnist_raw.fixed["test"]
    assert np.bincount(y[train]).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y[test]).tolist() == MNIST_TEST_COUNTS
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    xt = x[train].astype(np.float64) / 255
    assert xt.mean() == pytest.approx(0.13066, abs=5e-6)
    assert xt.std() == pytest.approx(0.30811, abs=5e-6)
    assert (x[test] / 255).mean() == pytest.approx(0.13251, abs=5e-6)


def test_mnist_standard_split_keeps_test_set_and_carves_val(mnist_dynamic) -> None:
    b = mnist_dynamic
    assert (len(b.train), len(b.val), len(b.test)) == (54000, 6000, 10000)
    assert b.event_shape == (28, 28) and b.n_classes == 10
    assert b.train.y.dtype == torch.int64
    assert torch.bincount(b.test.y).tolist() == MNIST_TEST_COUNTS
    assert (torch.bincount(b.train.y) + torch.bincount(b.val.y)).tolist() == MNIST_TRAIN_COUNTS
    assert b.info["binarize"] == "dynamic" and b.binary


def test_mnist_split_is_seeded_and_disjoint(mnist_raw) -> None:
    from vaekit.data.preprocess import split_rows

    r0, _ = split_rows(mnist_raw, cfg(name="mnist", seed=0))
    r0b, _ = split_rows(mnist_raw, cfg(name="mnist", seed=0))
    r1, _ = split_rows(mnist_raw, cfg(name="mnist", seed=1))
    assert all(np.array_equal(r0[k], r0b[k]) for k in r0)
    assert not np.array_equal(r0["val"], r1["val"])
    sets = [set(r0[k].tolist()) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sets[0] | sets[1] == set(range(60000))


def test_iwae_split_sizes_and_definition(mnist_raw) -> None:
    from vaekit.data.preprocess import split_rows

    rows, how = split_rows(mnist_raw, cfg(name="mnist", split="iwae", seed=5))
    assert (len(rows["train"]), len(rows["val"]), len(rows["test"])) == (59600, 400, 10000)
    perm = np.random.default_rng(5).permutation(60000)
    assert np.array_equal(rows["val"], np.sort(perm[-400:]))
    assert "last 400" in how


def test_iwae_split_rejected_for_other_datasets() -> None:
    with pytest.raises(VaekitError, match=r"split 'iwae' is defined for the 60,000 MNIST"):
        load_data(cfg(name="digits", split="iwae"), "bernoulli")


def test_limit_truncates_each_split(mnist_raw) -> None:
    from vaekit.data.preprocess import split_rows

    full, _ = split_rows(mnist_raw, cfg(name="mnist"))
    lim, how = split_rows(mnist_raw, cfg(name="mnist", limit=500))
    for k in ("train", "val", "test"):
        assert len(lim[k]) == 500
        assert set(lim[k].tolist()) <= set(full[k].tolist())
    assert "limit 500" in how


# -------------------------------------------------------------------------------- binarisation

def test_dynamic_binarisation_fresh_each_call_with_grey_mean(mnist_dynamic) -> None:
    tr = mnist_dynamic.train
    levels = tr.levels()  # the grey levels (stored as uint8, served scaled to [0, 1])
    assert tr.dynamic and float(levels.max()) <= 1.0 and not torch.isin(levels, torch.tensor([0.0, 1.0])).all()
    idx = torch.arange(20000)
    g = torch.Generator().manual_seed(0)
    b1, b2 = tr.batch(idx, g), tr.batch(idx, g)
    assert torch.isin(b1, torch.tensor([0.0, 1.0])).all()
    assert not torch.equal(b1, b2)
    grey = float(levels[:20000].mean())
    assert float(b1.mean()) == pytest.approx(grey, abs=0.002)
    assert float(b1.mean()) == pytest.approx(0.1307, abs=0.004)


def test_dynamic_val_and_test_binarised_once_with_fixed_seed(mnist_dynamic) -> None:
    b = mnist_dynamic
    assert not b.test.dynamic and not b.val.dynamic
    t1 = b.test.all()
    assert torch.equal(t1, b.test.all())
    assert torch.isin(t1, torch.tensor([0.0, 1.0])).all()
    assert float(t1.mean()) == pytest.approx(0.1325, abs=0.003)
    same = load_data(cfg(name="digits", binarize="dynamic", binarize_seed=3), "bernoulli")
    again = load_data(cfg(name="digits", binarize="dynamic", binarize_seed=3), "bernoulli")
    diff = load_data(cfg(name="digits", binarize="dynamic", binarize_seed=4), "bernoulli")
    assert torch.equal(same.test.x, again.test.x) and torch.equal(same.val.x, again.val.x)
    assert not torch.equal(same.test.x, diff.test.x)


def test_static_and_threshold_binarisation() -> None:
    b = load_data(cfg(name="frey-faces", binarize="static", binarize_seed=1), "bernoulli")
    assert not b.train.dynamic and b.info["binarize"] == "static"
    assert torch.equal(b.train.all(), b.train.all())
    grey = load_data(cfg(name="frey-faces", binarize="dynamic"), "bernoulli").train.levels()  # the probabilities
    assert float(b.train.all().mean()) == pytest.approx(float(grey.mean()), abs=0.01)
    t = load_data(cfg(name="frey-faces", binarize="threshold", threshold=0.6), "bernoulli")
    assert torch.equal(t.train.all(), (grey > 0.6).float())
    assert t.info["threshold"] == 0.6


# ------------------------------------------------------------------------ other named datasets

def test_fashion_mnist_counts_and_mean() -> None:
    raw = load_named("fashion-mnist", str(SHARED), download=False)
    y = raw.y
    assert np.bincount(y[raw.fixed["pool"]]).tolist() == [6000] * 10
    assert np.bincount(y[raw.fixed["test"]]).tolist() == [1000] * 10
    assert (raw.x[raw.fixed["pool"]] / 255).mean() == pytest.approx(0.28604, abs=5e-6)


def test_frey_faces_shape_stats_and_gaussian_scalings() -> None:
    raw = load_named("frey-faces", str(SHARED), download=False)
    assert raw.x.shape == (1965, 28, 20) and raw.x.dtype == np.uint8 and raw.y is None
    assert (int(raw.x.min()), int(raw.x.max())) == (8, 238)
    assert raw.x.mean() == pytest.approx(154.461, abs=1e-3) and raw.x.std() == pytest.approx(44.896, abs=1e-3)
    unit = load_data(cfg(name="frey-faces"), "gaussian")  # unit scaling inside the model, data in file units
    assert unit.info["binarize"] == "none" and unit.info["scale"] == "unit" and not unit.binary
    assert unit.info["dequantize"] == "uniform"  # 8-bit grey levels under a Gaussian: bins of width 1
    assert float(unit.loc.max()) == 0.0 and float(unit.scale.min()) == 256.0  # [0, 256) -> [0, 1)
    assert (len(unit.train), len(unit.val), len(unit.test)) == (1573, 196, 196)
    assert float(unit.train.x.max()) == 238.0 and float(unit.test.x.max()) < 239.0
    std = load_data(cfg(name="frey-faces", scale="standardize"), "gaussian-learned")
    assert std.loc.shape == (28, 20) and std.scale.shape == (28, 20) and std.loc.dtype == torch.float32
    tr = std.train.x.double()
    assert float(tr.max()) == 238.0  # served in file units
    assert torch.allclose(std.loc.double(), tr.mean(0), atol=1e-3)
    assert torch.allclose(std.scale.double(), tr.std(0, unbiased=False), atol=1e-3)


def test_binarized_mnist_fixed_splits_and_means() -> None:
    b = load_data(cfg(name="binarized-mnist"), "bernoulli")
    assert (len(b.train), len(b.val), len(b.test)) == (50000, 10000, 10000)
    assert b.info["binarize"] == "none" and b.binary and b.event_shape == (28, 28)
    assert float(b.train.x.double().mean()) == pytest.approx(0.130562, abs=1e-6)
    assert float(b.val.x.double().mean()) == pytest.approx(0.131127, abs=1e-6)
    assert float(b.test.x.double().mean()) == pytest.approx(0.132512, abs=1e-6)
    assert b.train.y is None and b.n_classes == 0
    with pytest.raises(VaekitError, match=r"split 'iwae'"):
        load_data(cfg(name="binarized-mnist", split="iwae"), "bernoulli")


def test_binarized_amat_text_reads_same_array(tmp_path: Path) -> None:
    x = read_binarized(SHARED / "binarized-mnist" / "binarized_mnist_test.mat")
    chars = np.full((len(x), 784 * 2), ord(" "), dtype=np.uint8)
    chars[:, 0::2] = x + ord("0")
    chars[:, -1] = ord("\n")
    p = tmp_path / "binarized_mnist_test.amat"
    p.write_bytes(chars.tobytes())
    assert np.array_equal(read_binarized(p), x)
    p.write_bytes(chars[:, :-100].tobytes())  # lines too short
    with pytest.raises(VaekitError, match=r"expected 784 values"):
        read_binarized(p)
    p.write_bytes(b"0 1 x\n")
    with pytest.raises(VaekitError, match=r"not a 0/1 text \.amat"):
        read_binarized(p)


# --------------------------------------------------------------------------- lookup and layout

def test_flat_layout_env_var_and_cache_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(SHARED / "frey-face" / "frey_rawface.mat", flat / "frey_rawface.mat")
    b = load_data(DataConfig(name="frey-faces", dir=str(flat), download=False), "gaussian")
    assert b.info["files"]["ff"]["path"] == str(flat / "frey_rawface.mat")
    monkeypatch.setenv("VAEKIT_DATA", str(flat))
    assert load_data(DataConfig(name="frey-faces", download=False), "gaussian").info["files"]["ff"]["path"] \
        == str(flat / "frey_rawface.mat")
    monkeypatch.delenv("VAEKIT_DATA")
    cache = tmp_path / "cache"
    (cache / "vaekit" / "frey-face").mkdir(parents=True)
    shutil.copy(flat / "frey_rawface.mat", cache / "vaekit" / "frey-face" / "frey_rawface.mat")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    got = load_data(DataConfig(name="frey-faces", download=False), "gaussian").info["files"]["ff"]["path"]
    assert got == str(cache / "vaekit" / "frey-face" / "frey_rawface.mat")


def test_missing_files_without_download_name_files_and_place(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(VaekitError) as e:
        load_data(DataConfig(name="mnist", dir=str(tmp_path / "d"), download=False), "bernoulli")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "d" / "mnist") in msg and "--data.download true" in msg
