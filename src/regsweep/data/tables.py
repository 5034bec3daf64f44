"""``dataset: table``: a CSV, TSV or Parquet file read with pandas, its columns checked.

Every check names the file, the key and what is allowed, as one line: a user's own
table is where typos and surprises live (a renamed column, a stray text value, a test
file exported with other columns). What would be read in a way a user most likely did
not mean, but can still be trained on (an identifier column, dates, numbers with a
missing-value mark or a decimal comma), is one ``warning:`` line naming the column and
the fix; the checks themselves are in :mod:`regsweep.data.columns`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regsweep.config.schema import DataConfig
from regsweep.data.columns import (
    column_notes,
    is_numeric,
    label_notes,
    near_names,
    unusable_column,
)
from regsweep.data.tasks import Task
from regsweep.errors import DataError

log = logging.getLogger("regsweep")

# Extension -> reader; a CSV-like file may be compressed (pandas infers it from the name).
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
_PARQUET = (".parquet", ".pq")
ALLOWED_FILES = ".csv, .tsv, .tab, .txt (optionally .gz, .bz2, .zip, .xz, .zst) or .parquet"
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")
# A numeric target with at most this many distinct whole values is a class label.
MAX_INFERRED_CLASSES = 20
# The network's inputs are one dense float32 matrix: refuse a one-hot encoding above this.
MAX_INPUT_BYTES = 4 * 2**30
# Keys that shape how a CSV's text is read; a Parquet file's values are typed already.
_CSV_KEYS = ("sep", "decimal", "thousands", "encoding")
# Excel writes this first line to name the separator of a CSV ("sep=;").
_EXCEL_SEP_LINE = re.compile(r"^\ufeff?sep=(.)\s*$")


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


def read_frame(
    value: str,
    key: str,
    *,
    sep: str | None = None,
    skiprows: int = 0,
    notes: list[str] | None = None,
    **csv: Any,
) -> pd.DataFrame:
    """The whole file at ``data.<key>``, with pandas (pyarrow for Parquet).

    ``csv`` holds pandas' ``read_csv`` options from the sweep file (``na_values``,
    ``decimal``, ``thousands``, ``encoding``; None: pandas' default). Rows with no value
    in any column (the separators-only lines spreadsheets leave) are skipped, with a line
    added to ``notes``; a file with a header and no rows is refused.
    """
    notes = [] if notes is None else notes
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"data.{key}: no such file {path}")
    name = path.name.lower()
    for ext in _COMPRESSION:
        name = name.removesuffix(ext)
    suffix = Path(name).suffix
    csv = {option: given for option, given in csv.items() if given is not None}
    if suffix in _PARQUET:
        csv_only = [k for k in _CSV_KEYS if k in csv or (k == "sep" and sep)]
        if csv_only:
            raise DataError(
                f"data.{csv_only[0]}: applies to CSV-like files; {path} is Parquet, whose "
                f"values are typed already (allowed here: leave {csv_only[0]} out)"
            )
    elif suffix not in _SEPARATORS:
        raise DataError(
            f"data.{key}: cannot tell the format of {path} from its name (allowed: {ALLOWED_FILES})"
        )
    kind = "Parquet" if suffix in _PARQUET else "TSV" if _SEPARATORS[suffix] == "\t" else "CSV"
    try:
        if suffix in _PARQUET:
            frame = _na_values_in_parquet(pd.read_parquet(path), csv.get("na_values"))
            frame = frame.iloc[skiprows:] if skiprows else frame
        else:
            if skiprows == 0:
                _refuse_excel_separator_line(path, key)
            if "encoding" not in csv and _starts_utf16(path):
                csv["encoding"] = "utf-16"  # Excel's "Unicode text" export
            frame = pd.read_csv(path, sep=sep or _SEPARATORS[suffix], skiprows=skiprows, **csv)
    except pd.errors.ParserError as exc:
        # pandas names the line ("Expected 5 fields in line 12, saw 6"): pass it on.
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(
            f"data.{key}: {path} does not parse as a {kind} table ({detail}); "
            "allowed: the same number of fields on every line (data.sep sets the separator)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data.{key}: {path} is empty (allowed: a header line and rows)") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data.{key}: {path} is not {exc.encoding} text (byte {exc.object[exc.start]:#04x} "
            f"at position {exc.start}); allowed: UTF-8, or the file's encoding in data.encoding "
            "(Excel on Windows writes cp1252)"
        ) from None
    except LookupError as exc:  # an unknown encoding name
        raise DataError(
            f"data.encoding: {exc}, reading {path} (allowed: a Python codec name such as "
            "utf-8, cp1252, latin-1, utf-16)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"data.{key}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    frame.columns = pd.Index([str(c) for c in frame.columns])
    if suffix not in _PARQUET:
        notes += _duplicate_names(path, key, sep or _SEPARATORS[suffix], skiprows, csv)
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.all() or len(frame) == 0:
        raise DataError(
            f"data.{key}: {path} has a header ({_names(list(frame.columns))}) but no rows"
            f"{' with a value' if len(frame) else ''} (allowed: one row per sample after the "
            "header)"
        )
    if empty.any():
        rows = np.flatnonzero(empty)
        notes.append(
            f"data.{key}: {len(rows)} row(s) of {path} have no value in any column (line "
            f"{_lines(frame.index[rows], skiprows)}): skipped"
        )
        frame = frame[~empty]
    return frame


def _starts_utf16(path: Path) -> bool:
    if path.suffix.lower() in _COMPRESSION:
        return False
    with path.open("rb") as handle:
        return handle.read(2) in (b"\xff\xfe", b"\xfe\xff")


def _na_values_in_parquet(frame: pd.DataFrame, marks: list[str] | None) -> pd.DataFrame:
    """``data.na_values`` in a Parquet file's text columns; a column that is then all
    numbers becomes numeric, as ``read_csv`` would have read it."""
    if not marks:
        return frame
    for column in frame.columns:
        if is_numeric(frame[column]) or not pd.api.types.is_string_dtype(frame[column]):
            continue
        cleaned = frame[column].where(~frame[column].isin(marks))
        numbers = pd.to_numeric(cleaned, errors="coerce")
        frame[column] = numbers if numbers.notna().sum() == cleaned.notna().sum() else cleaned
    return frame


def _refuse_excel_separator_line(path: Path, key: str) -> None:
    """Excel's ``sep=;`` first line would be read as the header (one or two columns)."""
    first = _first_line(path) or ""
    match = _EXCEL_SEP_LINE.match(first)
    if match:
        raise DataError(
            f"data.{key}: the first line of {path}, {first.strip()!r}, is Excel's note of the "
            f"separator, not a header (allowed: data.skiprows: 1 with data.sep: "
            f"{match.group(1)!r})"
        )


