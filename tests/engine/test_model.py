"""The MLP and the regularizers acting on its weights, on real (small) torch modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regsweep.engine.model import (
    build_mlp,
    l1_penalty,
    make_optimizer,
    parameter_groups,
    weight_matrices,
    weight_sparsity,
)


def layers_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_each_regularizer_on_and_off(dropout: float, batch_norm: bool) -> None:
    model = build_mlp(20, [16, 8], 3, dropout=dropout, batch_norm=batch_norm, activation="gelu")
    linears = layers_of(model, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 16), (16, 8), (8, 3)]
    dropouts = layers_of(model, nn.Dropout)
    assert len(dropouts) == (2 if dropout > 0 else 0)
    assert all(m.p == dropout for m in dropouts)
    norms = layers_of(model, nn.BatchNorm1d)
    assert [m.num_features for m in norms] == ([16, 8] if batch_norm else [])
    # A hidden Linear before BatchNorm has no bias (the norm's shift replaces it); the head does.
    assert [m.bias is not None for m in linears] == [not batch_norm, not batch_norm, True]
    assert len(layers_of(model, nn.GELU)) == 2
    # The order per hidden layer: Linear -> [BatchNorm1d] -> activation -> [Dropout].
    block = [
        "Linear",
        *(["BatchNorm1d"] if batch_norm else []),
        "GELU",
        *(["Dropout"] if dropout > 0 else []),
    ]
    assert [type(m).__name__ for m in model] == [*block, *block, "Linear"]
    assert model(torch.randn(5, 20)).shape == (5, 3)


def test_seed_network_shape() -> None:
    model = build_mlp(784, [128, 64], 10, dropout=0.2)
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 + 128 * 64 + 64 + 650


def test_l1_penalty_matches_a_hand_computation() -> None:
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    b = torch.tensor([[-3.0, 0.25]])
    assert l1_penalty([a, b]).item() == pytest.approx(1 + 2 + 0.5 + 3 + 0.25)


def test_l1_penalty_covers_weight_matrices_only() -> None:
    model = build_mlp(4, [3], 2, batch_norm=True)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(-2.0)  # biases and BatchNorm parameters too: they must not count
    # Weight matrices: 4*3 + 3*2 = 18 entries of |-2|.
    assert l1_penalty(weight_matrices(model)).item() == pytest.approx(36.0)
    assert l1_penalty(weight_matrices(model)).requires_grad


def test_parameter_groups_decay_weight_matrices_only() -> None:
    model = build_mlp(6, [5, 4], 3, batch_norm=True)
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    decayed = {name for name, p in named.items() if any(p is q for q in decay["params"])}
    kept = {name for name, p in named.items() if any(p is q for q in no_decay["params"])}
    # Sequential indices: 0 Linear, 1 BN, 2 ReLU, 3 Linear, 4 BN, 5 ReLU, 6 Linear (head).
    assert decayed == {"0.weight", "3.weight", "6.weight"}
    assert kept == {"1.weight", "1.bias", "4.weight", "4.bias", "6.bias"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_moves_weights_but_not_biases_or_norms(name: str) -> None:
    model = build_mlp(6, [5], 3, batch_norm=True)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    optimizer = make_optimizer(model, name, lr=0.1, weight_decay=0.5, momentum=0.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no loss gradient: only weight decay can move a value
    optimizer.step()
    for name_, p in model.named_parameters():
        moved = not torch.allclose(p, torch.ones_like(p))
        assert moved == (name_ in {"0.weight", "3.weight"}), name_


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed: adam, adamw, sgd"):
        make_optimizer(build_mlp(2, [2], 2), "rmsprop", lr=0.1, weight_decay=0.0)


def test_weight_sparsity_counts_small_weight_entries_only() -> None:
    model = build_mlp(4, [2], 2)
    first, head = weight_matrices(model)
    with torch.no_grad():
        first.copy_(torch.tensor([[0.0, 5e-4, -9e-4, 0.5], [1.0, -1.0, 2e-3, 1e-3]]))
        head.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.bias.zero_()  # zero biases must not count as sparse weights
    # Below 1e-3: 0, 5e-4, -9e-4 in the first matrix and one 0 in the head: 4 of 12.
    assert weight_sparsity(model) == pytest.approx(4 / 12)
    assert weight_sparsity(model, threshold=10.0) == 1.0
