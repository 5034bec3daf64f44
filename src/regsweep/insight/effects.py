"""Paired effects over seeds: mean difference, its 95% confidence interval, a plain verdict.

Pure statistics (no PyTorch, no Optuna), so it is checked against a hand computation.

Sign convention, used everywhere in regsweep: the *effect* of a change is
``metric(changed) - metric(best config)``, paired seed by seed. For an ablation the change
is removing a regularizer, so for a loss a positive effect means the regularizer *helps*
(removing it makes the loss worse). The interval is Student's t on the paired
differences, the interval ``scipy.stats.ttest_rel(changed, best)`` gives.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

CONFIDENCE = 0.95

Verdict = Literal["helps", "hurts", "no measurable effect", "no interval"]


@dataclass(frozen=True)
class Effect:
    """The paired difference ``changed - best`` of one metric over ``n`` seeds."""

    n: int  # seeds where both runs were measured
    mean: float | None  # None when no seed measured both
    low: float | None  # 95% CI; None with fewer than two seeds
    high: float | None
    p_value: float | None = None  # paired t test of "no difference"; None without an interval

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def width(self) -> float | None:
        """The interval's full width: how large an effect could hide inside it."""
        if self.low is None or self.high is None:
            return None
        return self.high - self.low

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
        }


def paired_effect(
    changed: Sequence[float | None],
    best: Sequence[float | None],
    confidence: float = CONFIDENCE,
) -> Effect:
    """Mean of ``changed[i] - best[i]`` and its t interval; seeds missing either are skipped.

    Identical differences on every seed (identical variants: all zero) have no spread,
    so the interval is that single value. One seed has no interval at all.
    """
    if len(changed) != len(best):
        raise ValueError(f"paired runs differ in length: {len(changed)} vs {len(best)}")
    pairs = [(c, b) for c, b in zip(changed, best, strict=True) if _known(c) and _known(b)]
    diffs = [float(c) - float(b) for c, b in pairs]  # type: ignore[arg-type]
    n = len(diffs)
    if n == 0:
        return Effect(0, None, None, None)
    mean = statistics.fmean(diffs)
    if n == 1:
        return Effect(1, mean, None, None)
    if statistics.stdev(diffs) == 0.0:
        # scipy returns NaN here; with no spread at all the interval is the value itself.
        return Effect(n, mean, mean, mean, 1.0 if mean == 0.0 else 0.0)
    with warnings.catch_warnings():
        # Near-identical differences make scipy warn about precision; the interval is
        # then just very narrow, which is the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel([c for c, _ in pairs], [b for _, b in pairs])
    interval = result.confidence_interval(confidence_level=confidence)
    return Effect(n, mean, float(interval.low), float(interval.high), float(result.pvalue))


def mean_interval(
    values: Sequence[float | None], confidence: float = CONFIDENCE
) -> tuple[float | None, float | None, float | None]:
    """Mean of ``values`` and the t interval of that mean (None bounds with fewer than 2)."""
    known = [float(v) for v in values if _known(v)]  # type: ignore[arg-type]
    if not known:
        return None, None, None
    mean = statistics.fmean(known)
    if len(known) < 2:
        return mean, None, None
    sd = statistics.stdev(known)
    if sd == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(
        confidence, len(known) - 1, loc=mean, scale=sd / math.sqrt(len(known))
    )
    return mean, float(low), float(high)


def classify(effect: Effect, lower_is_better: bool = True) -> Verdict:
    """What removing (changing) made of the regularizer, from the metric's direction.

    ``helps``: without it the metric is worse and the interval excludes 0; ``hurts``:
    without it the metric is better and the interval excludes 0; otherwise no measurable
    effect at this many seeds (or no interval, with one seed).
    """
    if not effect.has_interval or effect.mean is None:
        return "no interval"
    if not effect.excludes_zero():
        return "no measurable effect"
    worse_without = effect.mean > 0 if lower_is_better else effect.mean < 0
    return "helps" if worse_without else "hurts"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
