"""``python -m study.analyze STUDY``: rank pretraining strategies against the supervised baseline.

    python -m study.analyze pretext                         # the study folder studies/pretext
    python -m study.analyze search_spaces/pretext.yaml      # the study that spec names, in its storage
    python -m study.analyze pretext --storage /shared/studies --pairing pooled
    python -m study.analyze studies/pretext --fractions 0.05,0.25 --top-k 3 --no-mlflow
    python -m study.analyze pretext --metric nsd            # rank by the boundary metric (or hd95: lower is better)

Reads the study's plan and every finished trial's record and per-case table, prints the
ranking per data set, writes CSV and JSON files to ``<study>/analysis/`` (``analysis/nsd/`` or
``analysis/hd95/`` for another ``--metric``; or ``--out``) and logs them to the study's parent
MLflow run. What each column means: ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study._cli import ArgumentParser, run_main
from study._suggest import did_you_mean
from study.analysis import PAIRINGS, Analysis, AnalysisSettings, analyze, format_ranking
from study.analysis._settings import AGGREGATES, CORRECTIONS, METRICS
from study.design import axes as design_axes
from study.errors import DataError, SpecError
from study.folder.records import TrialRecord
from study.folder.store import StudyStore

# Design columns copied from the trial's record onto every row of the trial's per-case table; the table's
# own "dataset" is the data set's name (e.g. phantom-mri), the study's is the spec's key (mri).
DESIGN = ("dataset", "label_fraction", "strategy", *(a.flat for a in design_axes.AXES), "val_loss")


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.analyze", doc=__doc__)
    p.add_argument(
        "study",
        help="a study folder, a study's spec file (found in the spec's storage), or a study name under --storage",
    )
    p.add_argument("--storage", help="the folder of study folders a name is looked up in (default ./studies)")
    p.add_argument("--fractions", help="label fractions to pool, e.g. 0.05,0.25 (default: 50/25/10/5 %% present)")
    p.add_argument(
        "--top-k",
        type=int,
        help="P(top-k) describes how often each strategy ranks in the top k under resampling (default: the spec's, 3)",
    )
    p.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default="dice",
        help="the per-case metric ranked: dice (default), nsd (normalised surface distance at each class's "
        "tolerance) or hd95 (mm, lower is better: ranked by its reduction against the baseline); the same "
        "pairing, corrections and verdict",
    )
    p.add_argument(
        "--rope",
        type=float,
        help="region of practical equivalence in the metric's unit: P(better / "
        "within +-rope / worse) beside every p (default: the spec's, 0.01 Dice or NSD, 1 mm HD95)",
    )
    p.add_argument("--baseline", default="supervised", help="the strategy every other is tested against")
    p.add_argument(
        "--pairing",
        choices=PAIRINGS,
        help="per_case: one pair per case, averaged over fractions and seeds; "
        "pooled: the paper's pairs per case and fraction (default: the spec's analysis.pairing, per_case)",
    )
    p.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default="holm",
        help="the correction a strategy must pass to beat the baseline (default holm)",
    )
    p.add_argument(
        "--include-stale",
        action="store_true",
        help="also analyse (and list) finished trials from earlier plans of the study",
    )
    p.add_argument(
        "--aggregate",
        default="auto",
        choices=AGGREGATES,
        help="unit of the pairs: auto (patients when test cases are slices of fewer patients), case or patient",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--out", type=Path, help="output folder (default <study>/analysis)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the files to the study's MLflow run")
    return p


def find_study(name: str, storage: str | Path | None = None) -> StudyStore:
    """The study a command names: a study folder, a spec file (its ``storage`` and ``name``, as
    ``study.run`` resolves them), or a name under ``storage`` (default ``./studies``);
    :class:`DataError` naming every place looked when none holds a study."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from study.design.spec_loading import load_spec

        folders = [load_spec(path).storage_dir()]
    else:
        folders = [path, Path(storage or "studies") / name]
    for folder in folders:
        if StudyStore(folder).exists():
            return StudyStore(folder)
    looked = " nor ".join(str(f) for f in folders)
    root = Path(storage or "studies")
    known = sorted(p.name for p in root.iterdir() if StudyStore(p).exists()) if root.is_dir() else []
    raise DataError(
        f"study {name!r} not found: {'neither ' if len(folders) > 1 else ''}{looked} holds a study's plan"
        + did_you_mean(path.name, known)
        + ("" if storage else " (a study elsewhere: --storage DIR, or give its spec file)")
    )


