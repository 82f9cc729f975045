"""Memory at load: MNIST-family files decoded into a scratch buffer whose front rows become the training split.

Every split is compared with an independent construction: the IDX files decoded with ``gzip`` + NumPy, the
split's rows by NumPy fancy indexing (rows from the documented split rule), the float32 maps and ONE
``torch.bernoulli`` call over the whole split for the fixed draws (the build makes them a block at a time).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import DataConfig, load_data, preprocess
from vaekit.data import idx as idx_module
from vaekit.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from vaekit.data.named import load_named
from vaekit.data.raw import RawData, can_release, release_after, scratch_array

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _idx(magic: int, arr: np.ndarray) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


def _decode(path: Path) -> np.ndarray:
    """An IDX file decoded without vaekit: gzip, then the dims from the header."""
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset in MNIST's file layout (500 training and 120 test images of 6x5 grey levels)."""
    root = tmp_path_factory.mktemp("data")
    (root / "mnist").mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 500), ("t10k", 120)):
        x = rng.integers(0, 256, size=(n, 6, 5), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        (root / "mnist" / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(IMAGES_MAGIC, x)))
        (root / "mnist" / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(LABELS_MAGIC, y)))
    return root


def _reference(root: Path, cfg: DataConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                     dict[str, np.ndarray]]:
    """(rows, pixels, labels) of each split, by the documented rule for a named dataset's standard split: the
    test file is the test split; validation = the first round(n * val_fraction) of a permutation (seed) of
    the training file, train = the rest; both sorted."""
    d = root / "mnist"
    xtr, xte = _decode(d / "train-images-idx3-ubyte.gz"), _decode(d / "t10k-images-idx3-ubyte.gz")
    ytr, yte = _decode(d / "train-labels-idx1-ubyte.gz"), _decode(d / "t10k-labels-idx1-ubyte.gz")
    x, y = np.concatenate([xtr, xte]), np.concatenate([ytr, yte]).astype(np.int64)
    perm = np.random.default_rng(cfg.seed).permutation(len(xtr))
    n_val = round(len(xtr) * cfg.val_fraction)
    rows = {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val]), "test": np.arange(len(xtr), len(x))}
    return rows, {k: x[r] for k, r in rows.items()}, {k: y[r] for k, r in rows.items()}


@pytest.mark.parametrize("block", [7, 1024])  # 7: many blocks, partly overlapping moves in the buffer
@pytest.mark.parametrize("mode", ["dynamic", "static", "threshold"])
def test_splits_equal_an_independent_construction(fake_mnist: Path, mode: str, block: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess, "PREP_BLOCK", block)
    cfg = DataConfig(name="mnist", dir=str(fake_mnist), download=False, verify=False, binarize=mode,
                     threshold=0.4, binarize_seed=5, seed=2)
    b = load_data(cfg, "bernoulli")
    rows, pixels, labels = _reference(fake_mnist, cfg)
    a, c = (float(v) for v in b.info["affine"])
    assert a == pytest.approx(1 / 255) and c == 0.0
    for offset, part in enumerate(("train", "val", "test")):
        split = getattr(b, part)
        assert len(split) == len(rows[part]) and torch.equal(split.y, torch.from_numpy(labels[part]))
        grey = torch.from_numpy(pixels[part]).float().mul_(a).add_(c).clamp_(0.0, 1.0)  # the served grey levels
        if mode == "threshold":
            want = (grey > 0.4).float()
        elif mode == "static" or part != "train":  # one fixed draw of the whole split from its own seed
            want = torch.bernoulli(grey, generator=torch.Generator().manual_seed(5 * 3 + offset))
        else:  # dynamic training split: the grey levels are stored, fresh draws are made per batch
            want = grey
            assert split.dynamic and torch.equal(split.x, torch.from_numpy(pixels[part]))
        assert split.x.dtype == torch.uint8
        assert torch.equal(split.levels(), want)


