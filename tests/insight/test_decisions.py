"""The verdict's statistics: the corrected interval, the equivalence test, Holm's step-down
and the alpha-spending plan against hand computations, and the whole sequential rule's
error rates by simulation (pure statistics, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regsweep.data.resample import repetition
from regsweep.insight.decisions import (
    LookPlan,
    Sequential,
    cap_to_decide,
    first_deciding_look,
    holm,
    judge,
    pocock_spending,
    tost_p_value,
)
from regsweep.insight.effects import Effect, floor_width, paired_effect

# Student's t, 97.5% quantiles from a printed table: 4 degrees of freedom.
T_4 = 2.776445


def test_the_corrected_resampled_t_interval_by_hand() -> None:
    # Nadeau and Bengio: variance (1/J + n_assess/n_train) s², t with J - 1 df.
    diffs = [0.10, 0.10, 0.07, 0.12, 0.08]
    mean = 0.094
    sd = math.sqrt((0.006**2 * 2 + 0.024**2 + 0.026**2 + 0.014**2) / 4)
    half = T_4 * sd * math.sqrt(1 / 5 + 0.25)
    effect = paired_effect(diffs, [0.0] * 5, ratio=0.25)
    assert effect.mean == pytest.approx(mean)
    assert effect.sd == pytest.approx(sd)
    assert (effect.low, effect.high) == (
        pytest.approx(mean - half, rel=1e-6),
        pytest.approx(mean + half, rel=1e-6),
    )
    # The correction widens the plain paired t by sqrt((1/J + ratio) / (1/J)) = 1.5.
    plain = paired_effect(diffs, [0.0] * 5)
    assert effect.width == pytest.approx(plain.width * 1.5)  # type: ignore[operator]
    # The same differences at another level: 99% with t(0.995, 4) = 4.604095.
    assert effect.at(0.99).high == pytest.approx(mean + 4.604095 * sd * math.sqrt(0.45), rel=1e-6)


def test_the_equivalence_test_by_hand() -> None:
    effect = paired_effect([0.10, 0.10, 0.07, 0.12, 0.08], [0.0] * 5, ratio=0.25)
    se = effect.sd * math.sqrt(0.45)  # type: ignore[operator]
    # A bound at mean + t(0.975, 4)·se: the upper one-sided test is exactly at p = 0.025,
    # the lower one (bound far below) is nowhere near it, so TOST's p is 0.025.
    bound = 0.094 + T_4 * se
    assert tost_p_value(effect, bound) == pytest.approx(0.025, rel=1e-5)
    # The 95% interval ends exactly at that bound: not inside; a hair wider bound is.
    assert judge(effect, bound).decision == "helps"
    assert judge(effect, bound * 1.001).decision == "negligible"
    assert judge(effect, bound * 1.001).real  # the interval excludes 0: real but negligible


def test_each_decision_and_which_way() -> None:
    helps = Effect(5, 0.3, 0.1, 0.5, sd=0.1)
    assert judge(helps, 0.05).decision == "helps"
    assert judge(helps, 0.05, lower_is_better=False).decision == "hurts"
    assert judge(Effect(5, -0.3, -0.5, -0.1, sd=0.1), 0.05).decision == "hurts"
    negligible = judge(Effect(5, 0.001, -0.01, 0.012, sd=0.01), 0.05)
    assert negligible.decision == "negligible" and not negligible.real
    assert judge(Effect(5, 0.02, -0.03, 0.07, sd=0.05), 0.05).decision == "undecided"
    assert judge(Effect(1, 0.02, None, None), 0.05).decision == "undecided"
    identical = paired_effect([0.2, 0.3], [0.2, 0.3])
    assert judge(identical, 0.01).decision == "negligible"


def test_holm_steps_down_and_reports_each_interval_at_its_level() -> None:
    # Ten differences with sd 1 each (plain t): t = mean·sqrt(10), p two-sided, df 9.
    def effect(p: float) -> Effect:
        from scipy import stats

        mean = float(stats.t.isf(p / 2, 9)) / math.sqrt(10)
        return paired_effect([mean + d for d in _unit_spread(10)], [0.0] * 10)

    a, b, c = effect(0.001), effect(0.02), effect(0.2)
    assert a.p_value == pytest.approx(0.001, rel=1e-6) and b.p_value == pytest.approx(0.02)
    # Alone, b would be undecided at alpha/3 = 0.0167; Holm decides a first, then b at
    # alpha/2 = 0.025, and stops at c (0.2 > 0.05).
    assert judge(b.at(1 - 0.05 / 3), 0.0).decision == "undecided"
    judged = holm({"a": a, "b": b, "c": c}, 0.0, alpha=0.05)
    assert [judged[k].decision for k in "abc"] == ["helps", "helps", "undecided"]
    assert judged["a"].effect.confidence == pytest.approx(1 - 0.05 / 3)
    assert judged["b"].effect.confidence == pytest.approx(1 - 0.05 / 2)
    assert judged["c"].effect.confidence == pytest.approx(1 - 0.05)
    # With a p of 0.02 for all three, nothing passes the first step (0.0167): all undecided.
    same = holm({"a": b, "b": b, "c": b}, 0.0, alpha=0.05)
    assert {j.decision for j in same.values()} == {"undecided"}


def _unit_spread(n: int) -> list[float]:
    """n numbers with mean 0 and sample standard deviation 1."""
    raw = np.linspace(-1, 1, n)
    return list(raw / raw.std(ddof=1))


def test_repetitions_that_would_decide_by_hand() -> None:
    # mean 0.05, sd 0.1, plain t at 95%: the interval excludes 0 once
    # t(0.975, n-1) · 0.1 / sqrt(n) < 0.05: n = 17 gives 2.1199/4.1231 = 0.0514 (not yet),
    # n = 18 gives 2.1098/4.2426 = 0.0497.
    effect = Effect(5, 0.05, -0.07, 0.17, sd=0.1)
    assert first_deciding_look(effect, LookPlan.fixed(17), 1, 1e-6) is None
    assert first_deciding_look(effect, LookPlan.fixed(18), 1, 1e-6) == 18
    # With the correction's floor 1.96 · 0.1 · sqrt(0.25) = 0.098 > 0.05, and a smallest
    # effect of 0.01, no number of repetitions decides it.
    floored = Effect(5, 0.05, -0.1, 0.2, sd=0.1, ratio=0.25)
    assert first_deciding_look(floored, LookPlan.fixed(1000), 1, 0.01) is None
    assert floor_width(0.1, 0.25, 0.05) == pytest.approx(1.959964 * 0.1 * 0.5)
    # The cap to suggest: one fixed look in a family of one spends all of 0.05, so 18;
    # in a family of two it is judged at 0.025 and needs more.
    assert cap_to_decide(effect, LookPlan.fixed(5), 1, 1e-6) == 18
    assert cap_to_decide(effect, LookPlan.fixed(5), 2, 1e-6) > 18  # type: ignore[operator]
    assert cap_to_decide(floored, LookPlan.sequential(5, 5, 30), 1, 0.01) is None


def test_the_first_look_that_would_decide_by_hand() -> None:
    from scipy import stats

    # Plan 5, 10, ..., 30 (six looks); look k spends 0.05·(ln(1 + (e-1)k/6) - ln(1 +
    # (e-1)(k-1)/6)): 0.01259, 0.01005, 0.00836, 0.00716, 0.00626, 0.00557. With sd 1
    # and the correction's ratio 0.25 a look's half-width is t(1 - a/2, n-1)·sqrt(1/n +
    # 0.25): 2.888, 1.921, 1.726, 1.650, 1.613, 1.594.
    plan = LookPlan.sequential(5, 5, 30)
    spent = [0.05 * math.log(1 + (math.e - 1) * k / 6) for k in range(7)]
    halves = [
        stats.t.ppf(1 - (spent[k + 1] - spent[k]) / 2, n - 1) * math.sqrt(1 / n + 0.25)
        for k, n in enumerate(plan.looks)
    ]
    assert halves[1] == pytest.approx(1.9208, abs=1e-3)
    assert halves[2] == pytest.approx(1.7259, abs=1e-3)
    # A mean of 1.8 is first excluded from 0 at the third look (15 repetitions) ...
    effect = Effect(5, 1.8, -1.1, 4.7, sd=1.0, ratio=0.25)
    assert first_deciding_look(effect, plan, 1, 0.1) == 15
    # ... or, once 15 have run, at the fourth; in a Holm step over two effects each look
    # is judged at half its error: 1.922 at the third look, 1.820 at the fourth, 1.768
    # at the fifth.
    assert first_deciding_look(effect, plan, 1, 0.1, after=15) == 20
    assert first_deciding_look(effect, plan, 2, 0.1) == 25
    # A mean of 1.5 stays inside every look's half-width (the last is 1.594): undecided.
    assert first_deciding_look(Effect(5, 1.5, -1.4, 4.4, sd=1.0, ratio=0.25), plan, 1, 0.1) is None


def test_an_effect_no_sequential_plan_decides_is_offered_one_fixed_look() -> None:
    # Mean 0, sd 1, ratio 0.19, smallest effect 1.0: every look of any sequential plan
    # spends at most 0.0126, where even endless repetitions leave the interval wider than
    # ±2.5·sqrt(0.19) = 1.09, so the rule stops as futile at its second look. One look
    # at a fixed count spends all 0.05: t(0.975, n-1)·sqrt(1/n + 0.19) is 1.0021 at
    # n = 23 and 0.9957 at n = 24, inside ±1.0: `--repeats 24`.
    rule = Sequential(LookPlan.sequential(5, 5, 30), ["a"], 1.0)
    stops = [rule.look({"a": Effect(n, 0.0, None, None, sd=1.0, ratio=0.19).at(0.95)}, n)
             for n in (5, 10)]  # fmt: skip
    assert stops == ["", "futile"]
    verdict = rule.verdicts()["a"]
    assert verdict["decision"] == "undecided"
    assert (verdict["fixed"], verdict["cap"], verdict["more"]) == (True, 24, 14)


def test_the_spending_plan_by_hand() -> None:
    # Lan-DeMets Pocock type: alpha · ln(1 + (e - 1) t).
    assert pocock_spending(0.5) == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2))
    assert pocock_spending(1.0) == pytest.approx(0.05)
    plan = LookPlan.sequential(5, 5, 30)
    assert plan.looks == (5, 10, 15, 20, 25, 30)
    assert plan.alpha_at(0) == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 6))
    assert sum(plan.alpha_at(i) for i in range(6)) == pytest.approx(0.05)
    assert LookPlan.sequential(5, 5, 12).looks == (5, 10, 12)
    assert LookPlan.fixed(8).alpha_at(0) == pytest.approx(0.05)


# The simulation ---------------------------------------------------------------------------

N_ROWS = 400
FOLDS = 5
MIN_EFFECT = 0.04
# Six effects, as a verdict has: clearly helping, hurting, negligible, small (between 0
# and the smallest effect that matters), exactly zero, and one at the margin's edge.
TRUE = np.array([0.12, -0.10, 0.005, 0.02, 0.0, 0.045])


def simulate(n_sims: int, *, row_sd: float, influence_sd: float, seed: int = 1) -> dict[str, float]:
    """Run the sequential verdict on differences drawn as resampling makes them.

    Each simulated data set has N rows. A row's paired difference (variant - best) is
    the true effect plus row noise; a repetition's difference is the mean over its
    assessment rows, plus a training term shared through the rows it trained on, plus
    noise of its own (initial weights, batch order): the structure that makes repetitions
    of one data set correlated. The truth is the population effect.
    """
    rng = np.random.default_rng(seed)
    assess, trained, ratio = _resampling()
    names = [f"e{i}" for i in range(len(TRUE))]
    covered = wrong_families = 0
    decided = 0
    for _ in range(n_sims):
        diffs = _differences(rng, assess, trained, row_sd, influence_sd)
        rule = Sequential(LookPlan.sequential(5, 5, 30), names, MIN_EFFECT)
        for target in rule.plan.looks:
            effects = {
                n: paired_effect(list(diffs[:target, i]), [0.0] * target, ratio=ratio)
                for i, n in enumerate(names)
            }
            if rule.look(effects, target):
                break
        wrong = False
        for i, found in enumerate(rule.verdicts().values()):
            effect = Effect.from_dict(found["effect"])  # type: ignore[arg-type]
            covered += effect.low <= TRUE[i] <= effect.high  # type: ignore[operator]
            decision = found["decision"]
            decided += decision != "undecided"
            wrong |= (
                (decision == "helps" and TRUE[i] <= 0)
                or (decision == "hurts" and TRUE[i] >= 0)
                or (decision == "negligible" and abs(TRUE[i]) >= MIN_EFFECT)
            )
        wrong_families += wrong
    effects = n_sims * len(TRUE)
    return {
        "coverage": covered / effects,
        "family_error": wrong_families / n_sims,
        "decided": decided / effects,
    }


def _resampling() -> tuple[np.ndarray, np.ndarray, float]:
    """Averaging matrices of 30 real repetitions: over assessment rows, over trained rows."""
    parts = [
        repetition(np.zeros(N_ROWS), "regression", study_seed=3, index=r, folds=FOLDS,
                   val_fraction=0.2)
        for r in range(30)
    ]  # fmt: skip
    assess = np.zeros((30, N_ROWS))
    trained = np.zeros((30, N_ROWS))
    for r, part in enumerate(parts):
        assess[r, part.assess] = 1 / len(part.assess)
        rows = np.concatenate([part.fit, part.val])
        trained[r, rows] = 1 / len(rows)
    return assess, trained, len(parts[0].assess) / (N_ROWS - len(parts[0].assess))


def _differences(
    rng: np.random.Generator,
    assess: np.ndarray,
    trained: np.ndarray,
    row_sd: float,
    influence_sd: float,
) -> np.ndarray:
    """One data set's per-repetition differences (30 x effects)."""
    rows = TRUE + row_sd * rng.standard_normal((N_ROWS, len(TRUE)))
    influence = influence_sd * rng.standard_normal((N_ROWS, len(TRUE)))
    own = 0.01 * rng.standard_normal((len(assess), len(TRUE)))
    return assess @ rows + trained @ influence + own


