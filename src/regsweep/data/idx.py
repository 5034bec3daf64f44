"""Read and write IDX files, the format MNIST ships in (raw or gzip-compressed).

torchvision reads IDX only from uncompressed files inside its own folder layout,
so a user's own IDX files (``dataset: idx``) go through these few lines instead.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# The third byte of the magic number names the element type (IDX specification).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(dtype).newbyteorder("="): code for code, dtype in _DTYPES.items()}


def read_idx(path: Path | str) -> np.ndarray:
    """Return the array stored in an IDX file; ``.gz`` files are decompressed on the fly."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[data[2]]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: header promises {shape} but the file holds other data")
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``)."""
    path = Path(path)
    native = np.ascontiguousarray(array)
    code = _CODES.get(native.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {native.dtype}")
    header = bytes([0, 0, code, native.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in native.shape
    )
    payload = header + native.astype(_DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(payload)
