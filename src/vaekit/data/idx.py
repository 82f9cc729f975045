"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout: a 4-byte big-endian magic number ``0x00 0x00 <type> <ndim>`` (images: 2051 = uint8, 3 dims;
labels: 2049 = uint8, 1 dim), then ``ndim`` big-endian uint32 sizes, then the row-major payload.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from vaekit.errors import VaekitError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx_bytes(data: bytes, where: str, expected_magic: int) -> np.ndarray:
    """Parse IDX ``data`` into a uint8 array of the declared shape (images (n, rows, cols), labels (n,))."""
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
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(data) - header
    if got < expected:
        raise VaekitError(f"{where}: file is truncated: header declares shape {dims} = {expected} bytes "
                          f"but only {got} follow; delete it and download it again")
    if got > expected:
        raise VaekitError(f"{where}: {got - expected} unexpected bytes after the IDX payload of shape "
                          f"{dims}; "
                          "the file is corrupted, replace it with the original")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed) into a uint8 array; errors name the file and the fix."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise VaekitError(f"{path}: cannot read the IDX file ({err}); "
                          "delete it and download it again") from None
    return read_idx_bytes(raw, str(path), expected_magic)
