"""The dashboard of a finished study, opened in headless Chromium as a researcher would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, free_port, run_cli
from tests.run.conftest import write_spec
from tests.study_runner import StudyRunner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.slow  # one pytest-xdist worker runs the module (tests/conftest.py: XDIST_GROUPS)


# Session-scoped: a module fixture would be made again when a pytest-xdist worker runs another
# module's test in between, or finds its queue empty for a moment.
@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory, tiny_mri: Path, study_runner: StudyRunner) -> Path:
    folder = tmp_path_factory.mktemp("report")
    spec = write_spec(
        folder,
        name="smoke",
        datasets=[str(tiny_mri)],
        label_fractions=[0.5, 1.0],
        pretraining={"task": ["restoration", "prediction"], "patch_size": [64], "sampler": ["random"]},
    )
    done = study_runner.run(folder, str(spec))  # python -m study.run, by its main in the session's study runner
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "report:" in done.stdout  # the runner refreshes the dashboard at the end
    return folder / "studies" / "smoke"


def test_the_report_is_self_contained_with_figures_as_files(finished_study: Path) -> None:
    result = run_cli("study.report", str(finished_study))
    assert result.returncode == 0, result.stderr
    page = (finished_study / "report" / "report.html").read_text()
    # nothing a browser would fetch: no src/href to another host, no stylesheet or script links
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') >= 3
    for stem in ("fig1_corruptions", "fig3_dice_vs_fraction"):
        assert (finished_study / "report" / "figures" / f"{stem}.png").stat().st_size > 0
        assert (finished_study / "report" / "figures" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    assert "Left out: the study has fewer than two pretraining extents." in page


@pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_chromium_renders_every_image_and_the_analysis_ranking(finished_study: Path, tmp_path: Path) -> None:
    from selenium import webdriver

    assert run_cli("study.report", str(finished_study)).returncode == 0
    analysis = run_cli("study.analyze", str(finished_study), "--no-mlflow", "--out", str(tmp_path / "analysis"))
    assert analysis.returncode == 0, analysis.stderr
    import pandas as pd

    expected = pd.read_csv(tmp_path / "analysis" / "ranking.csv")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        browser.get((finished_study / "report" / "report.html").as_uri())
        shot = finished_study / "report" / "screenshot.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 3 and all(w > 0 for w in widths), widths
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('table.ranking')).map(t => [t.dataset.dataset,"
            " Array.from(t.tBodies[0].rows).map(r => [r.cells[0].textContent, r.cells[1].textContent])])"
        )
        assert {ds: [(int(r), s) for r, s in rows] for ds, rows in shown} == {
            ds: list(zip(part["rank"].astype(int), part["strategy"])) for ds, part in expected.groupby("dataset")
        }
        # the answer comes first: the first section is the analysis' headline, line for line
        first = browser.execute_script("return document.querySelector('section h2').textContent")
        headline = browser.execute_script(
            "return Array.from(document.querySelectorAll('ul.headline li')).map(li => li.textContent)"
        )
        summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
        assert first == "Answer" and headline == [line.strip() for line in summary["headline"]]
        # rows that beat the baseline are marked, numbers read as numbers
        marked = browser.execute_script("return document.querySelectorAll('table.ranking tr.beats').length")
        assert marked == int(expected["beats_baseline"].sum())
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('table.ranking td')).map(td => td.textContent)"
        )
        assert not [c for c in cells if re.fullmatch(r"-?[0-9.]+e-?[0-9]+", c)]  # no 7.11e-05
        # the design-axis effects, level for level as study.analyze wrote them
        effects = pd.read_csv(tmp_path / "analysis" / "effects.csv", dtype={"level": str})
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('table.effects')).map(t => [t.dataset.dataset,"
            " Array.from(t.tBodies[0].rows).map(r => [r.cells[0].textContent, r.cells[1].textContent,"
            " r.cells[4].textContent])])"
        )
        assert {ds: [(a, level, float(m)) for a, level, m in rows] for ds, rows in shown} == {
            ds: [(a, level, round(m, 3)) for a, level, m in zip(part["axis"], part["level"], part["mean_diff"])]
            for ds, part in effects.groupby("dataset")
        }
        assert set(effects["axis"]) == {"task"}  # the one axis the study varies
        drill = browser.execute_script(
            "return document.querySelectorAll('table.cases.helps, table.cases.hurts').length"
        )
        assert drill == 2 * effects["dataset"].nunique()
        # the spec as YAML, not a Python dict
        spec_text = browser.execute_script("return document.querySelector('pre.spec').textContent")
        assert "label_fractions: [0.5, 1.0]" in spec_text and "{'" not in page_text(browser)
        # a 1400 px page holds the ranking whole: no table wider than the page, no sideways scrolling
        page_width = browser.execute_script("return document.documentElement.clientWidth")
        rights = browser.execute_script(
            "return Array.from(document.querySelectorAll('table.ranking')).map(t => t.getBoundingClientRect().right)"
        )
        assert rights and max(rights) <= page_width, (rights, page_width)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= page_width
        # resolved values, not the profile's nulls; zero failures not in red; every "chosen strategy" named
        assert "pretraining.lr\t0.01 (the laptop profile's)" in page_text(browser)
        assert "null (the profile" not in page_text(browser)
        assert browser.execute_script("return document.querySelectorAll('.counts .failed').length") == 0
        chosen = browser.execute_script(
            "return Array.from(document.querySelectorAll('section')).filter(s => "
            "s.querySelector('.caption') && s.querySelector('.caption').textContent"
            ".includes('chosen strategy')).map(s => s.querySelector('ul.chosen code')"
            " ? s.querySelector('ul.chosen code').textContent : s.querySelector('h2').textContent)"
        )
        assert chosen and all(c in set(expected["strategy"]) for c in chosen), chosen
        assert "did not beat the supervised baseline" in page_text(browser)  # the tiny study's strategies do not
        # the whole page, for a person to look at
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1400, min(height + 100, 16000))
        full = finished_study / "report" / "screenshot_full.png"
        assert browser.save_screenshot(str(full)) and full.stat().st_size > 50_000
    finally:
        browser.quit()


def page_text(browser) -> str:
    return browser.execute_script("return document.body.innerText")


def test_bad_input(tmp_path: Path) -> None:
    assert_user_error(run_cli("study.report", "no-such-study", cwd=tmp_path), "no-such-study")
    empty = tmp_path / "studies" / "empty"
    (empty / "trials").mkdir(parents=True)
    (empty / "study.json").write_text('{"name": "empty", "trials": []}')
    assert_user_error(run_cli("study.report", "empty", cwd=tmp_path), "no finished trial")
    assert not (empty / "report").exists()


def test_a_trial_of_the_finished_study_runs_again_with_its_numbers(finished_study: Path) -> None:
    """``study.train --study --trial`` (here on the report's study, to train no second one)."""
    records = [json.loads(p.read_text()) for p in (finished_study / "trials").glob("*/result.json")]
    trial = next(r for r in records if r["task"] != "none")
    before = sorted(p.relative_to(finished_study) for p in finished_study.rglob("*") if "report" not in p.parts)
    again = run_cli("study.train", "--study", str(finished_study), "--trial", trial["trial_id"][:6], "--quiet")
    assert again.returncode == 0, again.stderr
    assert f"mean over classes: {trial['dice']:.6f} (the study recorded the same)" in again.stdout
    after = sorted(p.relative_to(finished_study) for p in finished_study.rglob("*") if "report" not in p.parts)
    assert after == before  # the study's folder is left as it was


@contextlib.contextmanager
def _serving(command: list[str], cwd: Path, probe: str) -> Iterator[str]:
    """A web view of the study (``mlflow ui``, ``optuna-dashboard``) on a free port, as a user starts
    it; yields its base address and stops it (its own process group) afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240  # two busy cores: MLflow's server takes a while to import
        while True:
            try:
                urllib.request.urlopen(base + probe, timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, f"{command[0]} did not start"
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _fresh_chromium(profile: Path):
    """Headless Debian Chromium with a profile of its own: no choice a person made earlier."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)


def _wait_for(browser, script: str, seconds: float = 120):
    deadline = time.time() + seconds
    while not (value := browser.execute_script(script)):
        assert time.time() < deadline, f"timed out waiting for: {script}"
        time.sleep(0.5)
    return value


def _shots(browser, finished_study: Path, tmp_path: Path, name: str) -> None:
    """The screenshot, kept where the report's are (the study's report folder) and in the test's folder."""
    for folder in (tmp_path, finished_study / "report"):
        assert browser.save_screenshot(str(folder / name)) and (folder / name).stat().st_size > 10_000


@pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_mlflow_ui_opens_on_the_training_runs_in_a_fresh_browser(finished_study: Path, tmp_path: Path) -> None:
    """``mlflow ui`` in the study's working folder, then the address the run printed: the training runs,
    named for their design, with the varied axes and the results as columns (issue 27, Build 2)."""
    import mlflow

    from study.tracking.mlflow_runs import ui_link

    folder = finished_study.parents[1]  # where the study ran: mlflow.db and mlruns/ beside the spec
    assert not (folder / "mlflow.db.lock").exists()  # the store's lock lives in mlruns/ (issue 27, Found 8)
    experiment = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_experiment_by_name("smoke")
    records = [json.loads(p.read_text()) for p in (finished_study / "trials").glob("*/result.json")]
    ui = ["mlflow", "ui", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--workers", "1"]  # one: 2 cores
    with _serving(ui, folder, "/health") as base:
        browser = _fresh_chromium(tmp_path / "profile")
        try:
            browser.get(ui_link(experiment.experiment_id, base))
            names = _wait_for(
                browser,
                "const names = Array.from(document.querySelectorAll('[role=row] a'))"
                ".map(a => a.textContent).filter(t => t.includes(' | '));"
                f" return names.length >= {len(records)} ? names : null",
            )
            assert "/runs" in browser.current_url and "workflowType=machine_learning" in browser.current_url
            # every trial a row of its own, named for its design and label fraction (not folded under the study's run)
            expected = {
                ("supervised" if r["task"] == "none" else f"{r['task']} K64 random")
                + f" | {r['label_fraction'] * 100:g} % | tiny-mri"
                for r in records
            }
            assert expected <= set(names), (expected, names)
            headers = browser.execute_script(
                "return Array.from(document.querySelectorAll('[role=columnheader]')).map(h => h.textContent.trim())"
            )
            for column in ("dice", "val_loss", "task", "label_fraction"):  # the axes the study varies, the results
                assert column in headers, headers
            assert "Traces" not in browser.execute_script(
                "return document.querySelector('h2, h1') ? document.querySelector('h2, h1').textContent : ''"
            )
            _shots(browser, finished_study, tmp_path, "mlflow_ui.png")
        finally:
            browser.quit()


@pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_the_optuna_dashboard_agrees_with_the_report(finished_study: Path, tmp_path: Path) -> None:
    """``optuna-dashboard sqlite:///studies/smoke/optuna.db``: a study per data set and label fraction,
    the objective named, no label_fraction parameter, the timeline drawn (issue 27, Build 3)."""
    import optuna

    storage = f"sqlite:///{finished_study / 'optuna.db'}"
    with _serving(["optuna-dashboard", storage, "--host", "127.0.0.1"], finished_study, "/api/studies") as base:
        browser = _fresh_chromium(tmp_path / "profile")
        try:
            browser.get(f"{base}/dashboard")
            listed = _wait_for(
                browser, "return document.body.innerText.includes('labels') ? document.body.innerText : null"
            )
            assert "smoke/tiny-mri 50 % labels" in listed and "smoke/tiny-mri 100 % labels" in listed
            half = optuna.load_study(study_name="smoke/tiny-mri 50 % labels", storage=storage)
            browser.get(f"{base}/dashboard/studies/{half._study_id}")
            points = _wait_for(browser, "return document.querySelectorAll('#graph-timeline .point').length")
            assert points == 3  # the baseline and two pretext tasks, each from its start to its end
            text = browser.execute_script("return document.body.innerText")
            assert "validation loss" in text and "Objective 0" not in text
            assert "label_fraction" not in text and "task" in text  # the only axis the study varies
            assert '\\"' not in text  # attributes read as written, not as escaped JSON
            _shots(browser, finished_study, tmp_path, "optuna_dashboard.png")
        finally:
            browser.quit()
