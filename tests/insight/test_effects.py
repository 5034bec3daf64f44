"""The verdict's statistics against a hand computation on scripted per-seed results."""

from __future__ import annotations

import math

import pytest

from regsweep.insight.effects import classify, mean_interval, paired_effect

# Student's t, 97.5% quantile, from a printed table: 2 and 4 degrees of freedom.
T_2, T_4 = 4.302653, 2.776445


def test_paired_interval_is_students_t_on_the_differences() -> None:
    best = [0.20, 0.21, 0.22]
    without = [0.30, 0.31, 0.29]  # differences 0.10, 0.10, 0.07
    effect = paired_effect(without, best)
    mean = 0.09
    sd = math.sqrt(((0.01) ** 2 * 2 + (0.02) ** 2) / 2)  # sample sd of the differences
    half = T_2 * sd / math.sqrt(3)
    assert effect.n == 3
    assert effect.mean == pytest.approx(mean)
    assert effect.low == pytest.approx(mean - half, rel=1e-6)
    assert effect.high == pytest.approx(mean + half, rel=1e-6)
    assert effect.width == pytest.approx(2 * half, rel=1e-6)
    assert classify(effect) == "helps"  # removing it made the loss worse
    # For a higher-is-better metric the same positive difference means it hurt.
    assert classify(effect, lower_is_better=False) == "hurts"


def test_pairing_removes_the_seed_to_seed_spread() -> None:
    # Seeds differ a lot, but the variant is 0.01 worse on every one of five seeds.
    best = [0.10, 0.30, 0.20, 0.50, 0.40]
    without = [0.111, 0.309, 0.211, 0.509, 0.41]  # differences .011 .009 .011 .009 .010
    effect = paired_effect(without, best)
    diffs = [0.011, 0.009, 0.011, 0.009, 0.010]
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    assert effect.low == pytest.approx(mean - T_4 * sd / math.sqrt(5), rel=1e-5)
    assert classify(effect) == "helps"
    # Unpaired, the means' intervals overlap by far: pairing is what makes it visible.
    _, _, high_best = mean_interval(best)
    _, low_without, _ = mean_interval(without)
    assert low_without is not None and high_best is not None and low_without < high_best


def test_an_interval_across_zero_is_no_measurable_effect_and_says_its_width() -> None:
    effect = paired_effect([0.21, 0.19, 0.205], [0.20, 0.20, 0.20])  # +.01 -.01 +.005
    assert effect.low is not None and effect.high is not None
    assert effect.low < 0 < effect.high
    assert classify(effect) == "no measurable effect"
    assert effect.width == pytest.approx(effect.high - effect.low)
    hurts = paired_effect([0.18, 0.17, 0.19], [0.20, 0.21, 0.22])
    assert classify(hurts) == "hurts"


def test_one_seed_has_no_interval() -> None:
    effect = paired_effect([0.9], [0.2])
    assert effect.n == 1 and effect.mean == pytest.approx(0.7)
    assert effect.low is None and effect.high is None and effect.width is None
    assert classify(effect) == "no interval"


def test_identical_variants_have_a_zero_effect_and_a_zero_width_interval() -> None:
    effect = paired_effect([0.2, 0.3, 0.4], [0.2, 0.3, 0.4])
    assert (effect.mean, effect.low, effect.high, effect.width) == (0.0, 0.0, 0.0, 0.0)
    assert classify(effect) == "no measurable effect"


def test_seeds_missing_either_run_are_left_out_of_the_pairs() -> None:
    effect = paired_effect([0.3, None, 0.31, float("nan")], [0.2, 0.2, 0.22, 0.2])
    assert effect.n == 2 and effect.mean == pytest.approx((0.1 + 0.09) / 2)
    with pytest.raises(ValueError, match="differ in length"):
        paired_effect([0.1], [0.1, 0.2])
