"""Downloads against a real HTTP server on 127.0.0.1 (ephemeral port, background thread)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from http_helpers import FileHandler, serve

from vaekit.data import DataConfig, load_data
from vaekit.data import named as named_mod
from vaekit.data.download import fetch
from vaekit.errors import VaekitError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server() -> Iterator[tuple[str, type[FileHandler]]]:
    with serve() as (url, handler):
        yield url, handler


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_good_file_downloads_and_verifies(server, tmp_path: Path) -> None:
    url, h = server
    h.files["good.bin"] = PAYLOAD
    dest = tmp_path / "sub" / "good.bin"
    assert fetch(f"{url}/good.bin", dest, PAYLOAD_SHA, timeout=5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["good.bin"]  # no temporary file left behind


def test_corrupted_file_fails_checksum_and_keeps_nothing(server, tmp_path: Path) -> None:
    url, h = server
    h.files["bad.bin"] = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(VaekitError, match=r"checksum mismatch") as e:
        fetch(f"{url}/bad.bin", tmp_path / "bad.bin", PAYLOAD_SHA, timeout=5)
    assert PAYLOAD_SHA in str(e.value)
    assert _leftovers(tmp_path) == []


def test_connection_dropped_midway_keeps_nothing(server, tmp_path: Path) -> None:
    url, h = server
    h.files["x.bin"] = PAYLOAD
    half, promised = len(PAYLOAD) // 2, len(PAYLOAD) * 2
    for sha in (PAYLOAD_SHA, None):  # the length check alone catches it, even with no checksum known
        with pytest.raises(VaekitError, match=rf"cut off after {half} of {promised} bytes") as e:
            fetch(f"{url}/drop/x.bin", tmp_path / "x.bin", sha, timeout=5)
        assert "nothing was kept" in str(e.value)
        assert _leftovers(tmp_path) == []


def test_http_error_names_the_status(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(VaekitError, match=r"HTTP 404"):
        fetch(f"{url}/missing.bin", tmp_path / "missing.bin", timeout=5)
    assert _leftovers(tmp_path) == []


def test_existing_file_is_not_replaced_by_a_failed_download(server, tmp_path: Path) -> None:
    url, h = server
    h.files["f.bin"] = b"corrupt"
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(VaekitError, match=r"checksum mismatch"):
        fetch(f"{url}/f.bin", dest, PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == b"old" and _leftovers(tmp_path) == ["f.bin"]


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No public mirrors, no env data dir, cache under tmp_path."""
    monkeypatch.setattr(named_mod, "MIRRORS", {})
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared benchmark data not found at {SHARED}")
def test_named_dataset_downloads_from_mirror_then_loads_offline(server, isolated: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, h = server
    h.root = SHARED  # serves <dataset-dir>/<file>, the layout VAEKIT_MIRROR expects
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    data = isolated / "data"
    b = load_data(DataConfig(name="mnist", dir=str(data), limit=100), "bernoulli")
    assert len(b.train) == 100
    assert sorted(p.name for p in (data / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert all(v["sha256_matches_published"] for v in b.info["files"].values())
    monkeypatch.setenv("VAEKIT_MIRROR", "http://127.0.0.1:9")  # now offline: must use the local copy
    again = load_data(DataConfig(name="mnist", dir=str(data), limit=100, download=False), "bernoulli")
    assert again.info["files"]["train-images"]["path"].startswith(str(data))


def test_content_checksum_rejects_wrong_pixels(server, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, h = server
    ff = np.full((560, 1965), 7, dtype=np.uint8)  # well-formed .mat, wrong content
    mat = isolated / "ff.mat"
    scipy.io.savemat(mat, {"ff": ff})
    h.files["frey-face/frey_rawface.mat"] = mat.read_bytes()
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    data = isolated / "data"
    with pytest.raises(VaekitError, match=r"content checksum mismatch for frey_rawface\.mat"):
        load_data(DataConfig(name="frey-faces", dir=str(data)), "gaussian")
    assert _leftovers(data / "frey-face") == []


def test_offline_error_names_missing_files_and_where(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: connection refused, like being offline
    monkeypatch.setenv("VAEKIT_MIRROR", f"http://127.0.0.1:{port}")
    data = isolated / "data"
    with pytest.raises(VaekitError) as e:
        load_data(DataConfig(name="fashion-mnist", dir=str(data), download_timeout=5), "bernoulli")
    msg = str(e.value)
    assert "offline" in msg and "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(data / "fashion-mnist") in msg
    assert _leftovers(data / "fashion-mnist") == []


def test_unwritable_download_folder_is_reported(isolated: Path) -> None:
    blocker = isolated / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VaekitError, match=r"cannot create .* to download into .*writable folder"):
        load_data(DataConfig(name="mnist", dir=str(blocker / "sub")), "bernoulli")


@pytest.mark.skipif(not (SHARED / "binarized-mnist").is_dir(), reason=f"shared data not found at {SHARED}")
def test_binarized_amat_download_verified_by_content_hash(server, isolated: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Train/valid present as .mat; the missing test split arrives as text .amat and is content-checked."""
    from vaekit.data.named import read_binarized

    url, h = server
    data = isolated / "data"
    (data / "binarized-mnist").mkdir(parents=True)
    for split in ("train", "valid"):
        name = f"binarized_mnist_{split}.mat"
        (data / "binarized-mnist" / name).write_bytes((SHARED / "binarized-mnist" / name).read_bytes())
    x = read_binarized(SHARED / "binarized-mnist" / "binarized_mnist_test.mat")
    chars = np.full((len(x), 784 * 2), ord(" "), dtype=np.uint8)
    chars[:, 0::2] = x + ord("0")
    chars[:, -1] = ord("\n")
    good = chars.tobytes()
    bad = chars.copy()
    bad[0, 0] = ord("1") if bad[0, 0] == ord("0") else ord("0")  # one flipped pixel
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    h.files["binarized-mnist/binarized_mnist_test.amat"] = bad.tobytes()
    with pytest.raises(VaekitError, match=r"content checksum mismatch for binarized_mnist_test\.amat"):
        load_data(DataConfig(name="binarized-mnist", dir=str(data)), "bernoulli")
    assert not (data / "binarized-mnist" / "binarized_mnist_test.amat").exists()
    h.files["binarized-mnist/binarized_mnist_test.amat"] = good
    b = load_data(DataConfig(name="binarized-mnist", dir=str(data)), "bernoulli")
    assert len(b.test) == 10000 and float(b.test.x.double().mean()) == pytest.approx(0.132512, abs=1e-6)
    assert (data / "binarized-mnist" / "binarized_mnist_test.amat").stat().st_size == len(good)
    assert sorted(p.name for p in (data / "binarized-mnist").iterdir()) == [
        "binarized_mnist_test.amat", "binarized_mnist_train.mat", "binarized_mnist_valid.mat"]
