"""``dataset: arrays``: one ``.npz`` with arrays ``x`` (samples first) and ``y``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regsweep.errors import DataError

KEYS = ("x", "y")


def read_npz(value: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of the file at ``data.<key>``; pickled objects are refused."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"data.{key}: no such file {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"data.{key}: {path} has no array {', '.join(missing)} (it has "
                    f"{', '.join(archive.files) or 'none'}; allowed: an .npz with arrays x and y)"
                )
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"data.{key}: cannot read {path} as .npz ({type(exc).__name__}: {exc}); "
            "allowed: numpy.savez(path, x=..., y=...)"
        ) from None
    if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
        raise DataError(
            f"data.{key}: {path} has x of shape {x.shape} and y of shape {y.shape}; allowed: "
            "x with one row per sample (2 or more dimensions) and y with one value per row"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"data.{key}: x in {path} holds {x.dtype}, not numbers (allowed: numbers)")
    if y.dtype.kind == "f" and np.isnan(y).any():
        rows = np.flatnonzero(np.isnan(y))
        raise DataError(
            f"data.{key}: y in {path} is NaN at {len(rows)} row(s), index "
            f"{', '.join(str(i) for i in rows[:5])}; allowed: a target for every row"
        )
    return x, y
