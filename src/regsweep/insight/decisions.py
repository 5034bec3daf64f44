"""From effects to decisions: helps, hurts, negligible or undecided.

Pure statistics, checked against hand computations and, for its error rates, by
simulation (``tests/insight/test_decisions.py``).

One regularizer's effect (``insight.effects``) is decided by its interval:

- *helps* or *hurts*: the interval excludes 0 (which way follows the metric's direction);
- *negligible*: the interval lies inside ``±min_effect``, the smallest effect that
  matters. That is an equivalence test (two one-sided tests, TOST, each at half the
  interval's level); an interval that excludes 0 and still lies inside is a real but
  negligible effect, and is reported as negligible *and* real;
- *undecided*: neither. :func:`cap_to_decide` says roughly how many repetitions would
  decide it at the spread seen, or that none would: the correction for shared
  training rows keeps every interval wider than ``±t·sd·sqrt(n_assess/n_train)``.

A verdict tests several regularizers at once, so :func:`holm` adjusts for the number of
tests with Holm's step-down procedure (Holm 1979) applied to the intervals: all effects
are judged at level α/k; those decided leave the family and the rest are judged again at
α/(k - decided), until a step decides nothing. An effect's interval is reported at the
level that decided it.

``ablate`` adds repetitions until every effect is decided, looking after each round. To
stay valid under that optional stopping, the looks share the error rate through an
alpha-spending plan fixed in advance (:class:`LookPlan`: Lan and DeMets' Pocock-type
spending function over the fraction of ``--max-repeats`` done), and a decision taken at
any look is kept. Since the union of the looks' errors is bounded by the sum of what
each look spends (Bonferroni's inequality), the chance of any wrong decision over all
looks and all regularizers stays at most α, however the looks' statistics correlate, as
far as each interval holds its level: the corrected resampled t is itself an
approximation (it assumes a correlation of n_assess/n_train between repetitions), and
Holm's guarantee for the direction of a decision (helps vs hurts) is approximate when
the tests correlate, as these do (they share the best config's runs). The simulation in
the tests checks the whole rule; BENCHMARKS.md checks it against fresh data. A rerun
with a larger cap is a new run with its own error budget, not a continuation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from regsweep.insight.effects import CONFIDENCE, Effect, floor_width, half_width

ALPHA = 1.0 - CONFIDENCE  # the family-wise error rate of one verdict, all looks together

Decision = Literal["helps", "hurts", "negligible", "undecided"]
DECISIONS: tuple[Decision, ...] = ("helps", "hurts", "negligible", "undecided")


@dataclass(frozen=True)
class Judged:
    """One effect's decision, with the interval (and its level) it was made on."""

    decision: Decision
    effect: Effect
    real: bool  # the interval excludes 0 (a negligible effect can still be real)
    tost_p: float | None  # the equivalence test's p-value (largest of its one-sided two)

    @property
    def decided(self) -> bool:
        return self.decision != "undecided"

    def as_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "effect": self.effect.as_dict(),
            "real": self.real,
            "tost_p": self.tost_p,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Judged:
        effect = raw.get("effect")
        decision: Decision = next((d for d in DECISIONS if d == raw.get("decision")), "undecided")
        return cls(
            decision,
            Effect.from_dict(effect if isinstance(effect, dict) else {}),
            bool(raw.get("real")),
            _number(raw.get("tost_p")),
        )


def judge(effect: Effect, min_effect: float, lower_is_better: bool = True) -> Judged:
    """The decision one interval supports on its own (no adjustment)."""
    tost = tost_p_value(effect, min_effect)
    if not effect.has_interval or effect.mean is None:
        return Judged("undecided", effect, False, tost)
    real = effect.excludes_zero()
    if effect.within(min_effect):
        return Judged("negligible", effect, real, tost)
    if real:
        worse_without = effect.mean > 0 if lower_is_better else effect.mean < 0
        return Judged("helps" if worse_without else "hurts", effect, True, tost)
    return Judged("undecided", effect, False, tost)


def holm(
    effects: Mapping[str, Effect],
    min_effect: float,
    *,
    alpha: float = ALPHA,
    lower_is_better: bool = True,
) -> dict[str, Judged]:
    """Holm's step-down over the intervals of ``effects`` at family-wise level ``alpha``."""
    out: dict[str, Judged] = {}
    remaining = [name for name, e in effects.items() if e.has_interval]
    for name, effect in effects.items():
        if not effect.has_interval:
            out[name] = judge(effect, min_effect, lower_is_better)
    while remaining:
        level = alpha / len(remaining)
        judged = {
            name: judge(effects[name].at(1.0 - level), min_effect, lower_is_better)
            for name in remaining
        }
        newly = [name for name in remaining if judged[name].decided]
        for name in newly if newly else remaining:
            out[name] = judged[name]
        if not newly:
            break
        remaining = [name for name in remaining if name not in newly]
    return {name: out[name] for name in effects}


