"""Ablations stored by an older regsweep, read in this version's form.

Before repetitions, ``ablate`` retrained over seeds on the sweep's own split and scored
every variant on the validation rows that had chosen the best config; its intervals were
plain paired t over seeds (only training randomness varied). Such a result still opens
in ``report`` and the dashboard: it is upgraded on read to the current form (headline
``val_loss``, no correction, no smallest effect, so never *negligible*), and carries a
one-line note saying where it came from.
"""

from __future__ import annotations

from typing import Any

from regsweep.insight.decisions import judge

LEGACY_DESIGN = "seeds"
NOTE = (
    "This verdict came from the older design: seeds on the validation rows that chose the "
    "config, plain paired t intervals, which leave out the rows' own sampling noise and "
    "favour the chosen config. Run `regsweep ablate` again for effects measured on rows "
    "that chose nothing."
)


def upgrade(old: dict[str, Any]) -> dict[str, Any]:
    """``old`` (seeds, validation rows) in the form ``insight.verdict`` reads."""
    from regsweep.insight.ablation import findings_to_test, headline_effects

    result = dict(old)
    result.update(design=LEGACY_DESIGN, headline="val_loss", ratio=0.0, min_effect=0.0)
    tested = findings_to_test({row["key"]: row["same_as"] for row in old["rows"]})
    n_seeds = len(old.get("seeds", []))
    result["tested"] = tested
    result["verdicts"] = {
        name: {**judge(effect, 0.0).as_dict(), "repetitions": n_seeds, "look": 1, "more": None}
        for name, effect in headline_effects(result, tested).items()
    }
    result["legacy_note"] = NOTE
    return result
