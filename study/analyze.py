"""``python -m study.analyze STUDY``: rank pretraining strategies against the supervised baseline.

    python -m study.analyze pretext                         # the study folder studies/pretext
    python -m study.analyze studies/pretext --fractions 0.05,0.25 --top-k 3 --no-mlflow

Reads the study's plan and every finished trial's record and per-case table, prints the
ranking per data set, writes CSV and JSON files to ``<study>/analysis/`` (or ``--out``) and logs them
to the study's parent MLflow run. What each column means: ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from study._cli import ArgumentParser, run_main
from study.analysis import Analysis, AnalysisSettings, analyze, format_ranking
from study.errors import DataError, SpecError
from study.store import StudyStore

# Design columns copied from the trial's record onto every row of the trial's per-case table; the table's
# own "dataset" is the data set's name (e.g. phantom-mri), the study's is the spec's key (mri).
DESIGN = ("dataset", "label_fraction", "strategy", "task", "patch_size", "sampler", "extent", "scope", "schedule",
          "lr", "unfrozen_lr", "val_loss")


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.analyze", description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study folder or a study name under ./studies")
    p.add_argument("--fractions", help="label fractions to pool, e.g. 0.05,0.25 (default: 50/25/10/5 %% present)")
    p.add_argument("--top-k", type=int, default=3, help="the optimum is in the top k of every data set (default 3)")
    p.add_argument("--baseline", default="supervised", help="the strategy every other is tested against")
    p.add_argument("--aggregate", default="auto", help="unit of the pairs: auto (patients when test cases are slices of fewer patients), case or patient")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--out", type=Path, help="output folder (default <study>/analysis)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the files to the study's MLflow run")
    return p


def find_study(name: str) -> StudyStore:
    """The study folder ``name`` or ``studies/name``; :class:`DataError` if neither holds a study."""
    for folder in (Path(name), Path("studies") / name):
        if StudyStore(folder).exists():
            return StudyStore(folder)
    raise DataError(f"study {name!r} not found: neither {name} nor studies/{name} holds a study's plan")


def _seeds(state: dict) -> dict[str, int]:
    """Trial id -> seed, for the trials the plan lists (ids as ``study.plan`` computes them): the
    seed of records written before records carried their own."""
    entries = state.get("trials") or []
    if not entries:
        return {}
    from study.plan import TrialPoint

    out = {}
    for entry in entries:
        try:
            out[TrialPoint.from_json(entry).id] = int(entry.get("seed", 0))
        except (TypeError, KeyError, ValueError, AttributeError):
            continue  # an entry this version cannot rebuild: its trial keeps seed 0
    return out


def load_study(store: StudyStore | Path) -> tuple[dict, pd.DataFrame, list[str]]:
    """(the study's state, the per-case table of every finished trial with its design columns, notes)."""
    store = store if isinstance(store, StudyStore) else StudyStore(store)
    state = store.read_state()
    if state is None:
        raise DataError(f"{store.state_path}: missing or cannot be read as JSON")
    if not store.trials_dir.is_dir():
        raise DataError(f"{store.trials_dir} does not exist: the study has not run any trial")
    trial_ids = store.trial_ids()
    seeds = _seeds(state)
    parts, pending, failed = [], 0, []
    for trial_id in trial_ids:
        result = store.trial_result(trial_id)
        if result is None:
            pending += 1
            continue
        if not result.finished:
            failed.append(trial_id)
            continue
        try:
            table = store.read_per_case(trial_id)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{store.per_case_path(trial_id)}: cannot be read ({exc.__class__.__name__}: {exc})") from None
        missing = [c for c in ("case_id", "class", "dice") if c not in table]
        if missing:
            raise DataError(f"{store.per_case_path(trial_id)} lacks column(s) {', '.join(missing)}")
        table = table.drop(columns=[c for c in (*DESIGN, "trial_id", "seed") if c in table])
        design = {c: getattr(result, c, None) if c != "val_loss" else result.val_loss for c in DESIGN}
        seed = result.seed if result.seed is not None else seeds.get(trial_id, 0)
        parts.append(table.assign(trial_id=trial_id, seed=seed, **design))
    if not parts:
        raise DataError(f"study {state.get('name', store.root.name)!r} has no finished trial yet "
                        f"({pending} without a result, {len(failed)} failed)")
    notes = []
    if pending:
        notes.append(f"{pending} trial(s) have no result yet and are not analysed")
    if failed:
        notes.append(f"{len(failed)} trial(s) failed and are not analysed: {', '.join(failed[:5])}")
    return state, pd.concat(parts, ignore_index=True), notes


def write_outputs(analysis: Analysis, text: str, out: Path) -> list[Path]:
    """One CSV per table, analysis.json (summary and tables) and the terminal text."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in analysis.tables().items():
        table.to_csv(out / f"{name}.csv", index=False)
        paths.append(out / f"{name}.csv")
    (out / "analysis.json").write_text(json.dumps(analysis.to_json(), indent=1, default=str))
    (out / "ranking.txt").write_text(text + "\n")
    return [*paths, out / "analysis.json", out / "ranking.txt"]


def log_to_mlflow(state: dict, paths: list[Path]) -> str | None:
    """Log ``paths`` under ``analysis/`` of the study's parent run; the reason when it cannot."""
    uri, run_id = state.get("tracking_uri"), state.get("parent_run_id")
    if not uri or not run_id:
        return "the study names no MLflow parent run"
    if "***" in uri:
        return "the study's tracking URI has its password redacted; log with the real one"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return f"the MLflow database {uri.removeprefix('sqlite:///')} does not exist"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an unreachable server: fail fast
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path="analysis")
    except Exception as exc:  # noqa: BLE001 - any store failure leaves the files on disk, never the analysis
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _fractions(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SpecError(f"--fractions {text!r} must be numbers separated by commas, e.g. 0.05,0.25") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = AnalysisSettings(fractions=_fractions(args.fractions), top_k=args.top_k, baseline=args.baseline,
                                aggregate=args.aggregate, n_boot=args.n_boot, seed=args.seed)
    store = find_study(args.study)
    state, table, notes = load_study(store)
    analysis = analyze(table, settings)
    analysis.notes[:0] = notes
    text = format_ranking(analysis)
    print(text)
    out = args.out or store.analysis_dir
    paths = write_outputs(analysis, text, out)
    print(f"\nwrote {len(paths)} files to {out}")
    if not args.no_mlflow:
        reason = log_to_mlflow(state, paths)
        if reason:
            print(f"warning: not logged to MLflow ({reason}); the files are in {out}", file=sys.stderr)
        else:
            print(f"logged to MLflow run {state['parent_run_id']} under analysis/")
    return 0


if __name__ == "__main__":
    run_main(main)
