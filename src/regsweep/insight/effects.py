"""Paired effects over repetitions: mean difference and its confidence interval.

Pure statistics (no PyTorch, no Optuna), so it is checked against hand computations.

Sign convention, used everywhere in regsweep: the *effect* of a change is
``metric(changed) - metric(best config)``, paired repetition by repetition. For an
ablation the change is removing a regularizer, so for a loss a positive effect means the
regularizer *helps* (removing it makes the loss worse).

The interval is Nadeau and Bengio's *corrected resampled t* ("Inference for the
Generalization Error", Machine Learning 52, 2003): with J paired differences whose
training rows overlap (every repetition draws its rows from the same data set), the
plain variance estimate s²/J is too small, because the J differences are positively
correlated. Their correction replaces it by ``(1/J + n_assess/n_train) · s²`` and keeps
Student's t with J - 1 degrees of freedom; Bouckaert and Frank (PAKDD 2004) showed that
it holds its level for repeated cross-validation, which is how repetitions draw their
assessment rows. With ``ratio`` 0 it is the plain paired t interval
(``scipy.stats.ttest_rel``), which older ablations (seeds on fixed rows) used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95

Verdict = Literal["helps", "hurts", "no measurable effect", "no interval"]


@dataclass(frozen=True)
class Effect:
    """The paired difference ``changed - best`` of one metric over ``n`` repetitions."""

    n: int  # repetitions where both runs were measured
    mean: float | None  # None when no repetition measured both
    low: float | None  # the interval at ``confidence``; None with fewer than two
    high: float | None
    p_value: float | None = None  # two-sided test of "no difference"; None without an interval
    sd: float | None = None  # sample standard deviation of the differences
    ratio: float = 0.0  # n_assess / n_train of the correction (0: plain paired t)
    confidence: float = CONFIDENCE

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

    def within(self, bound: float) -> bool:
        """Whether the whole interval lies inside ``(-bound, +bound)``."""
        return (
            self.low is not None
            and self.high is not None
            and -bound < self.low
            and (self.high < bound)
        )

    def at(self, confidence: float) -> Effect:
        """The same differences at another confidence level."""
        if self.mean is None or self.sd is None or self.n < 2:
            return self
        return _interval(self.n, self.mean, self.sd, self.ratio, confidence)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "sd": self.sd,
            "ratio": self.ratio,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, float | int | None]) -> Effect:
        def number(key: str, default: float) -> float:
            value = raw.get(key)
            return float(value) if value is not None else default

        return cls(
            n=int(raw.get("n") or 0),
            mean=_optional(raw.get("mean")),
            low=_optional(raw.get("low")),
            high=_optional(raw.get("high")),
            p_value=_optional(raw.get("p_value")),
            sd=_optional(raw.get("sd")),
            ratio=number("ratio", 0.0),
            confidence=number("confidence", CONFIDENCE),
        )


def paired_effect(
    changed: Sequence[float | None],
    best: Sequence[float | None],
    confidence: float = CONFIDENCE,
    *,
    ratio: float = 0.0,
) -> Effect:
    """Mean of ``changed[i] - best[i]`` and its (corrected) t interval.

    ``ratio`` is n_assess / n_train of each repetition: the correlation correction of the
    corrected resampled t; 0 gives the plain paired t. Repetitions missing either run
    are skipped. Identical differences on every repetition (identical variants: all
    zero) have no spread, so the interval is that single value. One repetition has no
    interval at all.
    """
    if len(changed) != len(best):
        raise ValueError(f"paired runs differ in length: {len(changed)} vs {len(best)}")
    if ratio < 0:
        raise ValueError(f"the correction's ratio must be >= 0, but got {ratio=}.")
    diffs = [
        float(c) - float(b)  # type: ignore[arg-type]
        for c, b in zip(changed, best, strict=True)
        if _known(c) and _known(b)
    ]
    n = len(diffs)
    if n == 0:
        return Effect(0, None, None, None, ratio=ratio, confidence=confidence)
    mean = statistics.fmean(diffs)
    if n == 1:
        return Effect(1, mean, None, None, ratio=ratio, confidence=confidence)
    return _interval(n, mean, statistics.stdev(diffs), ratio, confidence)


def half_width(n: Any, sd: float, ratio: float, level: Any) -> Any:
    """The corrected resampled t interval's half-width: t(1 - level/2, n-1)·sd·sqrt(1/n +
    ratio), for ``n`` repetitions at two-sided error ``level`` (numbers or numpy arrays)."""
    return stats.t.ppf(1.0 - level / 2.0, n - 1) * sd * np.sqrt(1.0 / n + ratio)


def floor_width(sd: float, ratio: float, level: float) -> float:
    """The half-width that :func:`half_width` approaches with endless repetitions,
    z(1 - level/2)·sd·sqrt(ratio): a data set's rows limit what repetitions can resolve."""
    return float(stats.norm.ppf(1.0 - level / 2.0) * sd * math.sqrt(ratio))


def _interval(n: int, mean: float, sd: float, ratio: float, confidence: float) -> Effect:
    if sd == 0.0:
        # With no spread at all the interval is the value itself (scipy would give NaN).
        p = 1.0 if mean == 0.0 else 0.0
        return Effect(n, mean, mean, mean, p, 0.0, ratio, confidence)
    se = sd * math.sqrt(1.0 / n + ratio)
    half = float(half_width(n, sd, ratio, 1.0 - confidence))
    p = float(2.0 * stats.t.sf(abs(mean) / se, n - 1))
    return Effect(n, mean, mean - half, mean + half, p, sd, ratio, confidence)


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
    """The older verdict words (an ablation stored before repetitions): helps or hurts when
    the interval excludes 0, else no measurable effect (or no interval, with one seed)."""
    if not effect.has_interval or effect.mean is None:
        return "no interval"
    if not effect.excludes_zero():
        return "no measurable effect"
    worse_without = effect.mean > 0 if lower_is_better else effect.mean < 0
    return "helps" if worse_without else "hurts"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _optional(value: float | int | None) -> float | None:
    return None if value is None else float(value)
