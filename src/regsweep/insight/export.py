"""Export the best trial as a model a user can load: weights, config and metrics.

regsweep export sweeps/mnist.yaml -o best/
model = regsweep.load_model("best/")   # eval mode, on the CPU
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import optuna
import torch
import yaml

from regsweep.config.loading import load_sweep
from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.data.splits import Splits, load_splits, resolve_device
from regsweep.engine.fit import Regularization, evaluate
from regsweep.engine.model import build_mlp
from regsweep.engine.recipe import BatchOrder, train_config, trial_seed
from regsweep.errors import ConfigError
from regsweep.insight.outputs import prepare_dir, write_atomic
from regsweep.insight.studyview import require_best, require_config
from regsweep.sweep.objective import BATCH_ORDER_ATTR
from regsweep.sweep.study import stored_config

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
# The fitted scikit-learn transform from raw inputs to the network's (joblib, i.e. pickle:
# load exports you trust only, as with any pickle).
PREPROCESSOR_FILE = "preprocessor.joblib"


def exported_config(config: SweepConfig, params: dict[str, Any]) -> SweepConfig:
    """``config`` with every regularizer fixed at ``params``: a sweep file for this model."""
    raw = config.model_dump(mode="json")
    raw["search_space"] = {name: params[name] for name in REGULARIZERS}
    return SweepConfig.model_validate(raw)


def export_best(
    study: optuna.Study, out_dir: Path, *, full: bool = False, seed: int | None = None
) -> dict[str, Any]:
    """Retrain the best config, evaluate it once on the test set, write ``out_dir``.

    With ``full`` the model trains on train + validation for the number of epochs the
    best trial needed (early stopping off, since no unseen validation data remains).

    Returns:
        The metrics written to ``metrics.json``.
    """
    config = require_config(study)
    best = require_best(study)
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    prepare_dir(out_dir, "-o")
    params = {name: getattr(Regularization.from_params(best.params), name) for name in REGULARIZERS}
    model_config = exported_config(config, params)
    # The best trial's own seed and batch order (a packed trial's came from its pack):
    # without --full or --seed, the retrain replays the trial.
    order = None
    if seed is None:
        seed = int(best.user_attrs.get("seed", trial_seed(config.study.seed, best.number)))
        order = None if full else BatchOrder.from_attr(best.user_attrs.get(BATCH_ORDER_ATTR))
    train_cfg, fit_splits, reg = config, splits, Regularization.from_params(params)
    if full:
        epochs = int(best.user_attrs.get("best_epoch") or config.train.max_epochs)
        train_cfg = config.model_copy(
            update={"train": config.train.model_copy(update={"max_epochs": epochs})}
        )
        reg = dataclasses.replace(reg, patience=epochs)
        fit_splits = _with_validation_in_train(splits)
    # With --full the validation data is in the training data: an epoch "best" on it is
    # not better on unseen data, so the model is the last epoch's, as planned above.
    model, result = train_config(
        train_cfg, fit_splits, reg, seed, order=order, restore_best=not full
    )
    model.eval()
    val = _stage(splits.scores("val", *evaluate(model, splits.val_x, splits.val_y)))
    # Without a test split the model is still worth having: validation metrics only.
    test: dict[str, Any] | None = None
    if splits.test_x is not None and splits.test_y is not None:
        test_scores = splits.scores("test", *evaluate(model, splits.test_x, splits.test_y))
        test = {**_stage(test_scores), "n": len(splits.test_y)}

    metrics: dict[str, Any] = {
        "study": study.study_name,
        "trial": best.number,
        "trial_value": best.value,
        "params": params,
        "seed": seed,
        "batch_order": (order or BatchOrder(seed)).as_attr(),
        "trained_on": "train+validation" if full else "train",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "weights_from_epoch": result.epochs_run if full else result.best_epoch,
        "task": splits.task,
        "validation": {
            **val,
            "n": len(splits.val_y),
            **({"note": "seen in training (--full): not an unbiased estimate"} if full else {}),
        },
        "test": test,
        "data": {
            "dataset": config.data.dataset,
            "fingerprint": splits.fingerprint(),
            "split_seed": config.study.seed,
            "n_train": len(splits.train_y),
        },
        "model": {
            "n_inputs": splits.n_features,
            "n_classes": splits.n_classes,
            "task": splits.task,
            "classes": list(splits.classes) if splits.classes is not None else None,
            "target_mean": splits.target_mean,
            "target_scale": splits.target_scale,
        },
        "inputs": (
            f"raw inputs through {PREPROCESSOR_FILE} (regsweep.load_predictor), or as prepared "
            "by regsweep.data.splits.load_splits(config.data, config.study.seed)"
        ),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(out_dir / MODEL_FILE, lambda path: torch.save(state, path))
    write_atomic(out_dir / PREPROCESSOR_FILE, lambda path: joblib.dump(splits.preprocessor, path))
    header = (
        f"# Exported by regsweep from study {study.study_name!r}, trial {best.number}.\n"
        "# The best params are fixed values: `regsweep validate` accepts this file, and\n"
        "# regsweep.load_model() rebuilds the network from it.\n"
    )
    text = header + yaml.safe_dump(stored_config(model_config), sort_keys=False)
    write_atomic(out_dir / CONFIG_FILE, lambda path: path.write_text(text, encoding="utf-8"))
    write_atomic(
        out_dir / METRICS_FILE,
        lambda path: path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8"),
    )
    return metrics


def _stage(scores: dict[str, float]) -> dict[str, float]:
    """``{"val_loss": ...}`` as ``{"loss": ...}``: metrics.json nests by split."""
    return {name.split("_", 1)[1]: value for name, value in scores.items()}


def _with_validation_in_train(splits: Splits) -> Splits:
    return dataclasses.replace(
        splits,
        train_x=torch.cat([splits.train_x, splits.val_x]),
        train_y=torch.cat([splits.train_y, splits.val_y]),
    )


def _versions() -> dict[str, str]:
    from regsweep import __version__

    return {
        "regsweep": __version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
    }


def load_model(directory: str | os.PathLike[str], device: str = "cpu") -> torch.nn.Module:
    """The exported model, weights loaded, in eval mode, on ``device``.

    It expects inputs prepared as in training:
    ``regsweep.data.splits.load_splits(config.data, config.study.seed)``; for raw inputs
    use :func:`regsweep.load_predictor`.
    """
    folder = Path(directory)
    for name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder}: not a regsweep export ({name} is missing)")
    config = load_sweep(folder / CONFIG_FILE)
    shape = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))["model"]
    reg = Regularization.from_params(config.search_space.fixed_params())
    model = build_mlp(
        int(shape["n_inputs"]),
        config.model.hidden,
        int(shape["n_classes"]),
        dropout=reg.dropout,
        batch_norm=reg.batch_norm,
        activation=config.model.activation,
    )
    state = torch.load(folder / MODEL_FILE, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
