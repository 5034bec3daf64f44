"""The reference a tabular verdict stands beside: gradient boosting on the same rows.

"Should I use an MLP here at all?" For a table, ``ablate`` also fits scikit-learn's
``HistGradientBoostingClassifier`` / ``Regressor`` with its defaults on each repetition's
fit rows (the same inputs the network gets, after the same preprocessor) and scores it on
the same assessment and test rows, in the same loss: one line beside the verdict,
labelled as a reference. It tests no regularizer and takes no part in the decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from regsweep.config.schema import SweepConfig
from regsweep.insight.retrain import repetition_splits

REFERENCE = "reference"
STAGES = ("assess", "test")


def applies(config: SweepConfig) -> bool:
    """Gradient boosting is the strong default for tables; images and arrays get none."""
    return config.data.dataset == "table"


def reference_run(config_json: str, repetition: int) -> dict[str, Any]:
    """Fit gradient boosting on repetition ``repetition``'s fit rows and score it."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import log_loss

    config = SweepConfig.model_validate_json(config_json)
    splits = repetition_splits(config, repetition)
    x, y = splits.train_x.cpu().numpy(), splits.train_y.cpu().numpy()
    regression = splits.task == "regression"
    model: Any = (
        HistGradientBoostingRegressor(random_state=0)
        if regression
        else HistGradientBoostingClassifier(random_state=0)
    )
    model.fit(x, y)
    run: dict[str, Any] = {"repetition": repetition, "model": type(model).__name__}
    for stage in STAGES:
        found = splits.stage(stage)
        if found is None:
            continue
        inputs, targets = found[0].cpu().numpy(), found[1].cpu().numpy()
        if regression:
            # The MSE on the standardized target: the network's loss, in the same units.
            loss = float(np.mean((model.predict(inputs) - targets) ** 2))
            run.update(splits.scores(stage, loss, float("nan")))
        else:
            proba = model.predict_proba(inputs)
            full = np.zeros((len(inputs), splits.n_classes))
            full[:, model.classes_] = proba  # classes the fit rows lacked: probability 0
            loss = float(log_loss(targets, full, labels=list(range(splits.n_classes))))
            accuracy = float(np.mean(full.argmax(axis=1) == targets))
            run.update(splits.scores(stage, loss, accuracy))
    return run
