"""The MLP and the regularizers that act on its weights.

Nothing here knows about Optuna: a model is built from plain numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}

# |w| below this counts as zero for weight_sparsity (the visible effect of L1).
SPARSITY_THRESHOLD = 1e-3


def build_mlp(
    n_inputs: int,
    hidden: Sequence[int],
    n_classes: int,
    *,
    dropout: float = 0.0,
    batch_norm: bool = False,
    activation: str = "relu",
) -> nn.Sequential:
    """Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden layer, then a Linear head.

    The seed experiment's network is ``build_mlp(784, [128, 64], 10, dropout=0.2)``.
    """
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden:
        # A bias before BatchNorm is cancelled by its mean subtraction: leave it out.
        layers.append(nn.Linear(width, size, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The Linear weight matrices: what weight decay, L1 and sparsity are about."""
    return [module.weight for module in model.modules() if isinstance(module, nn.Linear)]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay the weight matrices only; biases and BatchNorm parameters are never decayed."""
    decayed = {id(p) for p in weight_matrices(model)}
    decay = [p for p in model.parameters() if id(p) in decayed]
    no_decay = [p for p in model.parameters() if id(p) not in decayed]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def l1_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum(|W|)`` over the given weight matrices (multiplied by the L1 strength by the caller)."""
    return torch.stack([w.abs().sum() for w in weights]).sum()


def weight_sparsity(model: nn.Module, threshold: float = SPARSITY_THRESHOLD) -> float:
    """Fraction of weight-matrix entries with ``|w| < threshold``."""
    with torch.no_grad():
        weights = weight_matrices(model)
        small = sum(int((w.abs() < threshold).sum()) for w in weights)
        total = sum(w.numel() for w in weights)
    return small / total if total else 0.0


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r} (allowed: adam, adamw, sgd)")


def import_optimizer_runtime() -> None:
    """Import now what the first ``torch.optim`` optimizer would: ``torch._dynamo``.

    It costs 1 to 2 s of CPU (sympy, the compiler's front end), and it cannot be avoided
    while trials use ``torch.optim``: every optimizer's ``step`` calls
    ``torch._dynamo.graph_break()`` (``torch/optim/optimizer.py``), and the optimizer's
    constructor imports it. A worker of solo trials imports it with its other imports, so
    that it is not billed to its first trial. Packed trials never import it: the packed
    engine does its own updates.
    """
    import torch._dynamo  # noqa: F401
