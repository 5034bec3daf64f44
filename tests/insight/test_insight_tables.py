"""The documented sequence on a real table: sweeps/breast_cancer.yaml, as a user runs it.

sweep, ablate, paths, report: the verdict is measured on assessment rows with corrected
intervals, every regularizer ends helps / hurts / negligible / undecided with its
reason, the test rows stand beside as a check and gradient boosting as a reference.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from regsweep.insight.ablation import stored_ablation
from regsweep.insight.paths import stored_paths
from regsweep.insight.verdict import findings
from tests.conftest import REPO, run_cli

ENV = {"OMP_NUM_THREADS": "1"}
SWEEP = REPO / "sweeps" / "breast_cancer.yaml"


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    folder = tmp_path_factory.mktemp("breast-cancer")
    storage = f"sqlite:///{folder / 'bc.db'}"
    common = ("--storage", storage)
    outputs = {}
    for name, args in (
        ("launch", ("launch", SWEEP, *common, "--n-trials", "8")),
        ("ablate", ("ablate", SWEEP, *common, "--max-repeats", "10", "--workers", "2")),
        ("paths", ("paths", SWEEP, *common, "--repeats", "2", "--workers", "2")),
        ("report", ("report", SWEEP, *common, "-o", folder / "report.html")),
    ):
        result = run_cli(*args, cwd=REPO, env=ENV)  # the sweep file's paths are the repo's
        assert result.code == 0, (name, result.stderr)
        outputs[name] = result.stdout + result.stderr
    outputs["html"] = (folder / "report.html").read_text(encoding="utf-8")
    return storage, outputs


def test_the_verdict_on_a_real_table_is_decided_or_says_why_not(documented) -> None:
    storage, outputs = documented
    study = optuna.load_study(study_name="breast_cancer", storage=storage)
    result = stored_ablation(study)
    assert result is not None and result["design"] == "repetitions"
    # 455 rows to train on (a fifth held out as the test split); a fifth of the sweep's
    # 364 training rows assessed per repetition (72 or 73, stratified), the other 382 or
    # 383 trained and stopped: the ratio is the mean of n_assess / n_train per repetition.
    assert result["headline"] == "assess_loss"
    assert result["ratio"] == pytest.approx(72.8 / 382.2, abs=2e-4)
    assert result["stopped"] in ("decided", "cap", "futile")
    words = {"helps", "hurts", "negligible", "real but negligible", "undecided"}
    found = [f for f in findings(result) if f.verdict is not None]
    assert len(found) == len(result["tested"]) >= 1
    for finding in found:
        assert finding.word in words
        assert "adjusted 95% CI" in finding.sentence and "repetitions" in finding.sentence
        if finding.verdict == "undecided":
            assert "would decide it" in finding.sentence, finding.sentence
        assert "test rows" in finding.sentence  # the independent check
    # The progress per look and the verdict, as printed.
    assert "look 1 of 2 (5 repetitions)" in outputs["ablate"]
    assert "verdict (trial" in outputs["ablate"] and "corrected resampled t" in outputs["ablate"]
    # Gradient boosting on the same rows, beside it: "should I use an MLP here at all".
    reference = result["reference"]
    assert reference["model"] == "HistGradientBoostingClassifier"
    assert 0 < reference["mean"]["assess_loss"] < 1 and reference["repetitions"] == len(
        result["seeds"]
    )
    assert "Reference, not a regularizer: gradient boosting" in outputs["ablate"]
    # paths ran over the ablation's first repetitions: the same rows and seeds.
    paths = stored_paths(study)
    assert paths is not None and paths["seeds"] == result["seeds"][:2]
    html = outputs["html"]
    assert 'id="verdict-box"' in html and "Should an MLP be used here at all?" in html
    assert "corrected resampled t" in html and "test rows" in html


def test_a_bad_smallest_effect_is_one_line_and_changes_nothing(documented, tmp_path: Path) -> None:
    storage, _ = documented
    before = optuna.load_study(study_name="breast_cancer", storage=storage).user_attrs
    result = run_cli("ablate", SWEEP, "--storage", storage, "--min-effect", "150%", cwd=REPO)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: --min-effect: '150%'")
    assert "between 0% and 100%" in lines[0]
    after = optuna.load_study(study_name="breast_cancer", storage=storage).user_attrs
    assert after == before