@dataclass
class LoadedStudy:
    """A study's state, the per-case table of the trials analysed, notes, and what was left out
    (reason -> trial count; ``stale`` names trials of an earlier plan)."""

    state: dict
    table: pd.DataFrame
    notes: list[str]
    left_out: dict[str, int] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    stopped: list[TrialRecord] = field(default_factory=list)  # statistical early stopping


def _plan_seeds(state: dict) -> dict[str, int]:
    """Trial id -> seed of the plan's entries (ids as ``study.design.plan`` computes them), for records
    written before records carried their own seed."""
    from study.design.plan import TrialPoint

    out = {}
    for entry in state.get("trials") or []:
        try:
            out[TrialPoint.from_json(entry).id] = int(entry["seed"])
        except (TypeError, KeyError, ValueError, AttributeError):
            continue  # an entry this version cannot rebuild: its trial has no known seed
    return out


def plan_trial_ids(state: dict, store: StudyStore) -> set[str] | None:
    """The ids of the trials the study's current plan holds (a grid's points, a sampled search's
    draws); None for a study written before plans were recorded by id."""
    ids = state.get("trial_ids")
    if ids is None:
        return None
    return set(ids) | {d["trial_id"] for d in store.draws()}


def load_study(store: StudyStore | Path, include_stale: bool = False) -> LoadedStudy:
    """Every finished trial of the study's current plan, with its design columns from its record.

    Trials of an earlier plan (another seed, learning rate or scale; a narrowed grid) are left out
    and counted, or analysed with ``include_stale`` when their record names their seed: a seed is
    never made up.
    """
    store = store if isinstance(store, StudyStore) else StudyStore(store)
    state = store.read_state()
    if state is None:
        raise DataError(f"{store.state_path}: missing or cannot be read as JSON")
    if not store.trials_dir.is_dir():
        raise DataError(f"{store.trials_dir} does not exist: the study has not run any trial")
    planned = plan_trial_ids(state, store)
    plan_seeds = _plan_seeds(state)
    parts, keys, pending, failed, stale, unseeded, stopped = [], [], 0, [], [], 0, []
    for trial_id in store.trial_ids():
        result = store.trial_result(trial_id)
        if result is None:
            pending += 1
            continue
        if planned is not None and trial_id not in planned:
            stale.append(trial_id)
            if not include_stale:
                continue
        if result.stopped:
            stopped.append(result)
            continue
        if not result.finished:
            failed.append(trial_id)
            continue
        seed = result.seed if result.seed is not None else plan_seeds.get(trial_id)
        if seed is None:
            unseeded += 1
            continue
        try:
            table = store.read_per_case(trial_id)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(
                f"{store.per_case_path(trial_id)}: cannot be read ({exc.__class__.__name__}: {exc})"
            ) from None
        missing = [c for c in ("case_id", "class", "dice") if c not in table]
        if missing:
            raise DataError(f"{store.per_case_path(trial_id)} lacks column(s) {', '.join(missing)}")
        table = table.drop(columns=[c for c in (*DESIGN, "trial_id", "seed") if c in table])
        design = {c: getattr(result, c, None) if c != "val_loss" else result.val_loss for c in DESIGN}
        parts.append(table.assign(trial_id=trial_id, seed=seed, **design))
        keys.append((result.dataset, result.unit))
    # A stopped configuration is never ranked with the finished ones, not even on the trials it finished.
    out = {(r.dataset, r.unit) for r in stopped}
    kept = [p for p, key in zip(parts, keys) if key not in out]
    dropped, parts = len(parts) - len(kept), kept
    if not parts:
        raise DataError(
            f"study {state.get('name', store.root.name)!r} has no finished trial of its current plan yet "
            f"({pending} without a result, {len(failed)} failed, {len(stale)} from an earlier plan)"
        )
    notes, left_out = [], {}
    if pending:
        notes.append(f"{pending} trial(s) have no result yet and are not analysed")
        left_out["no_result"] = pending
    if failed:
        notes.append(f"{len(failed)} trial(s) failed and are not analysed: {', '.join(failed[:5])}")
        left_out["failed"] = len(failed)
    if stale and not include_stale:
        notes.append(
            f"{len(stale)} trial(s) from an earlier plan of this study are left out (--include-stale analyses them too)"
        )
        left_out["stale"] = len(stale)
    if stopped:
        notes += stopped_notes(stopped)
        left_out["stopped"] = len(stopped) + dropped
    if unseeded:
        notes.append(f"{unseeded} trial(s) name no seed (neither their record nor the plan) and are left out")
        left_out["no_seed"] = unseeded
    return LoadedStudy(state, pd.concat(parts, ignore_index=True), notes, left_out, stale, stopped)


