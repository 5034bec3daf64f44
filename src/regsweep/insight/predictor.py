"""An export as a scikit-learn-style predictor: raw inputs in, labels or values out.

predictor = regsweep.load_predictor("best/")
predictor.predict(rows)          # a DataFrame of raw rows (tables), an array (arrays, images)
predictor.predict_proba(rows)    # classification: one column per class, in classes_ order
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch

from regsweep.data.preprocess import transform
from regsweep.errors import ConfigError
from regsweep.insight.export import METRICS_FILE, PREPROCESSOR_FILE, load_model

# Rows per forward pass: bounds memory on large inputs.
_BATCH = 8192


class Predictor:
    """The exported network behind the preprocessor fitted on its training split."""

    def __init__(self, model: torch.nn.Module, preprocessor: Any, shape: dict[str, Any]) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.task: str = shape.get("task", "classification")
        classes = shape.get("classes")
        if classes is None and self.task == "classification":
            classes = list(range(int(shape["n_classes"])))
        self.classes_ = np.asarray(classes) if classes is not None else None
        self.target_mean = float(shape.get("target_mean", 0.0))
        self.target_scale = float(shape.get("target_scale", 1.0))

    def _outputs(self, x: Any) -> torch.Tensor:
        inputs = torch.from_numpy(transform(self.preprocessor, x))
        with torch.inference_mode():
            parts = [self.model(inputs[i : i + _BATCH]) for i in range(0, len(inputs), _BATCH)]
        return torch.cat(parts) if parts else torch.empty(0, 1)

    def predict(self, x: Any) -> np.ndarray:
        """Class labels (as in the training data) or, for regression, values in its units."""
        outputs = self._outputs(x)
        if self.task == "regression":
            values = outputs.squeeze(-1).double().numpy()
            return values * self.target_scale + self.target_mean
        assert self.classes_ is not None
        return self.classes_[outputs.argmax(dim=1).numpy()]

    @property
    def predict_proba(self) -> Any:
        # A property, so that hasattr(regressor, "predict_proba") is False, as in scikit-learn.
        if self.task == "regression":
            raise AttributeError("a regression predictor has no predict_proba (use predict)")
        return self._predict_proba

    def _predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``classes_`` order."""
        return torch.softmax(self._outputs(x), dim=1).double().numpy()


def load_predictor(directory: str | os.PathLike[str]) -> Predictor:
    """The export in ``directory`` as a predictor on raw inputs, on the CPU."""
    folder = Path(directory)
    model = load_model(folder)
    if not (folder / PREPROCESSOR_FILE).is_file():
        raise ConfigError(
            f"{folder}: {PREPROCESSOR_FILE} is missing (exported by an older regsweep? "
            "export again, or use regsweep.load_model with prepared inputs)"
        )
    shape = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))["model"]
    return Predictor(model, joblib.load(folder / PREPROCESSOR_FILE), shape)
