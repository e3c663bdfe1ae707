"""What the paper's full pretext grid costs on one GPU, derived from FLOPs (nothing is measured here).

The grid of Dominic et al. 2023: 16 strategies (2 tasks x 4 patch sizes x 2 samplers, encoder
transferred at once) x 5 label fractions x 2 data sets, plus the supervised baseline at each
fraction: 170 fine-tuning trials and 32 pretrainings, at the paper profile (batch 9, 512 x 512,
500-epoch budgets, an epoch one pass over the training set). The data are the paper's splits
(docs/science.md §1): SKM-TEA 86 / 33 / 36 volumes of 160 slices (+ 86 unlabeled), CT 709 / 133 / 44
slices (+ 7799). The counts and FLOPs are the dry run's (``study.preflight.workload``, ``study.preflight.gpu``); the
rate is a stated assumption unless ``study.preflight.gpu.MEASURED_STEP_MS`` holds a measurement for --device.

    python benchmarks/paper_cost.py [--device "NVIDIA H100 80GB HBM3"] [--epochs 100]

``--epochs`` adds the cost if every run stopped early after that many epochs. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.data import Split  # noqa: E402
from study.design.plan import make_plan  # noqa: E402
from study.design.spec_loading import load_spec  # noqa: E402
from study.preflight.gpu import rate_for, run_flops, time_lines, trial_memory  # noqa: E402
from study.preflight.workload import DataShape, runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FRACTIONS = "[0.05,0.1,0.25,0.5,1.0]"


def paper_shape(name: str, counts: tuple[int, int, int, int], slices: int, c_in: int, rounding: str) -> DataShape:
    roles = dict(zip(("train", "val", "test", "unlabeled"), counts))
    ids, start = {}, 0
    for role, n in roles.items():
        ids[role] = tuple(f"{name}{i:05d}" for i in range(start, start + n))
        start += n
    return DataShape(
        name, c_in, 4, frozenset({(512, 512)}), Split(**ids), {s: slices for v in ids.values() for s in v}, rounding
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="price on this GPU (default: the reference H100)")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    spec = load_spec(REPO / "search_spaces" / "pretext.yaml", ["scale=paper", f"label_fractions={FRACTIONS}"])
    plan = make_plan(spec)
    shapes = {
        "mri": paper_shape("mri", (86, 33, 36, 86), 160, 1, "ceil"),
        "ct": paper_shape("ct", (709, 133, 44, 7799), 1, 3, "half_even"),
    }
    all_runs = runs(plan, shapes)
    rate = rate_for(args.device)
    n_trials, n_pre = len(plan.trials), len(plan.pretrainings())
    print(
        f"the paper's pretext grid: {n_trials} trials and {n_pre} pretrainings on SKM-TEA and CT at the paper profile"
    )
    hours = {}
    for name in ("mri", "ct"):
        mine = [r for r in all_runs if r.dataset == name]
        budget = sum(run_flops(r) for r in mine) / rate.flops / 3600
        early = sum(run_flops(r, min(args.epochs, r.max_epochs)) for r in mine) / rate.flops / 3600
        images = sum(r.train_images_per_epoch for r in mine)
        hours[name] = {"budget": budget, f"at_{args.epochs}_epochs": early}
        print(
            f"  {name}: {len(mine)} runs, {images:,} training images per epoch of every run; {budget:,.0f} GPU-hours "
            f"at the 500-epoch budgets, {early:,.0f} if every run stopped after {args.epochs} epochs"
        )
    print("\n".join(time_lines(all_runs, rate)))
    memory = trial_memory(spec, all_runs)
    print(memory.describe())
    total = sum(h["budget"] for h in hours.values())
    early = sum(h[f"at_{args.epochs}_epochs"] for h in hours.values())
    print(
        json.dumps(
            {
                "benchmark": "paper_cost",
                "trials": n_trials,
                "pretrainings": n_pre,
                "rate_tflops": round(rate.flops / 1e12, 1),
                "rate_source": rate.source,
                "gpu_hours_at_budget": round(total, 1),
                f"gpu_hours_at_{args.epochs}_epochs": round(early, 1),
                "by_dataset": {k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in hours.items()},
                "gpu_memory_per_trial_gib": round(memory.total / 2**30, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
