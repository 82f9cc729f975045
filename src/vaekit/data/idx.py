"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout: a 4-byte big-endian magic number ``0x00 0x00 <type> <ndim>`` (images: 2051 = uint8, 3 dims;
labels: 2049 = uint8, 1 dim), then ``ndim`` big-endian uint32 sizes, then the row-major payload.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import VaekitError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
READ_BLOCK = 1 << 20  # bytes decompressed per read (the only temporary the reader holds)


def _parse_header(data: bytes, where: str, expected_magic: int) -> tuple[tuple[int, ...], int]:
    """The declared shape and the header's length in bytes of IDX ``data`` (the header, or the whole file)."""
    if len(data) < 4:
        raise VaekitError(f"{where}: file is truncated ({len(data)} bytes, no IDX header); "
                          "delete it and download it again")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise VaekitError(f"{where}: IDX magic number is {magic}, expected {expected_magic} ({kind}); "
                          "the file is not an IDX file of that kind, replace it with the original")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VaekitError(f"{where}: file is truncated inside the IDX header; "
                          "delete it and download it again")
    return tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)), header


def _check_payload(where: str, dims: tuple[int, ...], got: int, extra: str = "") -> None:
    """One-line errors for a payload of ``got`` bytes (``extra``: how many follow beyond it, as text) where the
    header declares ``dims``."""
    expected = int(np.prod(dims, dtype=np.int64))
    if got < expected:
        raise VaekitError(f"{where}: file is truncated: header declares shape {dims} = {expected} bytes "
                          f"but only {got} follow; delete it and download it again")
    if got > expected or extra:
        raise VaekitError(f"{where}: {extra or got - expected} unexpected bytes after the IDX payload of shape "
                          f"{dims}; the file is corrupted, replace it with the original")


def read_idx_bytes(data: bytes, where: str, expected_magic: int) -> np.ndarray:
    """Parse IDX ``data`` into a uint8 array of the declared shape (images (n, rows, cols), labels (n,))."""
    dims, header = _parse_header(data, where, expected_magic)
    _check_payload(where, dims, len(data) - header)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _open(path: Path) -> Any:
    """``path`` opened for binary reading, decompressing when it is gzip."""
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else path.open("rb")


def _read_header(f: Any, where: str, expected_magic: int) -> tuple[int, ...]:
    head = f.read(4)
    if len(head) == 4:
        head += f.read(4 * head[3])
    return _parse_header(head, where, expected_magic)[0]


def idx_shape(path: Path, expected_magic: int) -> tuple[int, ...]:
    """The array shape an IDX file declares (reads only its header)."""
    try:
        with _open(path) as f:
            return _read_header(f, str(path), expected_magic)
    except (OSError, EOFError, zlib.error) as err:
        raise VaekitError(f"{path}: cannot read the IDX file ({err}); delete it and download it again") from None


def read_idx(path: Path, expected_magic: int, out: np.ndarray | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed) into a uint8 array; errors name the file and the fix.

    The payload is decompressed straight into the array (or into ``out``, a C-contiguous uint8 array of
    the declared shape, e.g. a slice of a larger one), :data:`READ_BLOCK` bytes at a time: no second copy of
    the data is ever held."""
    where = str(path)
    try:
        with _open(path) as f:
            dims = _read_header(f, where, expected_magic)
            if out is None:
                out = np.empty(dims, dtype=np.uint8)
            elif out.shape != dims or out.dtype != np.uint8 or not out.flags.c_contiguous:
                raise VaekitError(f"{where}: IDX shape {dims} does not fit the array it is read into "
                                  f"{out.shape}; the files do not belong together, replace them")
            view = memoryview(out.reshape(-1)).cast("B")  # type: ignore[arg-type]
            got = 0
            while got < len(view):  # a bounded slice: gzip's readinto reads the whole request into a temporary
                n = f.readinto(view[got:got + READ_BLOCK])
                if not n:
                    break
                got += n
            extra = len(f.read(1 << 16))
    except (OSError, EOFError, zlib.error) as err:
        raise VaekitError(f"{path}: cannot read the IDX file ({err}); "
                          "delete it and download it again") from None
    _check_payload(where, dims, got, f"{extra}{'+' if extra == 1 << 16 else ''}" if extra else "")
    return out
