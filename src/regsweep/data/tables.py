"""``dataset: table``: a CSV, TSV or Parquet file read with pandas, its columns checked.

Every check names the file, the key and what is allowed, as one line: a user's own
table is where typos and surprises live (a renamed column, a stray text value, a test
file exported with other columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from regsweep.config.schema import DataConfig
from regsweep.data.tasks import Task
from regsweep.errors import DataError

# Extension -> reader; a CSV-like file may be compressed (pandas infers it from the name).
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
_PARQUET = (".parquet", ".pq")
ALLOWED_FILES = ".csv, .tsv, .tab, .txt (optionally .gz, .bz2, .zip, .xz, .zst) or .parquet"
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")
# A numeric target with at most this many distinct whole values is a class label.
MAX_INFERRED_CLASSES = 20


@dataclass(frozen=True)
class Table:
    """The feature columns and the target of one file, as read."""

    x: pd.DataFrame
    y: pd.Series
    path: Path


@dataclass(frozen=True)
class TableData:
    train: Table
    test: Table | None
    numeric: list[str]
    categorical: list[str]
    task: Task


def read_frame(value: str, key: str, *, sep: str | None = None, skiprows: int = 0) -> pd.DataFrame:
    """The whole file at ``data.<key>``, with pandas (pyarrow for Parquet)."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"data.{key}: no such file {path}")
    name = path.name.lower()
    for ext in _COMPRESSION:
        name = name.removesuffix(ext)
    suffix = Path(name).suffix
    try:
        if suffix in _PARQUET:
            frame = pd.read_parquet(path)
            return frame.iloc[skiprows:] if skiprows else frame
        if suffix not in _SEPARATORS:
            raise DataError(
                f"data.{key}: cannot tell the format of {path} from its name "
                f"(allowed: {ALLOWED_FILES})"
            )
        return pd.read_csv(path, sep=sep or _SEPARATORS[suffix], skiprows=skiprows)
    except pd.errors.ParserError as exc:
        # pandas names the line ("Expected 5 fields in line 12, saw 6"): pass it on.
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(
            f"data.{key}: {path} does not parse as a "
            f"{'TSV' if _SEPARATORS.get(suffix) == chr(9) else 'CSV'} table ({detail}); "
            "allowed: the same number of fields on every line (data.sep sets the separator)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data.{key}: {path} is empty (allowed: a header line and rows)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"data.{key}: cannot read {path} ({type(exc).__name__}: {exc})") from None


def read_table(config: DataConfig) -> TableData:
    """The training table (and the test table), checked against ``config``."""
    assert config.path is not None and config.target is not None  # DataConfig guarantees it
    frame = read_frame(config.path, "path", sep=config.sep, skiprows=config.skiprows)
    path = Path(config.path).expanduser()
    target = config.target
    columns = [str(c) for c in frame.columns]
    frame.columns = pd.Index(columns)
    if target not in columns:
        raise DataError(
            f"data.target: column {target!r} is not in {path} (allowed: one of its columns: "
            f"{_names(columns)})"
        )
    features = _feature_columns(config, columns, path)
    categorical = _categorical_columns(config, frame, features, path)
    numeric = [c for c in features if c not in categorical]
    y = frame[target]
    _check_target(y, target, path, skiprows=config.skiprows)
    task = config.task or infer_task(y)
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise DataError(
            f"data.task: regression needs a numeric target, but column {target!r} of {path} "
            f"holds {y.dtype} values (allowed: numbers, or task: classification)"
        )
    if task == "classification" and y.nunique() < 2:
        raise DataError(
            f"data.target: column {target!r} of {path} has one class ({y.iloc[0]!r}); "
            "classification needs at least 2 (allowed: a column with 2 or more labels, "
            "or task: regression for a number)"
        )
    train = Table(frame[features], y, path)
    test = None
    if config.test_path is not None:
        test_frame = read_frame(config.test_path, "test_path", sep=config.sep)
        test_path = Path(config.test_path).expanduser()
        test_frame.columns = pd.Index([str(c) for c in test_frame.columns])
        missing = [c for c in columns if c not in test_frame.columns]
        extra = [c for c in test_frame.columns if c not in columns]
        if missing or extra:
            said = [f"missing {_names(missing)}"] if missing else []
            said += [f"extra {_names(extra)}"] if extra else []
            raise DataError(
                f"data.test_path: the columns of {test_path} differ from those of {path} "
                f"({'; '.join(said)}); allowed: the same columns as the training file"
            )
        _check_target(test_frame[target], target, test_path, skiprows=0)
        test = Table(test_frame[features], test_frame[target], test_path)
    return TableData(train, test, numeric, categorical, task)


def infer_task(target: pd.Series) -> Task:
    """Classification for text, boolean or categorical targets and few whole numbers."""
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification"
    values = target.dropna().to_numpy(dtype=float)
    whole = bool(np.all(np.mod(values, 1) == 0))
    if whole and len(np.unique(values)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _feature_columns(config: DataConfig, columns: list[str], path: Path) -> list[str]:
    target = config.target
    for key in ("features", "drop"):
        asked = getattr(config, key) or []
        unknown = [c for c in asked if c not in columns]
        if unknown:
            raise DataError(
                f"data.{key}: {_names(unknown)} not in {path} (allowed: its columns: "
                f"{_names(columns)})"
            )
    if config.features is not None:
        if target in config.features:
            raise DataError(
                f"data.features: {target!r} is the target (data.target); a feature cannot be "
                "its own label (allowed: the other columns)"
            )
        return list(config.features)
    features = [c for c in columns if c != target and c not in (config.drop or [])]
    if not features:
        raise DataError(f"data.drop: no feature column of {path} is left (allowed: keep one)")
    return features


def _categorical_columns(
    config: DataConfig, frame: pd.DataFrame, features: list[str], path: Path
) -> list[str]:
    numeric = {c for c in features if _is_numeric(frame[c])}
    if config.categorical is None:
        return [c for c in features if c not in numeric]
    unknown = [c for c in config.categorical if c not in features]
    if unknown:
        raise DataError(
            f"data.categorical: {_names(unknown)} not among the feature columns of {path} "
            f"(allowed: {_names(features)})"
        )
    undeclared = [c for c in features if c not in numeric and c not in config.categorical]
    if undeclared:
        column = undeclared[0]
        sample = frame[column].dropna()
        shown = f" such as {sample.iloc[0]!r}" if len(sample) else ""
        raise DataError(
            f"data.categorical: column {column!r} of {path} holds text{shown}, but is not "
            f"declared categorical (allowed: add it to data.categorical, or to data.drop)"
        )
    return [c for c in features if c in config.categorical]


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _check_target(y: pd.Series, target: str, path: Path, *, skiprows: int) -> None:
    missing = np.flatnonzero(y.isna().to_numpy())
    if len(missing):
        # File lines are 1-based and start after the skipped lines and the header.
        lines = ", ".join(str(i + 2 + skiprows) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"data.target: column {target!r} of {path} is empty (NaN) on "
            f"{len(missing)} row(s), line {lines}{more}; allowed: a label on every row "
            "(drop those rows)"
        )


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:12])
    return shown + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
