"""K MLPs trained as one: stacked weights, batched matmuls and a per-member optimizer.

Nothing here knows about Optuna. Each member is a copy of a solo ``build_mlp`` network
with its own dropout rate, weight decay, L1 strength and batch-norm flag; all members see
the same mini-batch. The arithmetic is that of the solo engine (``train.py``) with
``torch.optim`` (Adam, AdamW, SGD), done once for the whole stack, so a member trains as
its solo twin does, up to float rounding.

Layout: hidden layer ``l`` has ``w{l}`` (weights, stored transposed as ``in x out``),
``b{l}`` (the Linear bias, or BatchNorm's beta for a batch-norm member: the shift either
way), ``g{l}`` (BatchNorm's gamma; unused by members without batch norm) and the running
statistics ``rm{l}``, ``rv{l}``. The first layer's weights are ``in x K x out``, so that
one plain matmul with the shared input batch serves every member; all other tensors are
``K x ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from regsweep.config.regularization import Regularization
from regsweep.engine.model import ACTIVATIONS

# torch.nn.BatchNorm1d's defaults, which the solo network uses.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
# torch.optim.Adam / AdamW defaults, which make_optimizer uses.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # adam, adamw, sgd
    lr: float
    momentum: float = 0.9


def member_axis(name: str) -> int:
    return 1 if name == "w0" else 0


class PackedMLP:
    """The stacked parameters, optimizer state and per-member knobs of a pack."""

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        n_classes: int,
        *,
        activation: str,
        optimizer: OptimizerSpec,
        device: torch.device,
    ) -> None:
        if optimizer.name not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer.name!r} (allowed: adam, adamw, sgd)")
        self.sizes = [n_inputs, *hidden, n_classes]
        self.n_hidden = len(hidden)
        self.activation = ACTIVATIONS[activation]()
        self.opt = optimizer
        self.device = device
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes, self.sizes[1:], strict=False)):
            shape = (fan_in, 0, fan_out) if layer == 0 else (0, fan_in, fan_out)
            self.params[f"w{layer}"] = torch.empty(shape, device=device)
            self.params[f"b{layer}"] = torch.empty((0, 1, fan_out), device=device)
            if layer < self.n_hidden:
                self.params[f"g{layer}"] = torch.empty((0, 1, fan_out), device=device)
                self.buffers[f"rm{layer}"] = torch.empty((0, 1, fan_out), device=device)
                self.buffers[f"rv{layer}"] = torch.empty((0, 1, fan_out), device=device)
        # Optimizer state: Adam's two moments or SGD's momentum buffer, per parameter.
        slots = ("m", "v") if optimizer.name != "sgd" else ("m",)
        self.state = {
            f"{s}:{n}": torch.zeros_like(p) for n, p in self.params.items() for s in slots
        }
        self.step_counts: list[int] = []  # optimizer steps taken, per member
        self.scratch: dict[str, torch.Tensor] = {}
        self.regs: list[Regularization] = []
        self.generators: list[torch.Generator] = []

    @property
    def size(self) -> int:
        return len(self.regs)

    # ----------------------------------------------------------------- membership

    def add(self, model: nn.Sequential, reg: Regularization, generator: torch.Generator) -> None:
        """Append a member whose initial weights are those of the solo network ``model``.

        ``generator`` draws the member's dropout masks; seeded like the solo run's global
        generator, it makes the member's masks those of its solo twin.
        """
        linears = [m for m in model if isinstance(m, nn.Linear)]
        norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
        if len(linears) != len(self.sizes) - 1 or (norms and len(norms) != self.n_hidden):
            raise ValueError("the model does not have the pack's layer sizes")
        new: dict[str, torch.Tensor] = {}
        new_buffers: dict[str, torch.Tensor] = {}
        for layer, linear in enumerate(linears):
            weight = linear.weight.detach().T.to(self.device)
            new[f"w{layer}"] = weight.unsqueeze(1) if layer == 0 else weight.unsqueeze(0)
            norm = norms[layer] if norms and layer < self.n_hidden else None
            if norm is not None:
                assert norm.running_mean is not None and norm.running_var is not None
                shift, scale = norm.bias.detach(), norm.weight.detach()
                mean, var = norm.running_mean, norm.running_var
            else:
                assert linear.bias is not None  # only a Linear followed by BatchNorm has none
                shift = linear.bias.detach()
                scale, mean, var = (
                    torch.ones_like(shift),
                    torch.zeros_like(shift),
                    torch.ones_like(shift),
                )
            new[f"b{layer}"] = shift.view(1, 1, -1).to(self.device)
            if layer < self.n_hidden:
                new[f"g{layer}"] = scale.view(1, 1, -1).to(self.device)
                new_buffers[f"rm{layer}"] = mean.view(1, 1, -1).to(self.device).float()
                new_buffers[f"rv{layer}"] = var.view(1, 1, -1).to(self.device).float()
        for name, value in new.items():
            axis = member_axis(name)
            self.params[name] = torch.cat([self.params[name], value], dim=axis).contiguous()
            for key in self.state:
                if key.endswith(f":{name}"):
                    self.state[key] = torch.cat([self.state[key], torch.zeros_like(value)], axis)
        for name, value in new_buffers.items():
            self.buffers[name] = torch.cat([self.buffers[name], value])
        self.step_counts.append(0)
        self.regs.append(reg)
        self.generators.append(generator)
        self._refresh_knobs()

    def keep(self, members: Sequence[int]) -> None:
        """Compact the pack to ``members`` (positions), in that order: the rest stop costing."""
        index = torch.tensor(list(members), dtype=torch.long, device=self.device)
        for name in self.params:
            self.params[name] = self.params[name].index_select(member_axis(name), index)
        for key in self.state:
            self.state[key] = self.state[key].index_select(member_axis(key.split(":")[1]), index)
        for name in self.buffers:
            self.buffers[name] = self.buffers[name].index_select(0, index)
        self.step_counts = [self.step_counts[i] for i in members]
        self.regs = [self.regs[i] for i in members]
        self.generators = [self.generators[i] for i in members]
        self._refresh_knobs()

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """A copy of one member's parameters and running statistics."""
        tensors = {**self.params, **self.buffers}
        return {n: t.detach().select(member_axis(n), member).clone() for n, t in tensors.items()}

    def weight_matrices(self, state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [state[f"w{layer}"] for layer in range(len(self.sizes) - 1)]

    def _refresh_knobs(self) -> None:
        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=self.device)

        self.wd = column([r.weight_decay for r in self.regs])
        self.l1 = column([r.l1 for r in self.regs])
        self.any_l1 = any(r.l1 > 0 for r in self.regs)
        self.any_decay = any(r.weight_decay > 0 for r in self.regs)
        flags = [r.batch_norm for r in self.regs]
        self.bn_mask = torch.tensor(flags, dtype=torch.bool, device=self.device).view(-1, 1, 1)
        self.all_bn, self.any_bn = all(flags), any(flags)
        self.dropout = [r.dropout for r in self.regs]
        self.any_dropout = any(p > 0 for p in self.dropout)

    def _per_member(self, values: torch.Tensor, name: str) -> torch.Tensor:
        """``values`` (one per member) shaped to broadcast against parameter ``name``."""
        shape = [1] * self.params[name].dim()
        shape[member_axis(name)] = -1
        return values.view(shape)

    # ----------------------------------------------------------------- forward

    def forward(
        self, x: torch.Tensor, params: dict[str, torch.Tensor], *, train: bool
    ) -> torch.Tensor:
        """Logits ``K x B x classes`` for the shared input batch ``x`` (``B x features``)."""
        k, batch = self.size, len(x)
        w0 = params["w0"]
        h = x
        for layer in range(self.n_hidden):
            if layer == 0:
                # Contiguous per member from here: strided elementwise ops cost more than a copy.
                z = (
                    (x @ w0.reshape(w0.shape[0], -1))
                    .view(batch, k, -1)
                    .transpose(0, 1)
                    .contiguous()
                )
            else:
                z = torch.bmm(h, params[f"w{layer}"])
            z = self._shift(z, layer, params, train=train)
            h = self.activation(z)
            if train and self.any_dropout:
                h = h * self._dropout_masks(h.shape)
        last = len(self.sizes) - 2
        return torch.baddbmm(params[f"b{last}"], h, params[f"w{last}"])

    def _shift(
        self, z: torch.Tensor, layer: int, params: dict[str, torch.Tensor], *, train: bool
    ) -> torch.Tensor:
        """BatchNorm for the members that have it, the Linear bias for those that do not."""
        if self.any_bn:
            mean_key, var_key = f"rm{layer}", f"rv{layer}"
            if train:
                var, mean = torch.var_mean(z, dim=1, unbiased=False, keepdim=True)
                with torch.no_grad():
                    n = z.shape[1]
                    self.buffers[mean_key].lerp_(mean.detach(), BN_MOMENTUM)
                    self.buffers[var_key].lerp_(var.detach() * (n / max(1, n - 1)), BN_MOMENTUM)
            else:
                mean, var = self.buffers[mean_key], self.buffers[var_key]
            normed = (z - mean) * torch.rsqrt(var + BN_EPS) * params[f"g{layer}"]
            z = normed if self.all_bn else torch.where(self.bn_mask, normed, z)
        return z + params[f"b{layer}"]

    def _dropout_masks(self, shape: torch.Size) -> torch.Tensor:
        # One draw per member from its own generator, shaped as in the solo network, in
        # the order the solo network draws them: that makes the masks equal.
        masks = torch.ones(shape, device=self.device)
        for member, rate in enumerate(self.dropout):
            if rate > 0:
                masks[member].bernoulli_(1 - rate, generator=self.generators[member])
                masks[member].div_(1 - rate)
        return masks

    # ----------------------------------------------------------------- training

    def train_epoch(
        self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """One pass over ``order``; returns each member's mean mini-batch loss (on device)."""
        loss_sum = torch.zeros(self.size, device=x.device)
        seen = 0
        names = list(self.params)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue  # as in the solo engine: BatchNorm cannot normalize a batch of one
            params = {n: p.detach().requires_grad_() for n, p in self.params.items()}
            logits = self.forward(x[index], params, train=True)
            per_sample = _per_sample_loss(logits, y[index].repeat(self.size))
            losses = per_sample.view(self.size, -1).mean(1)
            objective = losses.sum()  # members are independent: each gets its own gradient
            if self.any_l1:
                objective = objective + (self.l1 * self._l1_norms(params)).sum()
            # Gamma is unused while no member has batch norm: it then keeps its value.
            grads = torch.autograd.grad(objective, [params[n] for n in names], allow_unused=True)
            self._step({n: g for n, g in zip(names, grads, strict=True) if g is not None})
            loss_sum += losses.detach() * len(index)
            seen += len(index)
        return loss_sum / max(1, seen)

    def _l1_norms(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        norms = [params["w0"].abs().sum(dim=(0, 2))]
        norms += [
            params[f"w{layer}"].abs().sum(dim=(1, 2)) for layer in range(1, len(self.sizes) - 1)
        ]
        return torch.stack(norms).sum(0)

    @torch.no_grad()
    def _step(self, grads: dict[str, torch.Tensor]) -> None:
        """One optimizer step for every member, as ``torch.optim`` does it for one.

        Weight decay acts on the weight matrices only (``make_optimizer``'s groups): added
        to the gradient for Adam and SGD (coupled L2), applied to the weights for AdamW.
        """
        self.step_counts = [t + 1 for t in self.step_counts]
        lr, opt = self.opt.lr, self.opt.name
        beta1, beta2 = ADAM_BETAS
        # Members that joined together share their step count: then the bias corrections
        # are plain numbers and the update is torch.optim.Adam's, operation for operation.
        same_step = len(set(self.step_counts)) == 1
        if opt != "sgd" and same_step:
            t = self.step_counts[0]
            step_size, bc2_sqrt = lr / (1 - beta1**t), (1 - beta2**t) ** 0.5
        elif opt != "sgd":
            steps = torch.tensor(self.step_counts, dtype=torch.float64)
            inv_step = ((1 - beta1**steps) / lr).float().to(self.device)
            inv_bc2_sqrt = (1 - beta2**steps).rsqrt().float().to(self.device)
        for name, grad in grads.items():
            param = self.params[name]
            if name.startswith("w") and self.any_decay:
                if opt == "adamw":
                    param.mul_(self._per_member(1 - lr * self.wd, name))
                else:
                    # In place: autograd made this gradient for this step alone (mm backward).
                    grad.addcmul_(param, self._per_member(self.wd, name))
            m = self.state[f"m:{name}"]
            if opt == "sgd":
                m.mul_(self.opt.momentum).add_(grad)  # the first step's buffer is the gradient
                param.add_(m, alpha=-lr)
                continue
            v = self.state[f"v:{name}"]
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            # The denominator goes to a buffer kept between steps: fresh multi-megabyte
            # tensors every step cost more in page faults than the arithmetic itself.
            denom = self._scratch(name)
            torch.sqrt(v, out=denom)
            if same_step:
                denom.div_(bc2_sqrt).add_(ADAM_EPS)
                param.addcdiv_(m, denom, value=-step_size)
            else:
                denom.mul_(self._per_member(inv_bc2_sqrt, name)).add_(ADAM_EPS)
                param.addcdiv_(m, denom.mul_(self._per_member(inv_step, name)), value=-1)

    def _scratch(self, name: str) -> torch.Tensor:
        buffer = self.scratch.get(name)
        if buffer is None or buffer.shape != self.params[name].shape:
            buffer = self.scratch[name] = torch.empty_like(self.params[name])
        return buffer

    @torch.inference_mode()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean loss and accuracy over ``x``, in eval mode.

        As in the solo engine: for float targets (regression) the loss is the MSE and the
        accuracy NaN.
        """
        loss_sum = torch.zeros(self.size, device=x.device)
        correct = torch.zeros(self.size, device=x.device)
        for start in range(0, len(x), batch):
            logits = self.forward(x[start : start + batch], self.params, train=False)
            target = y[start : start + batch]
            per_sample = _per_sample_loss(logits, target.repeat(self.size))
            loss_sum += per_sample.view(self.size, -1).sum(1)
            if not y.is_floating_point():
                correct += (logits.argmax(dim=2) == target).sum(1)
        n = max(1, len(x))
        if y.is_floating_point():
            return loss_sum / n, torch.full_like(correct, float("nan"))
        return loss_sum / n, correct / n


def _per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``K x B x out`` outputs against the targets repeated per member, one loss each.

    Cross-entropy for class indices; squared error for float targets (one output), as the
    solo engine's ``batch_loss``.
    """
    if target.is_floating_point():
        return F.mse_loss(logits.reshape(-1), target, reduction="none")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, reduction="none")
