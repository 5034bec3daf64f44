"""Small real tables for the data tests: the CSV copies shipped in sweeps/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SWEEP_DATA = Path(__file__).resolve().parents[2] / "sweeps" / "data"
BREAST_CANCER = SWEEP_DATA / "breast_cancer.csv"
DIABETES = SWEEP_DATA / "diabetes.csv"
WINE = SWEEP_DATA / "wine.csv"


def mixed_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical and missing values, and a label that depends on them."""
    frame = pd.read_csv(BREAST_CANCER).sample(n, random_state=seed).reset_index(drop=True)
    out = frame[["mean radius", "mean texture", "diagnosis"]].copy()
    out["size"] = pd.cut(frame["mean area"], 3, labels=["small", "medium", "large"]).astype(str)
    out.loc[::7, "mean texture"] = float("nan")
    out.loc[3::11, "size"] = None
    return out
