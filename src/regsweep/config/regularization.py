"""The five regularizers of one trial, as plain numbers (no PyTorch, so it imports fast)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Regularization:
    """The five knobs a sweep searches. Zero (or False) turns a regularizer off."""

    dropout: float = 0.0
    weight_decay: float = 0.0
    l1: float = 0.0
    batch_norm: bool = False
    # Patience >= max_epochs means early stopping never triggers.
    patience: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Regularization:
        return cls(
            dropout=float(params.get("dropout", 0.0)),
            weight_decay=float(params.get("weight_decay", 0.0)),
            l1=float(params.get("l1", 0.0)),
            batch_norm=bool(params.get("batch_norm", False)),
            patience=int(params.get("patience", 1000)),
        )
