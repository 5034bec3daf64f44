"""Preprocessors fitted on the training split only, and saved with an export.

Tables go through scikit-learn's ``ColumnTransformer``: numeric columns have infinite
values turned into gaps, are imputed with the median and scaled by ``data.scaler``
(:data:`SCALERS`); categorical ones imputed with the most frequent value and one-hot
encoded, ignoring categories never seen in training; every column that had gaps in
training gets a 0/1 indicator column. Arrays are flattened, imputed and
standardized per feature. Images are flattened, scaled to [0, 1] and standardized with
one mean and standard deviation over all training pixels, as MNIST always was.

Each is a scikit-learn transformer, so ``joblib`` saves it beside ``model.pt`` and a
predictor applies it to raw rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

from regsweep.config.schema import DEFAULT_SCALER

# data.scaler: how numeric columns are put on one scale (the README's "Your own data").
SCALERS = ("standard", "quantile", "robust")
# Smooth clipping bound of the robust scaler (RealMLP's x / sqrt(1 + (x/3)^2)).
_CLIP = 3.0


def table_preprocessor(
    numeric: list[str], categorical: list[str], scaler: str | None = None
) -> ColumnTransformer:
    """The unfitted transform of a table's feature columns.

    The missing-value indicators are their own 0/1 columns, not standardized: a column
    with one gap in a thousand rows would otherwise become a feature of size 30.
    """
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        numeric_steps = [
            ("finite", _finite()),
            ("impute", SimpleImputer(strategy="median")),
            ("scale", numeric_scaler(scaler or DEFAULT_SCALER)),
        ]
        parts.append(("numeric", Pipeline(numeric_steps), numeric))
        missing_steps = [("finite", _finite()), ("indicate", _indicator())]
        parts.append(("missing_numeric", Pipeline(missing_steps), numeric))
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


def numeric_scaler(name: str) -> Any:
    """The unfitted scaler ``data.scaler: name`` for imputed numeric columns.

    standard: ``(x - mean) / std``. quantile: each column mapped through its training
    quantiles to a standard normal, as Gorishniy et al. (2021) and Grinsztajn et al.
    (2022) prepare tables for MLPs. robust: ``(x - median) / IQR`` (scikit-learn's
    ``RobustScaler``), then smoothly clipped to (-3, 3) by ``x / sqrt(1 + (x/3)^2)``, as
    in RealMLP (Holzmüller et al., 2024): outliers stay ordered but cannot dominate.
    """
    if name == "standard":
        return StandardScaler()
    if name == "quantile":
        return NormalQuantiles()
    if name == "robust":
        clip = FunctionTransformer(smooth_clip, feature_names_out="one-to-one")
        return Pipeline([("robust", RobustScaler()), ("clip", clip)])
    raise ValueError(f"unknown scaler {name!r} (allowed: {', '.join(SCALERS)})")


def smooth_clip(x: np.ndarray) -> np.ndarray:
    """``x / sqrt(1 + (x/3)^2)``: about x near 0, bounded by +-3 far out."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(1.0 + (x / _CLIP) ** 2)


class NormalQuantiles(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """scikit-learn's ``QuantileTransformer(output_distribution="normal")``, set up as
    Gorishniy et al.'s code does it: about one quantile per 30 training rows (10 to
    1,000), every row used, and the training values jittered by 1e-3 standard
    deviations before the quantiles are taken, with a fixed seed.

    The jitter is what keeps a 0/1 column usable: without it the quantiles of tied
    values collapse and 0 and 1 become -5.2 and +5.2. Only the fit sees it; transform
    maps the values as they are. The fixed seed keeps the fit reproducible.
    """

    def __init__(self, noise: float = 1e-3, seed: int = 0) -> None:
        self.noise = noise
        self.seed = seed

    def fit(self, x: Any, y: Any = None) -> NormalQuantiles:
        values = np.asarray(x, dtype=np.float64)
        n = len(values)
        self.quantiles_ = QuantileTransformer(
            n_quantiles=max(min(n // 30, 1000), 10) if n >= 10 else max(n, 1),
            output_distribution="normal",
            subsample=None,
            random_state=self.seed,
        )
        if self.noise > 0 and n > 1:
            spread = values.std(axis=0, keepdims=True)
            rng = np.random.default_rng(self.seed)
            values = values + self.noise * spread * rng.standard_normal(values.shape)
        self.quantiles_.fit(values)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        return np.asarray(self.quantiles_.transform(np.asarray(x, dtype=np.float64)))


def _finite() -> FunctionTransformer:
    return FunctionTransformer(infinite_as_missing, feature_names_out="one-to-one")


def infinite_as_missing(x: Any) -> Any:
    """+-inf as NaN (an overflowed export): imputed, with its missing indicator."""
    if isinstance(x, pd.DataFrame):
        return x.replace([np.inf, -np.inf], np.nan)
    values = np.asarray(x, dtype=np.float64)
    return np.where(np.isinf(values), np.nan, values)


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