def test_the_corrected_interval_covers_where_the_plain_one_does_not() -> None:
    # One 95% interval per effect, no adjustment, at 5, 10 and 30 repetitions of the
    # same data sets: the plain paired t treats correlated repetitions as independent.
    rng = np.random.default_rng(7)
    assess, trained, ratio = _resampling()
    hits = {(j, c): 0 for j in (5, 10, 30) for c in (True, False)}
    n_sims = 200
    for _ in range(n_sims):
        diffs = _differences(rng, assess, trained, 0.25, 0.15)
        for j in (5, 10, 30):
            for corrected in (True, False):
                for i in range(len(TRUE)):
                    e = paired_effect(
                        list(diffs[:j, i]), [0.0] * j, ratio=ratio if corrected else 0.0
                    )
                    hits[j, corrected] += e.low <= TRUE[i] <= e.high  # type: ignore[operator]
    coverage = {key: n / (n_sims * len(TRUE)) for key, n in hits.items()}
    for j in (5, 10, 30):
        assert coverage[j, True] >= 0.93, coverage
    assert coverage[30, False] < 0.8, coverage  # the more repetitions, the worse


@pytest.mark.parametrize(
    ("row_sd", "influence_sd", "decides"),
    [(0.25, 0.15, 0.3), (0.1, 0.06, 0.8)],
    ids=["noisy", "clear"],
)
def test_the_sequential_rule_holds_its_error_rates_in_simulation(
    row_sd: float, influence_sd: float, decides: float
) -> None:
    found = simulate(250, row_sd=row_sd, influence_sd=influence_sd)
    # Every reported interval covers the truth at least 95% of the time (adjusted ones
    # are wider, so more), and no family errs in more than 5% of the data sets, however
    # often the rule looked before it stopped.
    assert found["coverage"] >= 0.95, found
    assert found["family_error"] <= 0.05, found
    # And it decides: on the noisy data the clear effects, on the clear data nearly all.
    assert found["decided"] >= decides, found
