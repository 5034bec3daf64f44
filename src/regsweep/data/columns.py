"""What a table's columns hold that a user most likely did not mean, in one line each.

A CSV is text, and pandas reads a column as numbers only when every cell is a number:
one ``?`` or a decimal comma turns a column of measurements into categories, one per
distinct value, which the network can only memorize. So can a column of identifiers or
dates. None of these stop a sweep; each gets one ``warning:`` line that names the
column and the fix (the sweep-file key that reads it right, or ``data.drop``).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

# A text column with a distinct value on at least this share of its rows (and at least
# _MIN_ROWS rows) is an identifier: one-hot encoding it only memorizes rows.
_IDENTIFIER_SHARE = 0.9
_MIN_ROWS = 20
# A text column counts as numbers (with a few marks in it) when most cells parse.
_NUMBER_SHARE = 0.5
# ... and as dates, or as numbers in another notation, when nearly all do.
_NEARLY_ALL = 0.9
# Marks listed by name at most this many; more distinct non-numbers are not marks.
_MAX_MARKS = 5
# Cells parsed to tell dates apart: enough to be sure, few enough to be quick.
_DATE_SAMPLE = 200
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DATE_MARKS = re.compile(r"[-/:. T]")


def is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def unusable_column(column: pd.Series) -> str | None:
    """What makes a column unusable as a feature (lists, mappings, bytes), or None."""
    if column.dtype != object:
        return None
    values = column.dropna()
    if not len(values):
        return None
    first = values.iloc[0]
    if isinstance(first, list | tuple | dict | set | np.ndarray):
        return f"holds {type(first).__name__} values such as {_short(first)}"
    if isinstance(first, bytes | bytearray):
        return "holds bytes"
    return None


def column_notes(column: pd.Series, categorical: bool, skiprows: int = 0) -> list[str]:
    """What a feature column's values suggest was meant otherwise, as phrases that follow
    "column 'x' of FILE"; empty when nothing stands out."""
    values = column.dropna()
    if not len(values):
        return []
    if is_numeric(column):  # min and max: a hash of every value costs more on wide tables
        numbers = values.to_numpy(dtype=np.float64)
        constant = bool(numbers.min() == numbers.max())
    else:
        constant = values.nunique() == 1
    if constant and len(column) >= 2:
        return [
            f"has the same value ({_short(values.iloc[0])}) on every row: it carries nothing "
            "(add it to data.drop)"
        ]
    if not categorical or is_numeric(column):
        return _numeric_notes(column, values, skiprows)
    if pd.api.types.is_datetime64_any_dtype(column):
        return [_dates(values.iloc[0])]
    if pd.api.types.is_bool_dtype(column):
        return []
    text = values.astype(str).str.strip()
    note = _numbers_as_text(text) or _date_text(text)
    if note:
        return [note]
    notes = []
    distinct = text.nunique()
    if len(text) >= _MIN_ROWS and distinct >= _IDENTIFIER_SHARE * len(text):
        notes.append(
            f"has a different value on {distinct} of {len(text)} rows (an identifier?): "
            f"one-hot encoding it makes {distinct} columns that only memorize rows; add it "
            "to data.drop"
        )
    twins = lookalikes(values)
    if twins:
        notes.append(
            f"has categories that differ only by surrounding spaces or case ({twins}): they "
            "are different categories to the network; make them one in the file"
        )
    return notes


def label_notes(y: pd.Series, where: str, task: str) -> list[str]:
    """A note on class labels that differ only by spaces or case, if any."""
    if task != "classification" or is_numeric(y):
        return []
    twins = lookalikes(y.dropna())
    if not twins:
        return []
    return [
        f"{where} has labels that differ only by surrounding spaces or case ({twins}): they "
        "are different classes; make them one label in the file"
    ]


def lookalikes(values: pd.Series) -> str:
    """Two distinct texts that are one after stripping spaces and case, shown; or ''."""
    if is_numeric(values) or pd.api.types.is_bool_dtype(values):
        return ""
    distinct = pd.Series(pd.unique(values.astype(str)))
    key = distinct.str.strip().str.casefold()
    repeated = key[key.duplicated(keep=False)]
    if repeated.empty:
        return ""
    first = distinct[key == repeated.iloc[0]].tolist()
    return " and ".join(repr(v) for v in first[:2])


def near_names(asked: list[str], columns: list[str]) -> str:
    """ "; did you mean ' price'?" for names that match a column but for spaces or case."""

    def key(name: str) -> str:
        return name.strip().strip("'\"").strip().casefold()

    by_key = {key(c): c for c in columns}
    near = [by_key[key(a)] for a in asked if key(a) in by_key and by_key[key(a)] != a]
    return f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""


def _numeric_notes(column: pd.Series, values: pd.Series, skiprows: int) -> list[str]:
    if not is_numeric(column):
        return []
    numbers = values.to_numpy(dtype=np.float64)
    notes = []
    infinite = np.isinf(numbers)
    if infinite.any():
        rows = values.index[infinite]
        lines = ", ".join(str(int(i) + 2 + skiprows) for i in list(rows)[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        notes.append(
            f"is infinite on {len(rows)} row(s) (line {lines}{more}; an overflowed export?): "
            "treated as missing (imputed, with a missing-value indicator); write finite "
            "numbers in the file to keep them"
        )
    finite = numbers[~infinite]
    if (
        pd.api.types.is_integer_dtype(column)  # a saved index is whole numbers
        and len(finite) == len(column) >= _MIN_ROWS
        and len(np.unique(finite)) == len(finite)
        and finite.max() - finite.min() == len(finite) - 1
        and (np.all(np.diff(finite) == 1) or str(column.name).startswith("Unnamed"))
    ):
        notes.append(
            f"numbers the rows ({_short(finite[0])}, {_short(finite[1])}, ...: a saved row "
            "index?): as a feature it only tells where a row stood in the file; add it to "
            "data.drop (pandas writes none with to_csv(index=False))"
        )
    return notes


def _numbers_as_text(text: pd.Series) -> str | None:
    """A note for numbers that pandas read as text: marks, decimal commas, thousands."""
    parsed = pd.to_numeric(text, errors="coerce")
    comma: tuple[str, str] | None = None
    commas = text.str.contains(",", regex=False)
    if commas.any():
        # Read the other way: '.' between thousands (or nowhere) and ',' before decimals.
        as_decimal = pd.to_numeric(
            text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False),
            errors="coerce",
        )
        if as_decimal.notna().sum() > parsed.notna().sum():
            parsed, example = as_decimal, text[commas].iloc[0]
            if text[commas & as_decimal.notna()].str.match(_THOUSANDS).all():
                comma = (
                    f"with ',' in them (such as {example!r})",
                    "data.thousands: ',' if it separates thousands, or data.decimal: ',' if "
                    "it is the decimal mark",
                )
            else:
                dots = (
                    " with data.thousands: '.'" if text.str.contains(".", regex=False).any() else ""
                )
                comma = (
                    f"written with a decimal comma (such as {example!r})",
                    f"data.decimal: ','{dots}",
                )
    share = float(parsed.notna().mean())
    if share < _NUMBER_SHARE or (share == 1.0 and not comma):
        return None
    others = text[parsed.isna()]
    marks = pd.unique(others).tolist()
    listed = ", ".join(repr(m) for m in marks)
    if len(marks) > _MAX_MARKS:
        return (
            f"holds numbers on {share:.0%} of its rows and text (such as {marks[0]!r}) on the "
            "rest, so every value is read as a category; clean the column, or list its "
            "missing-value marks in data.na_values"
        )
    held = f"numbers {comma[0]}" if comma else "numbers"
    also = f", but also {listed} on {len(others)} row(s)" if marks else ""
    fixes = [f"set {comma[1]}"] if comma else []
    if marks:
        verb = "marks" if len(marks) == 1 else "mark"
        fixes.append(f"if {listed} {verb} a missing value, set data.na_values: [{listed}]")
    return f"holds {held}{also}, read as text, each value a category; {'; '.join(fixes)}"


def _date_text(text: pd.Series) -> str | None:
    sample = text.iloc[:_DATE_SAMPLE]
    if not sample.str.contains(_DATE_MARKS).all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' notes on inferring a format
        try:
            parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            return None
    if parsed.notna().mean() < _NEARLY_ALL:
        return None
    return _dates(sample.iloc[0])


def _dates(example: Any) -> str:
    return (
        f"holds dates or times (such as {_short(example)}): each distinct one becomes a "
        "category, which only memorizes; derive numbers from it in the file (year, month, "
        "day of week, days since a start) or add it to data.drop"
    )


def _short(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    shown = repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, pd.Timestamp):
        shown = repr(str(value))
    return shown if len(shown) <= 40 else shown[:37] + "..."