def stopped_notes(stopped: list[TrialRecord]) -> list[str]:
    """One line per data set and stopped configuration: the rung and the test that stopped it."""
    first: dict[tuple[str, str], TrialRecord] = {}
    for r in sorted(stopped, key=lambda r: (r.dataset, r.strategy, r.label_fraction)):
        first.setdefault((r.dataset, r.unit), r)
    return [f"{dataset}: {unit} {r.reason}; not ranked" for (dataset, unit), r in first.items()]


def write_outputs(analysis: Analysis, text: str, out: Path) -> list[Path]:
    """One CSV per table, analysis.json (summary and tables) and the terminal text."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in analysis.tables().items():
        table.to_csv(out / f"{name}.csv", index=False)
        paths.append(out / f"{name}.csv")
    (out / "analysis.json").write_text(json.dumps(analysis.to_json(), indent=1, default=str))
    (out / "summary.json").write_text(json.dumps(analysis.answer(), indent=1, default=str))
    (out / "ranking.txt").write_text(text + "\n")
    return [*paths, out / "analysis.json", out / "summary.json", out / "ranking.txt"]


def log_to_mlflow(state: dict, paths: list[Path], artifact_path: str = "analysis") -> str | None:
    """Log ``paths`` under ``analysis/`` (``artifact_path``) of the study's parent run; the reason when it cannot."""
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
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    except Exception as exc:  # noqa: BLE001 - any store failure leaves the files on disk, never the analysis
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def spec_settings(
    state: dict, *, pairing: str | None, top_k: int | None, rope: float | None = None, metric: str = "dice"
) -> dict:
    """Pairing, top k and rope as given on the command line, else as the spec's ``analysis`` section
    says (for HD95 the rope is ``rope_mm``, 1 mm), and the metric ranked."""
    spec = (state.get("spec") or {}).get("analysis") or {}
    defaults = AnalysisSettings()
    if rope is None:
        rope = spec.get("rope_mm", 1.0) if metric == "hd95" else spec.get("rope", defaults.rope)
    return {
        "pairing": pairing or spec.get("pairing", defaults.pairing),
        "top_k": top_k if top_k is not None else spec.get("top_k", defaults.top_k),
        "rope": rope,
        "metric": metric,
    }


def _fractions(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SpecError(f"--fractions {text!r} must be numbers separated by commas, e.g. 0.05,0.25") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = find_study(args.study, args.storage)
    loaded = load_study(store, include_stale=args.include_stale)
    state = loaded.state
    settings = AnalysisSettings(
        fractions=_fractions(args.fractions),
        baseline=args.baseline,
        aggregate=args.aggregate,
        n_boot=args.n_boot,
        seed=args.seed,
        correction=args.correction,
        **spec_settings(state, pairing=args.pairing, top_k=args.top_k, rope=args.rope, metric=args.metric),
    )
    analysis = analyze(loaded.table, settings)
    analysis.notes[:0] = loaded.notes
    analysis.trials_left_out.update(loaded.left_out)
    if args.include_stale and loaded.stale:
        print(f"{len(loaded.stale)} trial(s) from earlier plans analysed too: {', '.join(loaded.stale)}\n")
    text = format_ranking(analysis)
    print(text)
    # Another metric's files sit beside Dice's (analysis/nsd/), which the report and study.predict read.
    where = "analysis" if args.metric == "dice" else f"analysis/{args.metric}"
    out = args.out or (store.analysis_dir if args.metric == "dice" else store.analysis_dir / args.metric)
    paths = write_outputs(analysis, text, out)
    print(f"\nwrote {len(paths)} files to {out}")
    if not args.no_mlflow:
        reason = log_to_mlflow(state, paths, where)
        if reason:
            print(f"warning: not logged to MLflow ({reason}); the files are in {out}", file=sys.stderr)
        else:
            print(f"logged to MLflow run {state['parent_run_id']} under {where}/")
    return 0


if __name__ == "__main__":
    run_main(main)
