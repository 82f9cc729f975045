"""IDX parsing (MNIST / Fashion-MNIST container): round trips and every corruption error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit.data import DataConfig, load_data
from vaekit.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_bytes
from vaekit.errors import VaekitError


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_idx_parser_roundtrip_and_errors(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    good = _idx(IMAGES_MAGIC, (2, 3, 4), arr.tobytes())
    assert np.array_equal(read_idx_bytes(good, "f", IMAGES_MAGIC), arr)
    with pytest.raises(VaekitError, match=r"magic number is 2051, expected 2049"):
        read_idx_bytes(good, "f", LABELS_MAGIC)
    with pytest.raises(VaekitError, match=r"truncated: header declares shape"):
        read_idx_bytes(good[:-5], "f", IMAGES_MAGIC)
    with pytest.raises(VaekitError, match=r"5 unexpected bytes"):
        read_idx_bytes(good + b"12345", "f", IMAGES_MAGIC)
    with pytest.raises(VaekitError, match=r"no IDX header"):
        read_idx_bytes(b"\x00", "f", IMAGES_MAGIC)
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(good))
    assert np.array_equal(read_idx(p, IMAGES_MAGIC), arr)
    p.write_bytes(gzip.compress(good)[:-10])  # truncated gzip stream
    with pytest.raises(VaekitError, match=r"cannot read the IDX file"):
        read_idx(p, IMAGES_MAGIC)


def test_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    imgs = np.zeros((3, 28, 28), np.uint8).tobytes()
    for part in ("train", "t10k"):
        (d / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(IMAGES_MAGIC, (3, 28, 28), imgs)))
        (d / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(LABELS_MAGIC, (2,), b"\x01\x02")))
    with pytest.raises(VaekitError, match=r"3 images but 2 labels"):
        load_data(DataConfig(name="mnist", dir=str(tmp_path), download=False), "bernoulli")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5), h=st.integers(1, 6), w=st.integers(1, 6), cut=st.integers(1, 400), seed=st.integers(0, 9))
def test_idx_roundtrip_and_any_truncation_is_an_error(n: int, h: int, w: int, cut: int, seed: int) -> None:
    arr = np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)
    data = _idx(IMAGES_MAGIC, (n, h, w), arr.tobytes())
    assert np.array_equal(read_idx_bytes(data, "f", IMAGES_MAGIC), arr)
    if cut <= len(data):
        with pytest.raises(VaekitError, match=r"truncated|no IDX header"):
            read_idx_bytes(data[: len(data) - cut], "f", IMAGES_MAGIC)