def test_training_split_is_stored_in_the_decoded_buffer(fake_mnist: Path) -> None:
    cfg = DataConfig(name="mnist", dir=str(fake_mnist), download=False, verify=False)
    raw = load_named("mnist", str(fake_mnist), download=False, verify=False)
    assert raw.scratch and can_release(raw.x)
    start = raw.x.__array_interface__["data"][0]
    b = preprocess.build(raw, cfg, "bernoulli", "mnist")
    assert b.train.x.data_ptr() == start  # no copy of the training rows: they were moved to the buffer's front
    _, pixels, _ = _reference(fake_mnist, cfg)
    assert torch.equal(b.train.x, torch.from_numpy(pixels["train"]))
    for part in ("val", "test"):  # made before the buffer was overwritten, in memory of their own
        assert getattr(b, part).x.data_ptr() != start


def test_a_callers_array_is_never_overwritten(fake_mnist: Path) -> None:
    """Only a loader's scratch buffer is reused; data given by a caller are read, never written."""
    cfg = DataConfig(name="mnist", dir=str(fake_mnist), download=False, verify=False)
    raw = load_named("mnist", str(fake_mnist), download=False, verify=False)
    mine = np.array(raw.x)
    kept = mine.copy()
    b = preprocess.build(RawData(mine, raw.y, raw.value_range, raw.fixed, raw.info), cfg, "bernoulli", "mnist")
    assert np.array_equal(mine, kept)
    _, pixels, _ = _reference(fake_mnist, cfg)
    assert torch.equal(b.train.x, torch.from_numpy(pixels["train"]))


@pytest.mark.parametrize("seed", range(6))
def test_rows_to_front_equals_fancy_indexing(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess, "PREP_BLOCK", 5)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(97, 3, 2), dtype=np.uint8)
    keep = [np.sort(rng.choice(97, size=int(rng.integers(1, 98)), replace=False)), np.arange(40),
            np.r_[np.arange(12), np.arange(30, 97)]][seed % 3]
    want = x[keep].copy()
    got = preprocess._rows_to_front(x, keep)
    assert np.shares_memory(got, x) and np.array_equal(got, want)


def test_scratch_pages_past_the_kept_bytes_are_given_back() -> None:
    x = scratch_array((300, 64, 64))  # 1.2 MB: whole pages
    x[:] = np.arange(300, dtype=np.uint8)[:, None, None]
    page = 4096
    released = release_after(x, 100 * 64 * 64 + 1)
    assert released == x.nbytes - (-(-(100 * 64 * 64 + 1) // page) * page)
    assert (x[:100] == np.arange(100, dtype=np.uint8)[:, None, None]).all() and x[100, 0, 0] == 100
    assert not x[-1].any()  # given back: a private anonymous page reads as zeros again
    assert release_after(np.empty((300, 64, 64), np.uint8), 0) == 0  # not a scratch array: nothing released
    assert not can_release(x[1:])


def test_idx_reader_decodes_in_bounded_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = np.random.default_rng(1).integers(0, 256, size=(37, 4, 3), dtype=np.uint8)
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(_idx(IMAGES_MAGIC, arr)))
    monkeypatch.setattr(idx_module, "READ_BLOCK", 5)
    assert np.array_equal(read_idx(p, IMAGES_MAGIC), arr)
    out = np.zeros((40, 4, 3), np.uint8)
    read_idx(p, IMAGES_MAGIC, out=out[3:])
    assert np.array_equal(out[3:], arr) and not out[:3].any()


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared benchmark data not found at {SHARED}")
@pytest.mark.parametrize("mode", ["dynamic", "static", "threshold"])
def test_real_mnist_splits_equal_an_independent_construction(mode: str) -> None:
    cfg = DataConfig(name="mnist", dir=str(SHARED), download=False, binarize=mode, binarize_seed=1)
    b = load_data(cfg, "bernoulli")
    rows, pixels, labels = _reference(SHARED, cfg)
    a, c = (float(v) for v in b.info["affine"])
    for offset, part in enumerate(("train", "val", "test")):
        split = getattr(b, part)
        assert len(split) == len(rows[part]) and torch.equal(split.y, torch.from_numpy(labels[part]))
        grey = torch.from_numpy(pixels[part]).float().mul_(a).add_(c).clamp_(0.0, 1.0)
        if mode == "threshold":
            want = (grey > 0.5).float()
        elif mode == "static" or part != "train":
            want = torch.bernoulli(grey, generator=torch.Generator().manual_seed(1 * 3 + offset))
        else:
            want = grey
        assert torch.equal(split.levels(), want), part
