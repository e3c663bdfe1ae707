"""The README main study twice, side by side in one run: the full grid and the same grid with pruning.

Both runs use the same spec (``search_spaces/pretext.yaml`` unless given) and seeds; the pruned run
starts from a copy of the full run's pretrainings (they are the same keys), so the fine-tuning is
what differs. Reports fine-tuning compute (optimiser steps x batch), wall time, and how far the
answers agree: per data set the top-3 overlap of the final rankings, whether the strategies that
beat the baseline at the corrected level among the pruned run's survivors are the same, and the
best set each verdict names (the strategies no other is shown better than) at each label fraction.

It also gives the least compute any pruning could spend and still name the full grid's best sets:
pruning stops a configuration on every trial of a data set, so each strategy in a best set of the
full grid (at any label fraction) must run to the end, and so must the baseline; the rest cost
nothing at best (``floor``), or their share up to the first rung (``floor_at_rung``).

    python benchmarks/pruning.py [--space search_spaces/pretext.yaml] [--out DIR] [--set KEY=VALUE ...]
    python benchmarks/pruning.py --summarize DIR    # the figures of two runs already in DIR

The last line printed is JSON: compute_ratio, wall_ratio, per data set top3_overlap,
same_beats_baseline and its own compute ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from study.constants import SUPERVISED

REPO = Path(__file__).resolve().parents[1]


def run_study(space: Path, folder: Path, extra: list[str]) -> float:
    sets = [f"storage={folder / 'studies'}", f"tracking_uri=sqlite:///{folder / 'mlflow.db'}", *extra]
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "study.run", str(space), *(a for s in sets for a in ("--set", s))],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    seconds = time.time() - started
    tail = "\n".join(done.stdout.splitlines()[-12:])
    print(f"--- {folder.name}: exit {done.returncode}, {seconds / 60:.1f} min\n{tail}", flush=True)
    if done.returncode not in (0, 3):
        sys.exit(done.stderr[-3000:])
    return seconds


def summary(study: Path) -> tuple[dict, dict, dict[str, float], float, dict[str, dict[str, float]]]:
    """(summary.json of the analysis, ranking per data set, fine-tuning images per data set,
    seconds of every ended trial, and fine-tuning images per data set and strategy)."""
    import pandas as pd

    from study.folder.store import StudyStore

    done = subprocess.run(
        [sys.executable, "-m", "study.analyze", str(study), "--no-mlflow"], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(done.stderr)
    answer = json.loads((study / "analysis" / "summary.json").read_text())
    ranking = pd.read_csv(study / "analysis" / "ranking.csv")
    ranks = {str(ds): frame.sort_values("rank") for ds, frame in ranking.groupby("dataset")}
    results = StudyStore(study).results()
    by_strategy: dict[str, dict[str, float]] = {}
    for r in results:
        mine = by_strategy.setdefault(r.dataset, {})
        mine[r.strategy] = mine.get(r.strategy, 0.0) + float(r.metrics.get("finetune_images", 0) or 0)
    images = {ds: sum(mine.values()) for ds, mine in by_strategy.items()}
    return answer, ranks, images, sum(r.seconds or 0 for r in results), by_strategy


def compute_floor(best_sets: dict[str, list[str]], images: dict[str, float], rung: float) -> tuple[float, float]:
    """The least fine-tuning images of one data set that keep ``best_sets`` (the full grid's, per
    label fraction): every strategy not in one stopped at no cost, or at the first ``rung``."""
    kept = set().union(*best_sets.values()) if best_sets else set()
    stoppable = sum(n for s, n in images.items() if s not in kept and s != SUPERVISED)
    total = sum(images.values())
    return (total - stoppable) / total, (total - (1 - rung) * stoppable) / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", type=Path, default=REPO / "search_spaces" / "pretext.yaml")
    p.add_argument("--out", type=Path, help="keep both study folders here (default: a temporary folder)")
    p.add_argument("--set", dest="extra", action="append", default=[], help="an override for both runs")
    p.add_argument(
        "--summarize", type=Path, metavar="DIR", help="only summarise the two runs an earlier --out DIR kept"
    )
    args = p.parse_args()
    root = args.summarize or args.out or Path(tempfile.mkdtemp(prefix="pruning-bench-"))
    full, pruned = root / "full", root / "pruned"
    name = args.space.stem
    if args.summarize:
        full_s, pruned_s = (json.loads((root / "wall.json").read_text())[k] for k in ("full", "pruned"))
    else:
        for folder in (full, pruned):
            folder.mkdir(parents=True, exist_ok=True)
        full_s = run_study(args.space.resolve(), full, [*args.extra, "pruning.enabled=false"])
        shutil.copytree(
            full / "studies" / name / "pretrain", pruned / "studies" / name / "pretrain", dirs_exist_ok=True
        )
        pruned_s = run_study(args.space.resolve(), pruned, [*args.extra, "pruning.enabled=true"])
        (root / "wall.json").write_text(json.dumps({"full": full_s, "pruned": pruned_s}))

    full_answer, full_ranks, full_images, full_trial_s, full_by_strategy = summary(full / "studies" / name)
    pruned_answer, pruned_ranks, pruned_images, pruned_trial_s, _ = summary(pruned / "studies" / name)
    rung = min(json.loads((pruned / "studies" / name / "study.json").read_text())["spec"]["pruning"]["rungs"])
    per_dataset = {}
    for ds, ranking in full_ranks.items():
        survivors = set(pruned_ranks[ds]["strategy"]) if ds in pruned_ranks else set()
        full_beats = set(full_answer["datasets"][ds]["beats_baseline"]) & survivors
        pruned_beats = set(pruned_answer["datasets"].get(ds, {}).get("beats_baseline", []))
        top_full = list(ranking["strategy"][:3])
        top_pruned = list(pruned_ranks[ds]["strategy"][:3]) if ds in pruned_ranks else []
        best = {
            run: {f: v["best_set"] for f, v in answer["datasets"].get(ds, {}).get("by_fraction", {}).items()}
            for run, answer in (("full", full_answer), ("pruned", pruned_answer))
        }
        floor, floor_at_rung = compute_floor(best["full"], full_by_strategy[ds], rung)
        per_dataset[ds] = {
            "top3_full": top_full,
            "top3_pruned": top_pruned,
            "best_set_full": best["full"],
            "best_set_pruned": best["pruned"],
            "same_best_set": best["full"] == best["pruned"],
            "top3_overlap": len(set(top_full) & set(top_pruned)),
            "same_beats_baseline": full_beats == pruned_beats,
            "beats_full": sorted(full_answer["datasets"][ds]["beats_baseline"]),
            "beats_pruned": sorted(pruned_beats),
            "ranked_full": len(ranking),
            "ranked_pruned": len(survivors),
            "compute_ratio": round(pruned_images.get(ds, 0) / full_images[ds], 3) if full_images.get(ds) else None,
            "floor": round(floor, 3),
            "floor_at_rung": round(floor_at_rung, 3),
        }
        print(
            f"{ds}: top 3 full {top_full}, pruned {top_pruned}; beat the baseline: full "
            f"{per_dataset[ds]['beats_full']}, pruned {per_dataset[ds]['beats_pruned']}; best set per fraction: "
            f"full {best['full']}, pruned {best['pruned']}; the least compute that keeps the full grid's best sets: "
            f"{floor:.3f} (stops free), {floor_at_rung:.3f} (stops at the first rung, {rung:g})"
        )
    stopped = pruned_answer["left_out"].get("stopped", 0)
    floors = {
        key: sum(per_dataset[ds][key] * full_images[ds] for ds in per_dataset) / sum(full_images.values())
        for key in ("floor", "floor_at_rung")
    }
    full_images, pruned_images = sum(full_images.values()), sum(pruned_images.values())
    print(
        f"fine-tuning images: full {full_images:,.0f}, pruned {pruned_images:,.0f}; {stopped} trials stopped; "
        f"fine-tuning trial time: full {full_trial_s / 60:.1f} min, pruned {pruned_trial_s / 60:.1f} min; "
        f"wall: full {full_s / 60:.1f} min, pruned {pruned_s / 60:.1f} min (its pretrainings copied from the full run)"
    )
    print(
        json.dumps(
            {
                "compute_ratio": round(pruned_images / full_images, 3) if full_images else None,
                "compute_floor": round(floors["floor"], 3),
                "compute_floor_at_rung": round(floors["floor_at_rung"], 3),
                "wall_ratio": round(pruned_s / full_s, 3),
                "trial_time_ratio": round(pruned_trial_s / full_trial_s, 3) if full_trial_s else None,
                "stopped_trials": stopped,
                "full_minutes": round(full_s / 60, 2),
                "pruned_minutes": round(pruned_s / 60, 2),
                "datasets": per_dataset,
                "folder": str(root),
            }
        )
    )


if __name__ == "__main__":
    main()
