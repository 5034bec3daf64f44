"""Repetitions: fresh fit, validation and assessment rows, and a preprocessor that only ever
sees the rows that train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from regsweep.config.schema import DataConfig
from regsweep.data.idx import read_idx
from regsweep.data.resample import repetition, sweep_partition
from regsweep.data.splits import load_repetition, load_splits
from regsweep.errors import DataError
from tests.conftest import IdxData
from tests.data.tabular import BREAST_CANCER, DIABETES, mixed_table


def labels(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])


def test_a_repetition_splits_every_row_into_exactly_one_role() -> None:
    y = labels()
    part = repetition(y, "classification", study_seed=0, index=3, folds=5, val_fraction=0.2)
    roles = np.concatenate([part.fit, part.val, part.assess])  # type: ignore[list-item]
    assert sorted(roles.tolist()) == list(range(len(y)))  # disjoint, and all of them
    # A fifth of the 160 rows the sweep trained on are assessed; a fifth of the rest
    # (168) stop early.
    assert len(part.assess) == 32 and len(part.val) == 34  # type: ignore[arg-type]
    # The sweep's validation rows chose the config: they are never assessed.
    chose = sweep_partition(y, "classification", 0.2, 0).val
    assert not set(chose) & set(part.assess)  # type: ignore[arg-type]
    # Stratified: each class keeps its share in the assessment rows (to one row).
    for cls in "abc":
        expected = (y == cls).mean() * 32
        assert abs((y[part.assess] == cls).sum() - expected) <= 1.5


def test_each_round_of_folds_assesses_every_row_once_and_rounds_reshuffle() -> None:
    y = labels()
    rounds = [
        [repetition(y, "classification", study_seed=4, index=r * 5 + f, folds=5,
                    val_fraction=0.2).assess for f in range(5)]
        for r in range(2)
    ]  # fmt: skip
    trained = sweep_partition(y, "classification", 0.2, 4).fit  # what can be assessed
    for folds in rounds:
        assert sorted(np.concatenate(folds).tolist()) == trained.tolist()
    assert not np.array_equal(rounds[0][0], rounds[1][0])
    # Deterministic from (study seed, index); another study seed draws other rows.
    again = repetition(y, "classification", study_seed=4, index=0, folds=5, val_fraction=0.2)
    assert np.array_equal(again.assess, rounds[0][0])  # type: ignore[arg-type]
    other = repetition(y, "classification", study_seed=5, index=0, folds=5, val_fraction=0.2)
    assert not np.array_equal(other.assess, rounds[0][0])  # type: ignore[arg-type]
    # The validation rows differ between repetitions of one round, too.
    a, b = (
        repetition(y, "classification", study_seed=4, index=i, folds=5, val_fraction=0.2)
        for i in (0, 5)
    )
    assert a.key() != b.key()


def test_too_few_rows_for_the_folds_is_one_line() -> None:
    with pytest.raises(DataError, match="too few for 5 assessment folds"):
        repetition(labels(8), "classification", study_seed=0, index=0, folds=5, val_fraction=0.2)


def test_no_repetition_preprocessor_sees_its_assessment_or_test_rows(tmp_path: Path) -> None:
    frame = mixed_table(200)
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.to_csv(train_file, index=False)
    frame.head(40).to_csv(test_file, index=False)

    def config(path: Path, test: Path) -> DataConfig:
        return DataConfig.model_validate(
            {"dataset": "table", "path": str(path), "test_path": str(test),
             "target": "diagnosis", "val_fraction": 0.2, "scaler": "standard"}
        )  # fmt: skip

    for index in (0, 7):
        base = load_repetition(config(train_file, test_file), 11, index)
        # The rows depend on the labels, the seed and the index only: make this
        # repetition's assessment rows and every test row absurd, and nothing fitted moves.
        part = repetition(
            frame["diagnosis"].to_numpy(), "classification", study_seed=11, index=index,
            folds=5, val_fraction=0.2,
        )  # fmt: skip
        shifted = frame.copy()
        shifted.loc[part.assess, "mean radius"] = 1e6
        shifted.loc[part.assess, "size"] = "enormous"
        odd_train, odd_test = tmp_path / f"odd{index}.csv", tmp_path / f"oddtest{index}.csv"
        shifted.to_csv(odd_train, index=False)
        frame.head(40).assign(**{"mean radius": -1e6, "size": "tiny"}).to_csv(odd_test, index=False)
        odd = load_repetition(config(odd_train, odd_test), 11, index)
        assert torch.equal(odd.train_x, base.train_x) and torch.equal(odd.val_x, base.val_x)
        scaler = odd.preprocessor.named_transformers_["numeric"].named_steps["scale"]
        assert np.isclose(scaler.mean_[0], frame.loc[part.fit, "mean radius"].mean())
        onehot = odd.preprocessor.named_transformers_["categorical"].named_steps["onehot"]
        assert not {"enormous", "tiny"} & set(onehot.categories_[0])
        assert not torch.equal(odd.assess_x, base.assess_x)  # the changed rows did arrive
        assert len(odd.assess_y) == len(part.assess)  # type: ignore[arg-type]


def test_a_regression_targets_scale_is_refitted_on_each_repetitions_fit_rows() -> None:
    config = DataConfig(dataset="table", path=str(DIABETES), target="progression", val_fraction=0.2)
    y = pd.read_csv(DIABETES)["progression"].to_numpy(dtype=float)
    means = set()
    for index in (0, 1):
        splits = load_repetition(config, 0, index)
        part = repetition(y, "regression", study_seed=0, index=index, folds=5, val_fraction=0.2)
        assert splits.target_mean == pytest.approx(y[part.fit].mean())
        assert splits.target_scale == pytest.approx(y[part.fit].std())
        means.add(round(splits.target_mean, 6))
        assert splits.scores("assess", 0.5, float("nan"))["assess_rmse"] > 0
    assert len(means) == 2


def test_images_take_the_same_path(tiny_idx: IdxData) -> None:
    config = DataConfig(
        dataset="idx",
        train_images=str(tiny_idx.train_images),
        train_labels=str(tiny_idx.train_labels),
        test_images=str(tiny_idx.test_images),
        test_labels=str(tiny_idx.test_labels),
        val_fraction=0.25,
    )
    images = read_idx(tiny_idx.train_images).reshape(600, -1) / 255.0
    y = read_idx(tiny_idx.train_labels).astype(np.int64)
    splits = load_repetition(config, 2, 3)
    part = repetition(y, "classification", study_seed=2, index=3, folds=5, val_fraction=0.25)
    standardizer = splits.preprocessor.named_steps["standardize"]
    assert standardizer.mean_ == pytest.approx(images[part.fit].mean(), rel=1e-5)
    assert splits.test_x is not None and len(splits.test_x) == 200
    assert splits.n_classes == 10 and splits.classes == tuple(range(10))
    # The sweep's own split goes through the same splitter: stratified validation rows.
    sweep = load_splits(config, 2)
    part = sweep_partition(y, "classification", 0.25, 2)
    assert sweep.assess_x is None and len(sweep.val_y) == len(part.val) == 150
    assert torch.equal(sweep.val_y, torch.from_numpy(y[part.val]))


def test_the_sweep_split_of_a_table_is_unchanged_by_the_one_pipeline() -> None:
    # The validation rows a table's studies were tuned on before (scikit-learn's
    # train_test_split, stratified, random_state = seed) are the same rows now.
    from sklearn.model_selection import train_test_split

    y = pd.read_csv(BREAST_CANCER)["diagnosis"].to_numpy()
    _, held = train_test_split(np.arange(len(y)), test_size=round(len(y) * 0.2),
                               random_state=0, stratify=y)  # fmt: skip
    assert np.array_equal(sweep_partition(y, "classification", 0.2, 0).val, np.sort(held))
