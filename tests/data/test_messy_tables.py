"""A corpus of tables as users export them: each reads, with one ``warning:`` line per
oddity that names the column and the fix, or stops with one line naming the file, the key
and what is allowed. The files are written byte for byte as spreadsheets and scripts
write them (a BOM, ``sep=;`` first lines, decimal commas, cp1252, UTF-16)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from regsweep.config.schema import DataConfig
from regsweep.data.splits import load_splits
from regsweep.errors import DataError

N = 60  # rows: enough for every check to apply (identifiers need 20)
rng = np.random.default_rng(7)
X1 = rng.normal(10, 3, N).round(3)
X2 = rng.normal(0, 1, N).round(3)
LABELS = np.array(["yes", "no"])[rng.integers(0, 2, N)]


def csv_text(columns: dict[str, Any], sep: str = ",") -> str:
    frame = pd.DataFrame(columns)
    return frame.to_csv(index=False, sep=sep, lineterminator="\n")


def base(**extra: Any) -> dict[str, Any]:
    return {"x1": X1, "x2": X2, **extra, "y": LABELS}


def european() -> str:
    """What Excel writes in a German locale: ';' between fields, ',' before decimals."""
    x1, x2 = ([f"{v:.2f}".replace(".", ",") for v in column] for column in (X1, X2))
    return csv_text({"x1": x1, "x2": x2, "y": LABELS}, sep=";")


def with_marks() -> str:
    cells = X1.astype(str).astype(object)
    cells[[3, 17, 40]] = "?"
    return csv_text(base(x1=cells))


@dataclass(frozen=True)
class Case:
    content: str | bytes | pd.DataFrame
    keys: dict[str, Any] = field(default_factory=dict)
    warns: tuple[str, ...] = ()  # words of the warning lines, in order ('' = none)
    error: tuple[str, ...] = ()  # words of the one-line error
    name: str = "t.csv"
    numeric: int | None = None  # numeric columns after reading, where it matters
    columns_warned: int = 1  # one warning line per column


def header_line_only() -> str:
    return "x1,x2,y\n"


CASES: dict[str, Case] = {
    # Stopped, one line -------------------------------------------------------------------
    "header without rows": Case(header_line_only(), error=("data.path", "no rows", "'x1'")),
    "separators only": Case("x1,x2,y\n,,\n,,\n", error=("data.path", "no rows with a value")),
    "infinite regression target": Case(
        csv_text({"x1": X1, "y": np.r_[X2[:-1], np.inf]}),
        {"task": "regression"},
        error=("data.target", "'y'", "infinite on 1 row(s), line 61", "finite"),
    ),
    "unique floats declared classification": Case(
        csv_text({"x1": X1, "y": X2 + 0.0001}),
        {"task": "classification"},
        error=("data.target", "different labels on 60 rows", "task: regression"),
    ),
    "European CSV read with commas": Case(
        european(), error=("data.target", "header reads as one column", "data.sep: ';'")
    ),
    "Excel sep= first line": Case(
        "sep=;\n" + european(), error=("data.path", "'sep=;'", "data.skiprows: 1", "data.sep: ';'")
    ),
    "Excel sep= first line, sep given": Case(
        "sep=;\n" + european(), {"sep": ";"}, error=("data.path", "'sep=;'", "data.skiprows: 1")
    ),
    "cp1252 without encoding": Case(
        csv_text(base(city=["Zürich", "Köln"] * 30)).encode("cp1252"),
        error=("data.path", "not utf-8 text", "data.encoding", "cp1252"),
    ),
    "target name with a space": Case(
        csv_text({"x1": X1, " y": LABELS}), error=("data.target", "did you mean ' y'?")
    ),
    "target name in quotes": Case(
        "'x1','y'\n" + "\n".join(f"{a},{b}" for a, b in zip(X1, LABELS, strict=True)),
        error=("did you mean \"'y'\"?",),
    ),
    "list column in Parquet": Case(
        pd.DataFrame(base(tags=[[1, 2]] * N)),
        name="t.parquet",
        error=("data.path", "'tags'", "holds", "data.drop"),
    ),
    "decimal given for Parquet": Case(
        pd.DataFrame(base()), {"decimal": ","}, name="t.parquet", error=("data.decimal", "Parquet")
    ),
    "unknown encoding": Case(csv_text(base()), {"encoding": "klingon"}, error=("data.encoding",)),
    # Read, with one warning line per oddity --------------------------------------------
    "clean": Case(csv_text(base()), numeric=2),
    "BOM before the header": Case(
        ("\ufeff" + csv_text({"y": LABELS, "x1": X1})).encode("utf-8"), {"target": "y"}
    ),
    "UTF-16 from Excel's Unicode text": Case(
        csv_text(base(), sep="\t").encode("utf-16"), name="t.tsv", numeric=2
    ),
    "cp1252 with its encoding": Case(
        csv_text(base(city=["Zürich", "Köln"] * 30)).encode("cp1252"), {"encoding": "cp1252"}
    ),
    "quoted numbers": Case(
        "x1,x2,y\n" + "".join(f'"{a}","{b}",{c}\n' for a, b, c in zip(X1, X2, LABELS, strict=True)),
        numeric=2,
    ),
    "trailing blank and separator-only lines": Case(
        csv_text(base()) + "\n\n,,\n;;\n".replace(";;", ",,"),
        warns=("2 row(s)", "no value in any column", "line 62, 63", "skipped"),
    ),
    "infinite feature cells": Case(
        csv_text(base(x1=np.r_[X1[:-2], np.inf, -np.inf])),
        warns=("'x1'", "infinite on 2 row(s)", "line 60, 61", "treated as missing"),
        numeric=2,
    ),
    "identifier column": Case(
        csv_text(base(customer=[f"C{i:04d}" for i in range(N)])),
        warns=("'customer'", "different value on 60 of 60 rows", "identifier", "data.drop"),
    ),
    "saved row index": Case(
        pd.DataFrame(base()).to_csv(lineterminator="\n"),
        warns=("'Unnamed: 0'", "row index", "data.drop"),
    ),
    "missing-value mark": Case(
        with_marks(), warns=("'x1'", "'?' on 3 row(s)", "data.na_values: ['?']"), numeric=1
    ),
    "missing-value mark declared": Case(with_marks(), {"na_values": ["?"]}, numeric=2),
    "mostly numbers, some text": Case(
        csv_text(base(x1=[*X1[:50].astype(str), *[f"t{i}" for i in range(10)]])),
        warns=("'x1'", "numbers on 83% of its rows", "data.na_values"),
    ),
    "decimal commas": Case(
        european(),
        {"sep": ";"},
        warns=("'x1'", "decimal comma", "data.decimal: ','", "'x2'"),
        columns_warned=2,
    ),
    "commas before three digits": Case(
        csv_text(base(x1=[f"{v:.3f}".replace(".", ",") for v in X1]), sep=";"),
        {"sep": ";"},
        warns=("'x1'", "data.thousands: ',' if it separates thousands", "data.decimal: ','"),
    ),
    "decimal commas declared": Case(european(), {"sep": ";", "decimal": ","}, numeric=2),
    "Excel sep= line, declared": Case(
        "sep=;\n" + european(), {"sep": ";", "skiprows": 1, "decimal": ","}, numeric=2
    ),
    "thousands separators": Case(
        csv_text(base(income=[f"{v:,}" for v in rng.integers(1000, 90000, N)])),
        warns=("'income'", "data.thousands: ','"),
        numeric=2,
    ),
    "thousands declared": Case(
        csv_text(base(income=[f"{v:,}" for v in rng.integers(1000, 90000, N)])),
        {"thousands": ","},
        numeric=3,
    ),
    "date column": Case(
        csv_text(base(day=pd.date_range("2024-01-01", periods=N).strftime("%d/%m/%Y"))),
        warns=("'day'", "dates", "data.drop"),
    ),
    "Parquet timestamps": Case(
        pd.DataFrame(base(at=pd.date_range("2024-01-01", periods=N, freq="h"))),
        name="t.parquet",
        warns=("'at'", "dates or times", "'2024-01-01 00:00:00'"),
    ),
    "labels with stray spaces": Case(
        csv_text({"x1": X1, "y": [f" {v}" if i % 7 == 0 else v for i, v in enumerate(LABELS)]}),
        warns=("data.target", "'y'", "differ only by surrounding spaces or case"),
    ),
    "categories that differ by case": Case(
        csv_text(base(colour=["Red", "red", "blue"] * 20)),
        warns=("'colour'", "categories that differ only", "'Red' and 'red'"),
    ),
    "constant column": Case(
        csv_text(base(site=["north"] * N)), warns=("'site'", "same value ('north')", "data.drop")
    ),
    "empty column": Case(
        csv_text(base(notes=[None] * N)), warns=("'notes'", "empty on every row", "left out")
    ),
    "repeated header name": Case(
        "x1,x1,y\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(X1, X2, LABELS, strict=True)),
        warns=("names 'x1' 2 times", "'x1.1'"),
        numeric=2,
    ),
    "Parquet with a missing-value mark": Case(
        pd.DataFrame(base(x1=[*X1[:-1].astype(str), "?"])),
        {"na_values": ["?"]},
        name="t.parquet",
        numeric=2,
    ),
}


def write(folder: Path, case: Case) -> Path:
    path = folder / case.name
    if isinstance(case.content, pd.DataFrame):
        case.content.to_parquet(path)
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_messy_table(tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture) -> None:
    case = CASES[name]
    keys = {"target": "y", **case.keys}
    config = DataConfig.model_validate({"dataset": "table", "path": str(write(tmp_path, case)),
                                        "val_fraction": 0.25, **keys})  # fmt: skip
    caplog.set_level(logging.WARNING, logger="regsweep")
    if case.error:
        with pytest.raises(DataError) as info:
            load_splits(config, seed=0)
        message = str(info.value)
        assert "\n" not in message and case.name in message, message
        for word in case.error:
            assert word in message, message
        assert not caplog.records  # bad input is the one line, no warnings before it
        return
    splits = load_splits(config, seed=0)
    assert np.isfinite(splits.train_x.numpy()).all() and len(splits.train_y) >= 40
    lines = [record.getMessage() for record in caplog.records]
    if case.warns:
        assert len(lines) == case.columns_warned, lines
        assert all(case.name in line for line in lines), lines
        for word in case.warns:
            assert word in "\n".join(lines), lines
    else:
        assert lines == [], lines
    if case.numeric is not None:
        scaled = splits.preprocessor.named_transformers_["numeric"]
        assert scaled.n_features_in_ == case.numeric
