"""Preprocessors fitted on the training split only, and saved with an export.

Tables go through scikit-learn's ``ColumnTransformer``: numeric columns are imputed with
the median (plus an indicator column per column that had gaps) and standardized;
categorical ones imputed with the most frequent value (plus indicator) and one-hot
encoded, ignoring categories never seen in training. Arrays are flattened, imputed and
standardized per feature. Images are flattened, scaled to [0, 1] and standardized with
one mean and standard deviation over all training pixels, as MNIST always was.

Each is a scikit-learn transformer, so ``joblib`` saves it beside ``model.pt`` and a
predictor applies it to raw rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


def table_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """The unfitted transform of a table's feature columns."""
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "as_object",
                            FunctionTransformer(as_object, feature_names_out="one-to-one"),
                        ),
                        ("impute", SimpleImputer(strategy="most_frequent", add_indicator=True)),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    # Dense float output: the network takes a tensor, and the tables here are small.
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def as_object(frame: pd.DataFrame) -> np.ndarray:
    """Categories as plain Python objects with NaN for gaps (pandas' string and category
    dtypes use ``pd.NA``, which SimpleImputer cannot compare)."""
    values = pd.DataFrame(frame).astype(object)
    return values.where(values.notna(), np.nan).to_numpy(dtype=object)


def flatten(x: np.ndarray) -> np.ndarray:
    """One row per sample, float32."""
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float32)


def flatten_pixels(x: np.ndarray) -> np.ndarray:
    """Flatten, and scale 8-bit pixels to [0, 1] first (float32 stays exact enough)."""
    x = np.asarray(x)
    flat = x.reshape(len(x), -1).astype(np.float32)
    return flat / 255.0 if x.dtype == np.uint8 else flat


class GlobalStandardizer(TransformerMixin, BaseEstimator):
    """``(x - mean) / std`` with one mean and std over every training value (pixels)."""

    def fit(self, x: np.ndarray, y: Any = None) -> GlobalStandardizer:
        self.mean_ = float(np.mean(x))
        self.std_ = float(np.std(x)) or 1.0
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean_) / self.std_).astype(np.float32)


def array_preprocessor() -> Pipeline:
    return Pipeline(
        [
            ("flatten", FunctionTransformer(flatten)),
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )


def image_preprocessor() -> Pipeline:
    return Pipeline(
        [("flatten", FunctionTransformer(flatten_pixels)), ("standardize", GlobalStandardizer())]
    )


def transform(preprocessor: Any, x: Any) -> np.ndarray:
    """``preprocessor.transform(x)`` as a float32 array."""
    return np.asarray(preprocessor.transform(x), dtype=np.float32)
