"""User data (.npy/.npz/CSV/image folders), preprocessing and every error path, with real files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import DataConfig, load_data
from vaekit.data.bundle import hash_uniform
from vaekit.errors import VaekitError


def load(path: Path, likelihood: str = "gaussian", **kw: object):
    return load_data(DataConfig(path=str(path), **kw), likelihood)  # type: ignore[arg-type]


def one_line(err: pytest.ExceptionInfo[VaekitError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------ npy / npz

def test_npy_vectors_in_unit_range_are_kept(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((200, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    b = load(tmp_path / "x.npy", val_fraction=0.1, test_fraction=0.2)
    assert (len(b.train), len(b.val), len(b.test)) == (140, 20, 40)
    assert b.event_shape == (5,) and b.train.x.dtype == torch.float32 and b.train.y is None
    served = torch.cat([b.train.x, b.val.x, b.test.x])
    assert torch.allclose(served.sum(0), torch.from_numpy(x).sum(0), atol=1e-3)  # same rows, unscaled
    assert "served in file units" in b.info["scale_detail"]  # Gaussian: any scaling is inside the model
    assert "kept" in load(tmp_path / "x.npy", "bernoulli").info["scale_detail"]


def test_npy_uint8_images_scaled_by_255_channels_first(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (50, 3, 4, 6), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    b = load(tmp_path / "img.npy", "bernoulli", test_fraction=0.0, val_fraction=0.0)
    assert b.event_shape == (3, 4, 6)
    assert torch.allclose(b.train.levels().sum(), torch.tensor(x.sum() / 255.0, dtype=torch.float32), rtol=1e-5)
    assert b.info["affine"] == [1 / 255, 0.0]


def test_float_data_outside_unit_range_min_max_from_training_split(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(5.0, 3.0, (300, 4))
    np.save(tmp_path / "x.npy", x)
    b = load(tmp_path / "x.npy", "bernoulli")
    assert float(b.train.x.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(b.train.x.max()) == pytest.approx(1.0, abs=1e-6)
    assert "min-max of the training split" in b.info["scale_detail"]


def test_standardize_uses_training_split_only_and_zero_std_is_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(10, 2, (400, 3)), np.full((400, 1), 4.0)], axis=1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    b = load(tmp_path / "x.npy", "gaussian-learned", scale="standardize")
    tr = b.train.x.double()
    assert torch.allclose(b.loc.double(), tr.mean(0), atol=1e-4)
    assert torch.allclose(b.scale.double()[:3], tr.std(0, unbiased=False)[:3], atol=1e-4)
    assert float(b.scale[3]) == 1.0 and float(b.loc[3]) == 4.0
    all_mean = torch.from_numpy(x).double().mean(0)
    assert not torch.allclose(b.loc.double()[:3], all_mean[:3], atol=1e-6)  # val/test not used
    assert float(tr.max()) > 5  # data left in file units


def test_npz_keys_x_y_and_X_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(4).random((60, 2, 3))
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(60) % 3)
    a = load(tmp_path / "a.npz")
    assert a.n_classes == 3 and a.train.y.dtype == torch.int64 and a.info["y_key"] == "y"
    assert a.train.batch(torch.arange(4)).shape == (4, 2, 3)  # labels never in the batch
    np.savez(tmp_path / "b.npz", X=x, labels=(np.arange(60) % 4).astype(np.float64))
    b = load(tmp_path / "b.npz")
    assert b.n_classes == 4 and b.info["x_key"] == "X"


def test_npz_errors(tmp_path: Path) -> None:
    x = np.zeros((10, 2))
    np.savez(tmp_path / "nokey.npz", a=x, b=x)
    with pytest.raises(VaekitError, match=r"no 'x' or 'X' array") as e:
        load(tmp_path / "nokey.npz")
    assert "numpy.savez" in one_line(e)
    np.savez(tmp_path / "len.npz", x=x, y=np.zeros(9, np.int64))
    with pytest.raises(VaekitError, match=r"labels have shape \(9,\) but there are 10 examples"):
        load(tmp_path / "len.npz")
    np.savez(tmp_path / "frac.npz", x=x, y=np.full(10, 0.5))
    with pytest.raises(VaekitError, match=r"labels must be whole numbers"):
        load(tmp_path / "frac.npz")
    np.savez(tmp_path / "ok.npz", x=x)
    with pytest.raises(VaekitError, match=r"data.mmap needs an uncompressed .npy"):
        load(tmp_path / "ok.npz", mmap=True)


def test_nan_inf_empty_and_dtype_errors(tmp_path: Path) -> None:
    x = np.zeros((20, 3, 2), np.float32)
    x[7, 1, 0] = np.nan
    x[9, 0, 1] = np.inf
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(VaekitError, match=r"2 NaN/inf values, the first at index \(7, 1, 0\)") as e:
        load(tmp_path / "nan.npy")
    assert "impute" in one_line(e)
    with pytest.raises(VaekitError, match=r"2 NaN/inf values"):
        load(tmp_path / "nan.npy", mmap=True)
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    with pytest.raises(VaekitError, match=r"the dataset is empty"):
        load(tmp_path / "empty.npy")
    np.save(tmp_path / "c.npy", np.zeros((4, 2), np.complex64))
    with pytest.raises(VaekitError, match=r"dtype complex64"):
        load(tmp_path / "c.npy")


# ---------------------------------------------------------------------------------------- mmap

def test_mmap_stays_memmap_and_matches_in_memory(tmp_path: Path) -> None:
    x = np.random.default_rng(5).integers(0, 256, (500, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    mem = load(tmp_path / "x.npy", dequantize="none")
    mm = load(tmp_path / "x.npy", mmap=True, dequantize="none")
    assert isinstance(mm.train.x, np.memmap) and mm.info["mmap"] and len(mm.train) == len(mem.train)
    idx = torch.randperm(len(mem.train), generator=torch.Generator().manual_seed(0))[:64]
    assert torch.allclose(mm.train.batch(idx), mem.train.batch(idx))
    assert torch.equal(mm.test.y if mm.test.y is not None else torch.zeros(0),
                       mem.test.y if mem.test.y is not None else torch.zeros(0))
    s_mm = load(tmp_path / "x.npy", "gaussian", scale="standardize", mmap=True, dequantize="none")
    s_mem = load(tmp_path / "x.npy", "gaussian", scale="standardize", dequantize="none")
    assert torch.allclose(s_mm.loc, s_mem.loc) and torch.allclose(s_mm.scale, s_mem.scale)
    assert torch.allclose(s_mm.val.all(), s_mem.val.all())


def test_mmap_binarisation_per_batch(tmp_path: Path) -> None:
    x = np.random.default_rng(6).random((2000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = tmp_path / "x.npy"
    dyn = load(p, "bernoulli", mmap=True, binarize="dynamic")
    assert dyn.train.dynamic and not dyn.test.dynamic and dyn.info["binarize"] == "dynamic"
    idx = torch.arange(len(dyn.train))
    b1, b2 = dyn.train.batch(idx), dyn.train.batch(idx)
    assert not torch.equal(b1, b2) and float(b1.mean()) == pytest.approx(float(x.mean()), abs=0.01)
    t = dyn.test.all()
    assert torch.equal(t, dyn.test.all()) and torch.isin(t, torch.tensor([0.0, 1.0])).all()
    # the fixed draw of a row does not depend on which batch serves it
    sub = torch.tensor([5, 3, 100])
    assert torch.equal(dyn.test.batch(sub), t[sub])
    static = load(p, "bernoulli", mmap=True, binarize="static")
    s = static.train.all()
    assert torch.equal(s, static.train.all()) and float(s.mean()) == pytest.approx(float(x.mean()), abs=0.01)
    thr = load(p, "bernoulli", mmap=True, binarize="threshold", threshold=0.3)
    assert torch.equal(thr.train.all(), (torch.from_numpy(x[thr.train.rows]) > 0.3).float())


def test_hash_uniform_is_uniform_and_deterministic() -> None:
    u = hash_uniform(7, np.arange(1000), 50)
    assert u.shape == (1000, 50) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and np.array_equal(u, hash_uniform(7, np.arange(1000), 50))
    assert not np.array_equal(u, hash_uniform(8, np.arange(1000), 50))


# ------------------------------------------------------------------------------------------ CSV

def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_csv_with_label_column(tmp_path: Path) -> None:
    rows = "\n".join(f"{i * 0.1:.1f},{'cat' if i % 2 else 'dog'},{i}" for i in range(10))
    p = write(tmp_path / "d.csv", "a,kind,b\n" + rows + "\n")
    b = load(p, label_column="kind", val_fraction=0.0, test_fraction=0.0)
    assert b.event_shape == (2,) and b.info["columns"] == ["a", "b"]
    assert b.info["classes"] == ["cat", "dog"] and b.n_classes == 2
    assert b.info["scale"] == "standardize"  # real-valued table under a Gaussian: standardised in the model
    assert "min-max" in load(p, "bernoulli", label_column="kind").info["scale_detail"]
    q = write(tmp_path / "n.csv", "x1,x2,label\n0.1,0.2,3\n0.3,0.4,1\n0.5,0.6,3\n")
    c = load(q, label_column="label", val_fraction=0.0, test_fraction=0.0)
    assert sorted(c.train.y.tolist()) == [1, 3, 3] and "classes" not in c.info


@pytest.mark.parametrize(("text", "pattern"), [
    ("a,b\n1,2\n3,\n", r"missing value at row 3, column 2 \('b'\)"),
    ("a,b\n1,2\n3,NA\n", r"missing value at row 3, column 2"),
    ("a,b,c\n1,2,3\n4,x7,6\n", r"non-numeric value 'x7' at row 3, column 2 \('b'\)"),
    ("a,b\n1,2\n3,4,5\n", r"row 3 has 3 fields but the header has 2"),
    ("a,b\n1,2\n3,inf\n", r"non-finite value 'inf' at row 3, column 2"),
    ("", r"the CSV file is empty"),
    ("a,b\n", r"the dataset is empty"),
])
def test_csv_errors_name_row_and_column(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(VaekitError, match=pattern) as e:
        load(write(tmp_path / "bad.csv", text))
    one_line(e)


def test_csv_label_column_errors(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a,b\n1,2\n")
    with pytest.raises(VaekitError, match=r"label column 'y' not in the header \(a, b\)"):
        load(p, label_column="y")
    q = write(tmp_path / "e.csv", "a,y\n1,2\n3,\n")
    with pytest.raises(VaekitError, match=r"missing label at row 3"):
        load(q, label_column="y")


# ------------------------------------------------------------------------------------- images

def _png(p: Path, arr: np.ndarray) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(p)


def test_grey_image_folder_without_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, (6, 4), dtype=np.uint8) for _ in range(10)]
    for i, a in enumerate(imgs):
        _png(tmp_path / "f" / f"{i:02d}.png", a)
    (tmp_path / "f" / "notes.txt").write_text("ignored")
    b = load(tmp_path / "f", "bernoulli", val_fraction=0.0, test_fraction=0.0)
    assert b.event_shape == (6, 4) and b.train.y is None
    assert torch.allclose(b.train.levels().sum(0), torch.from_numpy(np.sum(imgs, axis=0) / 255.0).float(), atol=1e-4)


def test_rgb_class_folders_labels_resize_and_grayscale(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    for c in ("ant", "bee"):
        for i in range(4):
            _png(tmp_path / "f" / c / f"{i}.png", rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8)).save(tmp_path / "f" / "bee" / "g.jpg")
    with pytest.raises(VaekitError, match=r"images have different sizes .*--data.image_size H,W") as e:
        load(tmp_path / "f")
    one_line(e)
    b = load(tmp_path / "f", image_size=(8, 6), val_fraction=0.0, test_fraction=0.0)
    assert b.event_shape == (3, 8, 6) and b.info["classes"] == ["ant", "bee"]
    assert sorted(b.train.y.tolist()) == [0] * 4 + [1] * 5
    g = load(tmp_path / "f", image_size=(8, 6), grayscale=True, val_fraction=0.0, test_fraction=0.0)
    assert g.event_shape == (8, 6)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaekitError, match=r"no .png/.jpg/.jpeg images found"):
        load(tmp_path / "empty")
    _png(tmp_path / "mixed" / "top.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "mixed" / "cls" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(VaekitError, match=r"both at the top level and in class sub-folders"):
        load(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(VaekitError, match=r"x\.png: cannot read the image"):
        load(tmp_path / "broken")


# ------------------------------------------------------------------------ likelihood / config

def test_likelihood_and_preprocessing_conflicts(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(9).random((50, 3)))
    p = tmp_path / "x.npy"
    with pytest.raises(VaekitError, match=r"Bernoulli likelihood on non-binary data; add --data.binarize"):
        load(p, "bernoulli", binarize="none")
    with pytest.raises(VaekitError, match=r"--data.scale standardize needs a Gaussian likelihood"):
        load(p, "bernoulli", scale="standardize")
    with pytest.raises(VaekitError, match=r"data.binarize static applies to a Bernoulli likelihood"):
        load(p, "gaussian", scale="standardize", binarize="static")
    np.save(tmp_path / "big.npy", np.random.default_rng(9).random((50, 3)) * 10)
    with pytest.raises(VaekitError, match=r"training data spans \[.*--data.scale unit"):
        load(tmp_path / "big.npy", "bernoulli", scale="none", binarize="dynamic")
    auto = load(p, "bernoulli")
    assert auto.info["binarize"] == "dynamic" and auto.binary
    assert load(p, "gaussian").info["binarize"] == "none"


def test_binary_user_data_needs_no_binarisation(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", (np.random.default_rng(10).random((40, 8)) > 0.5).astype(np.uint8))
    b = load(tmp_path / "b.npy", "bernoulli")
    assert b.info["binarize"] == "none" and b.binary and b.info["scale_detail"] == "binary data kept as 0/1"
    assert set(torch.unique(b.train.x).tolist()) == {0.0, 1.0}


def test_path_and_config_errors(tmp_path: Path) -> None:
    with pytest.raises(VaekitError, match=r"does not exist; fix --data.path"):
        load(tmp_path / "nope.npy")
    (tmp_path / "x.parquet").write_bytes(b"x")
    with pytest.raises(VaekitError, match=r"unsupported file type '.parquet'"):
        load(tmp_path / "x.parquet")
    with pytest.raises(VaekitError, match=r"config key 'data.split'"):
        DataConfig(split="kfold")
    with pytest.raises(VaekitError, match=r"config key 'data.name': unknown dataset 'cifar'"):
        DataConfig(name="cifar")
    with pytest.raises(VaekitError, match=r"config key 'data.image_size'"):
        DataConfig(image_size=(28,))
    with pytest.raises(VaekitError, match=r"--data.mmap applies to .npy files"):
        load_data(DataConfig(name="digits", mmap=True), "bernoulli")
    np.save(tmp_path / "tiny.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(VaekitError, match=r"the training split is empty"):
        load(tmp_path / "tiny.npy", val_fraction=0.5, test_fraction=0.49)


def test_digits_default_still_works() -> None:
    b = load_data(DataConfig(), "bernoulli")
    assert (len(b.train), len(b.val), len(b.test)) == (1437, 180, 180)
    assert b.event_shape == (8, 8) and b.n_classes == 10 and b.info["binarize"] == "dynamic"
    assert float(b.train.x.max()) == 1.0 and "0, 16" in b.info["scale_detail"]


def test_mmap_rejected_for_csv_and_image_folders(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a,b\n1,2\n")
    with pytest.raises(VaekitError, match=r"data\.mmap needs an uncompressed \.npy file"):
        load(p, mmap=True)
    _png(tmp_path / "imgs" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(VaekitError, match=r"data\.mmap needs an uncompressed \.npy file"):
        load(tmp_path / "imgs", mmap=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dynamic_binarisation_on_cuda_split() -> None:
    b = load_data(DataConfig(binarize="dynamic"), "bernoulli")
    x = b.train.x.cuda()
    from vaekit.data import Split

    s = Split(x, None, dynamic=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    idx = torch.arange(len(s), device="cuda")
    b1, b2 = s.batch(idx, g), s.batch(idx, g)
    assert b1.device.type == "cuda" and not torch.equal(b1, b2)
    assert float(b1.mean()) == pytest.approx(float(x.mean()), abs=0.01)


def test_memory_mapped_loading_and_batches_leave_no_file_pages_resident(tmp_path):
    """The load-time scans and the batches unmap what they read, so RSS does not grow with the file."""
    import subprocess
    import sys

    x = np.random.default_rng(0).random((20_000, 784), dtype=np.float32)  # 63 MB
    np.save(tmp_path / "big.npy", x)
    code = f"""
import re, torch
from pathlib import Path
from vaekit.data import DataConfig, load_data
def rss_file():
    return int(re.search(r"RssFile:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
before = rss_file()
data = load_data(DataConfig(path={str(tmp_path / "big.npy")!r}, mmap=True), "bernoulli")
for b in range(50):
    data.train.batch(torch.randint(0, len(data.train), (512,)), torch.Generator().manual_seed(b))
print(rss_file() - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert int(out.stdout.strip()) < 16  # MB of file pages left mapped, against a 63 MB file
