"""The decoded-data cache (vaekit.data.decoded): a checked entry is read instead of decoding the file again, and
a torn, altered or unwritable entry never changes what a run trains on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import decoded
from vaekit.data import named as named_mod
from vaekit.data.named import load_named
from vaekit.errors import VaekitError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCE = "ab" * 32  # a source file's sha256 (hex)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "vaekit" / "decoded"


def _array(shape: tuple[int, ...] = (30, 7, 5)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def test_stored_entry_reads_back_equal_with_its_sha256(cache: Path) -> None:
    arr = _array()
    digest = decoded.store(SOURCE, "r1", arr)
    assert digest == hashlib.sha256(arr.tobytes()).hexdigest()
    assert decoded.entry_path(SOURCE, "r1").parent == cache
    assert [p.name for p in cache.iterdir()] == [f"r1-{SOURCE}.u8"]  # no temporary left behind
    assert decoded.shape_of(SOURCE, "r1") == arr.shape
    out = np.empty(arr.shape, np.uint8)
    assert decoded.read_into(SOURCE, "r1", out) == digest
    np.testing.assert_array_equal(out, arr)
    assert decoded.shape_of(SOURCE, "r2") is None  # another reader's entry is another entry
    assert decoded.read_into(SOURCE, "r2", out) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "extra", "header"])
def test_a_damaged_entry_is_refused_and_removed(cache: Path, damage: str) -> None:
    arr = _array()
    decoded.store(SOURCE, "r1", arr)
    path = decoded.entry_path(SOURCE, "r1")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":  # torn by a kill or a full disk
        raw = raw[:-10]
    elif damage == "flip":  # same length, one payload byte altered
        raw[-5] ^= 0x01
    elif damage == "extra":
        raw += b"\0"
    else:
        raw[:6] = b"garbag"
    path.write_bytes(bytes(raw))
    assert decoded.read_into(SOURCE, "r1", np.empty(arr.shape, np.uint8)) is None
    assert not path.exists()


def test_an_entry_of_another_shape_is_not_used(cache: Path) -> None:
    decoded.store(SOURCE, "r1", _array((30, 7, 5)))
    assert decoded.read_into(SOURCE, "r1", np.empty((30, 5, 7), np.uint8)) is None


def test_an_unwritable_cache_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir under a file fails for every user, root included
    arr = _array()
    assert decoded.store(SOURCE, "r1", arr) == hashlib.sha256(arr.tobytes()).hexdigest()
    assert decoded.read_into(SOURCE, "r1", np.empty(arr.shape, np.uint8)) is None


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}")
def test_mnist_from_the_cache_equals_the_decoded_files(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = load_named("mnist", str(SHARED / "mnist"), download=False)
    x0, y0 = np.array(fresh.x), fresh.y
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["idx1", "idx1"]  # train and test images

    real_read_idx = named_mod.read_idx

    def labels_only(path: Path, magic: int, out: np.ndarray | None = None) -> np.ndarray:
        if magic == named_mod.IMAGES_MAGIC:
            raise AssertionError(f"{path} was decoded again")
        return real_read_idx(path, magic, out)

    monkeypatch.setattr(named_mod, "read_idx", labels_only)
    again = load_named("mnist", str(SHARED / "mnist"), download=False)
    np.testing.assert_array_equal(again.x, x0)
    np.testing.assert_array_equal(again.y, y0)
    assert again.info["files"] == fresh.info["files"]  # the same provenance, checksums included

    monkeypatch.setattr(named_mod, "read_idx", real_read_idx)
    train = sorted(cache.iterdir(), key=lambda p: p.stat().st_size)[-1]
    raw = bytearray(train.read_bytes())
    raw[-1] ^= 0xFF
    train.write_bytes(bytes(raw))  # an altered entry: decoded from the file again, and the entry rewritten
    third = load_named("mnist", str(SHARED / "mnist"), download=False)
    np.testing.assert_array_equal(third.x, x0)
    assert train.read_bytes()[-1] == raw[-1] ^ 0xFF


@pytest.mark.skipif(not (SHARED / "binarized-mnist").is_dir(), reason=f"shared data not found at {SHARED}")
def test_binarized_mnist_from_the_cache_keeps_its_parts_and_content_checks(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = load_named("binarized-mnist", str(SHARED / "binarized-mnist"), download=False)

    def refuse(path: Path) -> np.ndarray:
        raise AssertionError(f"{path} was parsed again")

    monkeypatch.setattr(named_mod, "read_binarized", refuse)
    again = load_named("binarized-mnist", str(SHARED / "binarized-mnist"), download=False)
    np.testing.assert_array_equal(again.x, fresh.x)
    assert {k: len(v) for k, v in again.fixed.items()} == {"train": 50000, "val": 10000, "test": 10000}
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(again.fixed[k], fresh.fixed[k])
    files = again.info["files"]
    assert all(files[k]["content_sha256_matches_published"] for k in ("train", "valid", "test"))
    assert files == fresh.info["files"]


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}")
def test_a_cached_entry_does_not_hide_a_replaced_file(cache: Path, tmp_path: Path) -> None:
    """Entries are named by the source's bytes: a file replaced by another is decoded (and checked) anew."""
    load_named("mnist", str(SHARED / "mnist"), download=False)
    data = tmp_path / "mnist"
    data.mkdir()
    for p in (SHARED / "mnist").iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\0" * 20)  # not the published file
    with pytest.raises(VaekitError, match="t10k-images"):
        load_named("mnist", str(data), download=False)