def tost_p_value(effect: Effect, bound: float) -> float | None:
    """The p-value of "the effect is at least ``bound`` in size", by two one-sided t tests.

    The larger of P(T >= (mean + bound)/se) (null: effect <= -bound) and
    P(T <= (mean - bound)/se) (null: effect >= +bound), with the same corrected standard
    error and degrees of freedom as the interval. Small means: inside ±bound.
    """
    if effect.mean is None or effect.sd is None or effect.n < 2:
        return None
    if effect.sd == 0.0:
        return 0.0 if abs(effect.mean) < bound else 1.0
    se = effect.sd * math.sqrt(1.0 / effect.n + effect.ratio)
    df = effect.n - 1
    above_low = float(stats.t.sf((effect.mean + bound) / se, df))
    below_high = float(stats.t.cdf((effect.mean - bound) / se, df))
    return max(above_low, below_high)


def pocock_spending(fraction: float, alpha: float = ALPHA) -> float:
    """Lan and DeMets' Pocock-type spending function: the error spent by ``fraction``."""
    fraction = min(1.0, max(0.0, fraction))
    return alpha * math.log(1.0 + (math.e - 1.0) * fraction)


@dataclass(frozen=True)
class LookPlan:
    """When ``ablate`` looks (cumulative repetitions) and what each look may spend."""

    looks: tuple[int, ...]
    alpha: float = ALPHA
    step: int = 0  # repetitions between looks; 0: a fixed count, one look (--repeats)

    @classmethod
    def sequential(cls, first: int, step: int, cap: int, alpha: float = ALPHA) -> LookPlan:
        """Look after ``first`` repetitions, then every ``step``, up to ``cap``."""
        if first < 2 or step < 1 or cap < 2:
            raise ValueError(
                f"a plan needs first >= 2, step >= 1, cap >= 2; got {first, step, cap}"
            )
        looks = list(range(min(first, cap), cap + 1, step))
        if looks[-1] != cap:
            looks.append(cap)
        return cls(tuple(looks), alpha, step)

    @classmethod
    def fixed(cls, repeats: int, alpha: float = ALPHA) -> LookPlan:
        """One look after ``repeats`` repetitions, spending all of ``alpha``."""
        return cls((repeats,), alpha)

    def alpha_at(self, index: int) -> float:
        """What look ``index`` (0-based) spends: the increase of the spending function."""
        cap = self.looks[-1]
        before = pocock_spending(self.looks[index - 1] / cap, self.alpha) if index else 0.0
        return pocock_spending(self.looks[index] / cap, self.alpha) - before

    @property
    def is_fixed(self) -> bool:
        return self.step == 0

    def with_cap(self, cap: int) -> LookPlan:
        """The same plan run up to ``cap`` repetitions (one look at ``cap`` if fixed)."""
        if self.is_fixed:
            return LookPlan.fixed(cap, self.alpha)
        return LookPlan.sequential(self.looks[0], self.step, cap, self.alpha)


def first_deciding_look(
    effect: Effect, plan: LookPlan, family: int, min_effect: float, *, after: int = 0
) -> int | None:
    """The first look of ``plan`` after ``after`` repetitions whose interval, at the error
    that look spends in a Holm step over ``family`` effects, would decide ``effect`` if
    its mean and spread stayed as seen (its repetitions); None if no such look would.

    Every look is tried, not only the last: a Pocock-type plan spends the least at its
    last look, so a look in between may decide what the last one could not."""
    if effect.mean is None or effect.sd is None or effect.n < 2:
        return None
    indices = [k for k, n in enumerate(plan.looks) if n > after and n >= 2]
    if not indices:
        return None
    n = np.array([plan.looks[k] for k in indices])
    if effect.sd == 0.0:
        return int(n[0])
    level = np.array([plan.alpha_at(k) for k in indices]) / max(1, family)
    half = half_width(n, effect.sd, effect.ratio, level)
    size = abs(effect.mean)
    found = np.flatnonzero((size > half) | (size + half < min_effect))
    return int(n[found[0]]) if len(found) else None


def cap_to_decide(
    effect: Effect, plan: LookPlan, family: int, min_effect: float, *, limit: int = 1000
) -> int | None:
    """The smallest cap above ``plan``'s (``--max-repeats``, or ``--repeats`` for a fixed
    plan) with a look that could decide ``effect`` at the mean and spread seen, judged in
    a Holm step over ``family`` effects; None if none up to ``limit`` could. Rough: it
    projects today's mean and spread, and a rerun is a new run."""
    step = plan.step or 1
    for cap in range(plan.looks[-1] + step, limit + 1, step):
        if first_deciding_look(effect, plan.with_cap(cap), family, min_effect) is not None:
            return cap
    return None


