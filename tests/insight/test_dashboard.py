"""``regsweep dashboard``: optuna-dashboard on a study made by a real sweep."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
import yaml

from tests.browser import full_page_screenshot, headless_chromium
from tests.conftest import IdxData, idx_sweep, run_cli, run_cli_here
from tests.processes import (
    cli_env,
    free_port,
    http_get,
    reaped,
    regsweep,
    start,
    unique_name,
    wait_until,
)

N_TRIALS = 3
PUBLISHED = "REGSWEEP_DASHBOARD_PUBLISHED"  # set by docker-compose.yml


@pytest.fixture(scope="module")
def swept(tiny_idx: IdxData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sweep file and the name of its study, after a real (tiny) sweep."""
    folder = tmp_path_factory.mktemp("dashboard")
    name = unique_name("dash")
    raw = idx_sweep(
        tiny_idx, folder, study={"name": name, "n_trials": N_TRIALS}, train={"max_epochs": 2}
    )
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = run_cli("launch", sweep, cwd=folder)
    assert result.code == 0, result.stderr
    return sweep, name


def studies_listed(port: int) -> list[dict[str, object]] | None:
    body = http_get(f"http://127.0.0.1:{port}/api/studies")
    return json.loads(body)["study_summaries"] if body else None


@pytest.mark.browser
def test_dashboard_shows_the_study_and_its_trials_in_chromium(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    sweep, name = swept
    port = free_port()
    with reaped(
        [start(regsweep("dashboard", sweep, "--port", port), tmp_path / "dashboard.log")]
    ) as (server,):
        studies = wait_until(lambda: studies_listed(port), "the dashboard", procs=[server])
        (study,) = [s for s in studies if s["study_name"] == name]
        study_id = study["study_id"]
        log = server.output()
        assert f"at http://127.0.0.1:{port}/dashboard/" in log
        assert f"(study {name}: http://127.0.0.1:{port}/dashboard/studies/{study_id})" in log

        with headless_chromium() as driver:
            driver.get(f"http://127.0.0.1:{port}/dashboard/")
            wait_until(lambda: name in driver.page_source, "the study list to show the study")
            full_page_screenshot(driver, tmp_path / "studies.png")
            driver.get(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials")

            def trials_shown() -> bool:
                text = driver.find_element("tag name", "body").text
                return all(f"Trial {n}" in text for n in range(N_TRIALS))

            wait_until(trials_shown, "every trial in the trial list")
            assert name in driver.find_element("tag name", "body").text
            shot = full_page_screenshot(driver, tmp_path / "trials.png")
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert shot.stat().st_size > 10_000  # a real page, not a blank one
        assert not severe, severe

        server.popen.send_signal(signal.SIGTERM)  # what `docker stop` sends
        assert server.wait() == 0
    assert "dashboard stopped" in server.output()
    assert "Traceback" not in server.output()


def test_dashboard_serves_the_study_over_http_on_localhost_only(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    sweep, name = swept
    port = free_port()
    with reaped(
        [start(regsweep("dashboard", sweep, "--port", port), tmp_path / "dashboard.log")]
    ) as (server,):
        studies = wait_until(lambda: studies_listed(port), "the dashboard", procs=[server])
        (study,) = [s for s in studies if s["study_name"] == name]
        detail = json.loads(
            http_get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0") or b"{}"
        )
        assert len(detail["trials"]) == N_TRIALS
        # Bound to 127.0.0.1 by default: another address of this machine gets no answer.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            outside = socket.gethostbyname(socket.gethostname())
            if not outside.startswith("127."):
                assert sock.connect_ex((outside, port)) != 0
        finally:
            sock.close()
        server.popen.send_signal(signal.SIGINT)
        assert server.wait() == 0


def test_dashboard_refuses_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    result = run_cli_here("dashboard", "--storage", "sqlite:///missing.db", cwd=tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --storage: no database at missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_dashboard_on_a_busy_port_is_one_line(swept: tuple[Path, str], tmp_path: Path) -> None:
    sweep, _ = swept
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("dashboard", sweep, "--port", str(port), timeout=120)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: --port: cannot listen on 127.0.0.1:{port}")
    assert "pick another --port" in lines[0]


def test_dashboard_on_all_interfaces_warns_where_it_is_published(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    """0.0.0.0 in a container is reachable only where compose publishes it: the message
    names that address, and the warning goes only when it is not this machine alone."""
    sweep, name = swept

    def first_lines(published: str | None) -> str:
        port = free_port()
        env = cli_env(**({PUBLISHED: published} if published is not None else {}))
        log = tmp_path / f"dashboard-{port}.log"
        args = regsweep("dashboard", sweep, "--host", "0.0.0.0", "--port", port)
        with reaped([start(args, log, env=env)]) as (server,):
            wait_until(lambda: studies_listed(port), "the dashboard", procs=[server])
            server.popen.send_signal(signal.SIGTERM)
            assert server.wait() == 0
        return server.output()

    unset = first_lines(None)
    assert "warning:" in unset and "everyone who can reach 0.0.0.0:" in unset

    local = first_lines("127.0.0.1:18080")
    assert "at http://127.0.0.1:18080/dashboard/" in local
    assert f"(study {name}: http://127.0.0.1:18080/dashboard/studies/" in local
    assert "warning:" not in local

    lan = first_lines("10.0.0.5:8080")
    assert "warning:" in lan and "everyone who can reach 10.0.0.5:8080 can use it" in lan


def test_dashboard_refuses_a_bad_published_address_in_one_line(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    sweep, _ = swept
    result = run_cli("dashboard", sweep, "--port", str(free_port()), env={PUBLISHED: "8080"})
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {PUBLISHED}='8080': expected HOST:PORT where the dashboard is published, "
        "e.g. 127.0.0.1:8080"
    ]


@pytest.mark.browser
def test_dashboard_shows_the_verdict_note_and_the_artifacts_in_chromium(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    sweep, name = swept
    env = {"OMP_NUM_THREADS": "1"}
    ablate = run_cli("ablate", sweep, "--repeats", "2", "--workers", "1", env=env)
    assert ablate.code == 0, ablate.stderr
    report = run_cli("report", sweep, "-o", tmp_path / "report.html")
    assert report.code == 0, report.stderr
    assert "uploaded as study artifacts" in report.stderr
    export = run_cli("export", sweep, "-o", tmp_path / "model", env=env)
    assert export.code == 0, export.stderr
    again = run_cli("report", sweep, "-o", tmp_path / "report.html")  # replaces, not adds
    assert again.code == 0, again.stderr
    store = sweep.parent / "study-artifacts"
    assert (
        len([p for p in store.iterdir() if p.is_file()]) == 5
    )  # report.html and the four model files

    port = free_port()
    with reaped(
        [start(regsweep("dashboard", sweep, "--port", port), tmp_path / "dashboard.log")]
    ) as (server,):
        studies = wait_until(lambda: studies_listed(port), "the dashboard", procs=[server])
        (study,) = [s for s in studies if s["study_name"] == name]
        study_id = study["study_id"]
        assert f"artifacts from {store}" in server.output()
        base = f"http://127.0.0.1:{port}/dashboard/studies/{study_id}"
        with headless_chromium() as driver:

            def showing(*needles: str) -> bool:
                text = driver.find_element("tag name", "body").text
                return all(needle in text for needle in needles)

            # The study's note page: the verdict, as ablate wrote it.
            driver.get(f"{base}/note")
            wait_until(lambda: showing("regsweep verdict", "95% CI", "why:"), "the verdict note")
            full_page_screenshot(driver, tmp_path / "note.png")
            # The study page: its artifacts, the report and the model files.
            driver.get(base)
            files = (
                "report.html",
                "model.pt",
                "preprocessor.joblib",
                "metrics.json",
                "config.yaml",
            )
            wait_until(lambda: showing("Study Artifacts", *files), "the five study artifacts")
            full_page_screenshot(driver, tmp_path / "study.png")
            text = driver.find_element("tag name", "body").text
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert text.count("report.html") == 1, "the re-upload replaced the first"
        assert not severe, severe
        # The artifact downloads: the report's bytes come back.
        listed = json.loads(http_get(f"http://127.0.0.1:{port}/api/studies/{study_id}") or b"{}")
        artifacts = {a["filename"]: a["artifact_id"] for a in listed.get("artifacts", [])}
        body = http_get(f"http://127.0.0.1:{port}/artifacts/{study_id}/{artifacts['report.html']}")
        assert body is not None and body.startswith(b"<!DOCTYPE html>")
        server.popen.send_signal(signal.SIGINT)
        assert server.wait() == 0