def _first_line(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline()
    except OSError:
        return None


def _duplicate_names(
    path: Path, key: str, sep: str, skiprows: int, csv: dict[str, Any]
) -> list[str]:
    """pandas renames a repeated header name ``a`` to ``a.1``: say so, once."""
    options = {k: v for k, v in csv.items() if k == "encoding"}
    try:  # the header line as a row of values: pandas renames nothing there
        header = pd.read_csv(
            path, sep=sep, skiprows=skiprows, nrows=1, header=None, dtype=str, **options
        )
    except (ValueError, OSError):
        return []
    names = [str(v) for v in header.iloc[0] if not pd.isna(v)] if len(header) else []
    repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if not repeated:
        return []
    return [
        f"data.{key}: the header of {path} names {repeated[0]!r} {names.count(repeated[0])} "
        f"times; pandas reads the repeats as {repeated[0] + '.1'!r}, ...: give each column "
        "its own name in the file"
    ]


def read_table(config: DataConfig) -> TableData:
    """The training table (and the test table), checked against ``config``.

    Warnings are logged only once every check has passed, so that bad input is one line.
    """
    notes: list[str] = []
    assert config.path is not None and config.target is not None  # DataConfig guarantees it
    csv: dict[str, Any] = {
        "na_values": config.na_values,
        "decimal": config.decimal,
        "thousands": config.thousands,
        "encoding": config.encoding,
    }
    frame = read_frame(
        config.path, "path", sep=config.sep, skiprows=config.skiprows, notes=notes, **csv
    )
    path = Path(config.path).expanduser()
    target = config.target
    columns = list(frame.columns)
    if target not in columns:
        raise DataError(
            f"data.target: column {target!r} is not in {path} (allowed: one of its columns: "
            f"{_names(columns)}){near_names([target], columns)}{_one_column_hint(columns)}"
        )
    features = _feature_columns(config, columns, path)
    for column in features:
        problem = unusable_column(frame[column])
        if problem:
            raise DataError(
                f"data.path: column {column!r} of {path} {problem} (allowed: numbers, text, "
                "booleans or dates in a column; add it to data.drop)"
            )
    y = frame[target]
    _check_target(y, target, path, skiprows=config.skiprows)
    task = config.task or infer_task(y)
    _check_task(y, task, target, path)
    notes += label_notes(y, f"data.target: column {target!r} of {path}", task)
    empty = [c for c in features if frame[c].isna().all()]
    notes += [
        f"data.path: column {column!r} of {path} is empty on every row: it is left out (add "
        "it to data.drop to say so)"
        for column in empty
    ]
    features = [c for c in features if c not in empty]
    if not features:
        raise DataError(f"data.path: no feature column of {path} has a value (allowed: one)")
    categorical = _categorical_columns(config, frame, features, path)
    numeric = [c for c in features if c not in categorical]
    for column in features:
        for note in column_notes(frame[column], column in categorical, config.skiprows):
            notes.append(f"data.path: column {column!r} of {path} {note}")
    _check_width(frame, categorical, len(numeric), path)
    train = Table(frame[features], y, path)
    test = None
    if config.test_path is not None:
        test_frame = read_frame(config.test_path, "test_path", sep=config.sep, notes=notes, **csv)
        test_path = Path(config.test_path).expanduser()
        missing = [c for c in columns if c not in test_frame.columns]
        extra = [c for c in test_frame.columns if c not in columns]
        if missing or extra:
            said = [f"missing {_names(missing)}"] if missing else []
            said += [f"extra {_names(extra)}"] if extra else []
            raise DataError(
                f"data.test_path: the columns of {test_path} differ from those of {path} "
                f"({'; '.join(said)}); allowed: the same columns as the training file"
            )
        for column in numeric:
            if not is_numeric(test_frame[column]):
                text = pd.to_numeric(test_frame[column], errors="coerce").isna()
                sample = test_frame[column][text & test_frame[column].notna()]
                shown = f" such as {sample.iloc[0]!r}" if len(sample) else ""
                raise DataError(
                    f"data.test_path: column {column!r} of {test_path} holds text{shown} where "
                    f"{path} has numbers (allowed: numbers; if it marks a missing value, list "
                    "it in data.na_values)"
                )
        _check_target(test_frame[target], target, test_path, skiprows=0, key="test_path")
        test = Table(test_frame[features], test_frame[target], test_path)
    for note in notes:
        log.warning("%s", note)
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
                f"{_names(columns)}){near_names(unknown, columns)}"
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
    numeric = {c for c in features if is_numeric(frame[c])}
    if config.categorical is None:
        return [c for c in features if c not in numeric]
    unknown = [c for c in config.categorical if c not in features]
    if unknown:
        raise DataError(
            f"data.categorical: {_names(unknown)} not among the feature columns of {path} "
            f"(allowed: {_names(features)}){near_names(unknown, features)}"
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


def _check_target(
    y: pd.Series, target: str, path: Path, *, skiprows: int, key: str = "target"
) -> None:
    missing = y.isna().to_numpy()
    if missing.any():
        # File lines are 1-based and start after the skipped lines and the header.
        rows = y.index[missing]
        raise DataError(
            f"data.{key}: column {target!r} of {path} is empty (NaN) on "
            f"{len(rows)} row(s), line {_lines(rows, skiprows)}; allowed: a label on every row "
            "(drop those rows)"
        )
    if is_numeric(y):
        infinite = np.isinf(y.to_numpy(dtype=np.float64))
        if infinite.any():
            raise DataError(
                f"data.{key}: column {target!r} of {path} is infinite on {int(infinite.sum())} "
                f"row(s), line {_lines(y.index[infinite], skiprows)}; allowed: a finite "
                "number on every row (fix or drop those rows)"
            )


def _check_task(y: pd.Series, task: str, target: str, path: Path) -> None:
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise DataError(
            f"data.task: regression needs a numeric target, but column {target!r} of {path} "
            f"holds {y.dtype} values (allowed: numbers, or task: classification)"
        )
    if task != "classification":
        return
    n_classes = y.nunique()
    if n_classes < 2:
        raise DataError(
            f"data.target: column {target!r} of {path} has one class ({y.iloc[0]!r}); "
            "classification needs at least 2 (allowed: a column with 2 or more labels, "
            "or task: regression for a number)"
        )
    # Classes that hardly repeat leave nothing to learn a class from: the usual cause is a
    # number declared (or a text column picked) as the label by mistake.
    if n_classes > MAX_INFERRED_CLASSES and n_classes > len(y) / 2:
        number = " or task: regression for a number" if is_numeric(y) else ""
        raise DataError(
            f"data.target: column {target!r} of {path} has {n_classes} different labels on "
            f"{len(y)} rows, so most classes have a single row; allowed for classification: "
            f"labels that repeat (another column as data.target{number})"
        )


def _check_width(frame: pd.DataFrame, categorical: list[str], n_numeric: int, path: Path) -> None:
    """Refuse a one-hot encoding whose dense input matrix would not fit in memory."""
    widths = {c: int(frame[c].nunique()) for c in categorical}
    width = n_numeric + sum(widths.values())
    if width * len(frame) * 4 <= MAX_INPUT_BYTES:
        return
    widest = max(widths, key=lambda c: widths[c])
    raise DataError(
        f"data.categorical: one-hot encoding {path} makes {width:,} input columns for "
        f"{len(frame):,} rows ({width * len(frame) * 4 / 2**30:.0f} GiB as float32), "
        f"{widths[widest]:,} of them from column {widest!r}; allowed: at most "
        f"{MAX_INPUT_BYTES // 2**30} GiB (add the widest columns to data.drop)"
    )


def _one_column_hint(columns: list[str]) -> str:
    """A whole header read as one name: the file's separator is another one."""
    if len(columns) != 1:
        return ""
    for mark, shown in ((";", "';'"), ("\t", "'\\t'"), ("|", "'|'")):
        if mark in columns[0]:
            return f"; the header reads as one column: set data.sep: {shown}"
    return ""


def _lines(index: Any, skiprows: int) -> str:
    """The file lines of row labels (a fresh RangeIndex): the header is line 1."""
    shown = ", ".join(str(int(i) + 2 + skiprows) for i in list(index)[:5])
    return shown + (f" and {len(index) - 5} more" if len(index) > 5 else "")


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:12])
    return shown + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
