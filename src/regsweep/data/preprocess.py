"""Preprocessors fitted on the training split only, and saved with an export.

Tables go through scikit-learn's ``ColumnTransformer``: numeric columns are imputed with
the median and standardized; categorical ones imputed with the most frequent value and
one-hot encoded, ignoring categories never seen in training; every column that had gaps
in training gets a 0/1 indicator column. Arrays are flattened, imputed and
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
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


def table_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """The unfitted transform of a table's feature columns.

    The missing-value indicators are their own 0/1 columns, not standardized: a column
    with one gap in a thousand rows would otherwise become a feature of size 30.
    """
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        numeric_steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        parts.append(("numeric", Pipeline(numeric_steps), numeric))
        parts.append(("missing_numeric", _indicator(), numeric))
    if categorical:
        categorical_steps = [
            ("as_object", FunctionTransformer(as_object, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        parts.append(("categorical", Pipeline(categorical_steps), categorical))
        missing_steps = [
            ("as_object", FunctionTransformer(as_object, feature_names_out="one-to-one")),
            ("indicate", _indicator()),
        ]
        parts.append(("missing_categorical", Pipeline(missing_steps), categorical))
    # Dense float output: the network takes a tensor, and the tables here are small.
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _indicator() -> MissingIndicator:
    # One column per feature that had gaps in training; gaps that only appear later are
    # imputed without one (error_on_new=False), since the network has no input for them.
    return MissingIndicator(features="missing-only", error_on_new=False)


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
    scaled = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    features = FeatureUnion([("values", scaled), ("missing", _indicator())])
    return Pipeline([("flatten", FunctionTransformer(flatten)), ("features", features)])


def image_preprocessor() -> Pipeline:
    return Pipeline(
        [("flatten", FunctionTransformer(flatten_pixels)), ("standardize", GlobalStandardizer())]
    )


def transform(preprocessor: Any, x: Any) -> np.ndarray:
    """``preprocessor.transform(x)`` as a float32 array."""
    return np.asarray(preprocessor.transform(x), dtype=np.float32)