class Sequential:
    """The decisions of one verdict over its looks, as ``ablate`` takes them.

    Feed it each look's effects (95% intervals, before adjustment) in turn: it judges them
    with Holm at the error that look may spend, keeps every decision the first time it is
    taken, and says when to stop. Pure statistics: the simulation in the tests drives the
    very code ``ablate`` runs.
    """

    def __init__(self, plan: LookPlan, names: list[str], min_effect: float) -> None:
        self.plan = plan
        self.names = names
        self.min_effect = min_effect
        self.decided: dict[str, dict[str, object]] = {}
        self.latest: dict[str, Judged] = {}
        self.looks: list[dict[str, object]] = []
        self.repetitions = 0
        self.stopped = ""
        self.alpha = 0.0  # what the latest look spent

    def look(self, effects: Mapping[str, Effect], repetitions: int) -> str:
        """Judge one look's ``effects``; returns why it is the last look ("" to go on)."""
        index = len(self.looks)
        alpha = self.alpha = self.plan.alpha_at(index)
        self.repetitions = repetitions
        self.latest = holm(
            {name: effects[name] for name in self.names}, self.min_effect, alpha=alpha
        )
        for name, judged in self.latest.items():
            if judged.decided and name not in self.decided:
                self.decided[name] = {
                    **judged.as_dict(),
                    "repetitions": repetitions,
                    "look": index + 1,
                }
        self.looks.append(
            {
                "repetitions": repetitions,
                "alpha": alpha,
                "decided": {name: v["decision"] for name, v in self.decided.items()},
            }
        )
        self.stopped = self._stop_reason(index)
        return self.stopped

    @property
    def open(self) -> list[str]:
        return [name for name in self.names if name not in self.decided]

    def decision(self, name: str) -> str:
        return str(self.decided.get(name, {}).get("decision", "undecided"))

    def family(self, name: str) -> int:
        """How many effects the latest look's Holm step that judged ``name`` was over."""
        level = 1.0 - self.latest[name].effect.confidence
        return max(1, round(self.alpha / level)) if level > 0 else len(self.names)

    def _stop_reason(self, index: int) -> str:
        """Why look ``index`` is the last one ("" if more repetitions should follow).

        *futile*: from the second look on, if none of the looks left in the plan, each at
        the error it spends, could decide any open effect at the mean and spread seen
        (the correction's floor on a small data set), more repetitions would only cost
        time. Stopping early spends less error than planned, so it never weakens
        the guarantee.
        """
        open_ = self.open
        if not open_:
            return "decided"
        looks = self.plan.looks
        if index == len(looks) - 1:
            return "fixed" if self.plan.is_fixed else "cap"
        if index >= 1 and all(
            first_deciding_look(
                self.latest[n].effect,
                self.plan,
                self.family(n),
                self.min_effect,
                after=looks[index],
            )
            is None
            for n in open_
        ):
            return "futile"
        return ""

    def verdicts(self) -> dict[str, dict[str, object]]:
        """Each effect's decision: as first decided at a look, or undecided at the last one
        with the cap that would roughly decide it at the spread seen (``cap``, and ``more``
        repetitions than were run; None: no cap up to 1,000 would)."""
        out: dict[str, dict[str, object]] = {}
        for name in self.names:
            if name in self.decided:
                out[name] = self.decided[name]
                continue
            judged = self.latest[name]
            plan = self.plan
            cap = cap_to_decide(judged.effect, plan, self.family(name), self.min_effect)
            if cap is None and not plan.is_fixed:
                # Looking often costs error: one look at a fixed count spends all of it,
                # and may decide what no sequential plan could.
                plan = LookPlan.fixed(self.repetitions, plan.alpha)
                cap = cap_to_decide(judged.effect, plan, self.family(name), self.min_effect)
            out[name] = {
                **judged.as_dict(),
                "repetitions": self.repetitions,
                "look": len(self.looks),
                "cap": cap,
                "more": None if cap is None else max(0, cap - self.repetitions),
                "fixed": plan.is_fixed,
            }
            if cap is None and judged.effect.sd is not None:
                # How narrow endless repetitions would make it, at the level of the last
                # plan tried: one look at a fixed count, all of the error for its Holm step.
                level = plan.alpha_at(len(plan.looks) - 1) / self.family(name)
                out[name]["floor"] = floor_width(judged.effect.sd, judged.effect.ratio, level)
        return out


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
