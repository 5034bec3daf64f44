"""The one splitter: which rows train, which choose, which assess.

Every data set goes through these functions, so a seed means the same thing everywhere.

- :func:`holdout` keeps a share of rows aside, stratified by class for classification.
  A sweep holds out its validation rows with it (the rows that score trials and stop
  them early), and a file without a test split its test rows (with a fixed seed).
- :func:`repetition` draws repetition *r* of ``ablate`` and ``paths``: its *assessment*
  rows are fold ``r % folds`` of a stratified K-fold partition of the rows the sweep
  trained on, reshuffled every round of ``folds`` repetitions (so after each round every
  one of them has been assessed exactly once); the sweep's own validation rows, which
  chose the best config, are never assessed. The rows left are split again into *fit*
  rows (training) and *validation* rows (early stopping). A variant's effect is then
  measured on rows that chose nothing: not the config, not its epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from regsweep.errors import DataError

# Mixed into the study seed, so that repetitions never reuse a trial's or the sweep's draws.
_REPETITION_SALT = 0x5EED_4EB


@dataclass(frozen=True)
class Partition:
    """Row indices (sorted) into the training data, one set per role."""

    fit: np.ndarray  # trains the network; the preprocessor and target scale are fitted here
    val: np.ndarray  # scores each epoch: early stopping (and, in a sweep, the trial's value)
    assess: np.ndarray | None = None  # a repetition's rows that chose nothing

    def key(self) -> str:
        """A short digest of the three sets: equal keys, equal rows."""
        import hashlib

        digest = hashlib.sha256()
        for part in (self.fit, self.val, self.assess):
            if part is not None:
                digest.update(np.asarray(part, dtype=np.int64).tobytes() + b"|")
        return digest.hexdigest()[:12]


def holdout(y: np.ndarray, fraction: float, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row indices; stratified by class where every class has two rows."""
    n = len(y)
    n_held = max(1, round(n * fraction))
    if n - n_held < 2:
        raise DataError(f"data: {n} samples leave nothing to train on (allowed: more rows)")
    labels = _labels(y) if task == "classification" else None
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        # A class with one row cannot be in both parts; scikit-learn would refuse.
        if counts.min() >= 2 and n_held >= len(counts) and n - n_held >= len(counts):
            stratify = labels
    kept, held = train_test_split(
        np.arange(n), test_size=n_held, random_state=seed % 2**32, stratify=stratify
    )
    return np.sort(kept), np.sort(held)


def sweep_partition(y: np.ndarray, task: str, val_fraction: float, seed: int) -> Partition:
    """The sweep's split: training rows and the validation rows that score trials."""
    fit, val = holdout(y, val_fraction, task, seed)
    return Partition(fit, val)


def repetition_seed(study_seed: int, repetition: int) -> int:
    """Repetition ``r``'s own seed: its validation split, initial weights and batch order."""
    return _derived(study_seed, 1, repetition)


def repetition(
    y: np.ndarray,
    task: str,
    *,
    study_seed: int,
    index: int,
    folds: int,
    val_fraction: float,
) -> Partition:
    """Repetition ``index`` of the study with ``study_seed``: assessment fold (of the rows
    the sweep trained on), then fit and validation rows from all the others."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, but got {folds=}.")
    # The sweep's validation rows chose the best config: they may train or stop a
    # repetition's runs, but never assess them.
    eligible = sweep_partition(y, task, val_fraction, study_seed).fit
    if len(eligible) < 2 * folds:
        raise DataError(
            f"data: {len(eligible)} training rows are too few for {folds} assessment folds "
            f"(allowed: at least {2 * folds} rows, or fewer folds)"
        )
    round_, fold = divmod(index, folds)
    _, picked = _folds(y[eligible], task, folds, _derived(study_seed, 0, round_))[fold]
    assess = eligible[picked]
    rest = np.setdiff1d(np.arange(len(y)), assess)
    kept, held = holdout(y[rest], val_fraction, task, repetition_seed(study_seed, index))
    return Partition(np.sort(rest[kept]), np.sort(rest[held]), np.sort(assess))


def _folds(y: np.ndarray, task: str, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    labels = _labels(y) if task == "classification" else None
    if labels is not None and np.unique(labels, return_counts=True)[1].min() >= folds:
        stratified = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return list(stratified.split(np.zeros(len(y)), labels))
    # A class rarer than the folds cannot be in every fold: plain shuffled folds.
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def _labels(y: np.ndarray) -> np.ndarray:
    # As text, so that mixed label types (1 and "1") sort and compare.
    return pd.Series(y).astype(str).to_numpy()


def _derived(study_seed: int, kind: int, index: int) -> int:
    return int(
        np.random.SeedSequence([study_seed, _REPETITION_SALT, kind, index]).generate_state(1)[0]
    )
