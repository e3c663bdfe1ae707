"""What NSD and HD95 add to a trial's test evaluation (issue 28), on the laptop phantoms' test sets.

Times ``study.train.evaluate_segmentation`` over the test split of each built-in phantom at the
laptop scale (MRI: 32 volumes of 4 slices at 64 x 64; CT: single 64 x 64 slices), one thread, the
laptop U-Net, with the boundary metrics and without (``boundary=False``: prediction, Dice and the
clinical metrics only), alternated ``--repeats`` times; the medians are reported. Its masks come from
an untrained network (noisy, with many boundary voxels: the dear case) and, apart, the boundary
metrics alone are timed on each case's truth against the truth shifted by one pixel (what a trained
network's masks look like). Wall and CPU seconds of this process are both kept: on a loaded machine
the CPU seconds say more. ``--paper`` also times one synthetic 160 x 512 x 512 knee-sized volume
(four thin shells at SKM-TEA's 0.8 x 0.31 x 0.31 mm voxels), the order of magnitude at paper scale.

Run: ``python benchmarks/boundary_metrics.py [--repeats 3] [--paper]``; the last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from study.data import PhantomSettings, builtin_dataset, open_dataset
from study.design.scale import Scale
from study.execution.configs import train_settings, unet_config
from study.metrics import boundary_rows
from study.model import UNet
from study.train import evaluate_segmentation


def _evaluation(kind: str, repeats: int) -> dict:
    scale = Scale()
    dataset = open_dataset(builtin_dataset(kind, PhantomSettings.default(kind, size=scale.image_size)))
    model = UNet(unet_config(scale, in_channels=dataset.in_channels, out_channels=len(dataset.class_names)), seed=0)
    settings = train_settings(scale, stage="finetune", device="cpu", seed=0)
    cases = list(dataset.split.test)
    evaluate_segmentation(model, dataset, cases[:2], settings)  # warm-up: first reads, first forward
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}  # this process's CPU seconds: less swayed by the load
    for _ in range(repeats):
        for boundary in (False, True):
            start, cpu_start = time.perf_counter(), time.process_time()
            table = evaluate_segmentation(model, dataset, cases, settings, boundary=boundary)
            times[boundary].append(time.perf_counter() - start)
            cpu[boundary].append(time.process_time() - cpu_start)
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    cpu_without, cpu_with = statistics.median(cpu[False]), statistics.median(cpu[True])
    # the boundary metrics alone on near-correct masks: each case's truth against it shifted one pixel
    masks = [np.moveaxis(dataset.read_masks(case), 1, 0) for case in cases]
    start = time.process_time()
    for case, true in zip(cases, masks):
        boundary_rows(np.roll(true, 1, axis=-1), true, dataset.class_names, dataset.scans[case].spacing_mm)
    shifted = time.process_time() - start
    return {
        "dataset": dataset.name,
        "cases": len(cases),
        "shape": list(dataset.read_image(cases[0]).shape),
        "eval_s_without": round(without, 3),
        "eval_s_with": round(with_, 3),
        "added_s": round(with_ - without, 3),
        "added_pct": round(100 * (with_ - without) / without, 1),
        "added_ms_per_case": round(1000 * (with_ - without) / len(cases), 2),
        "eval_cpu_s_without": round(cpu_without, 3),
        "eval_cpu_s_with": round(cpu_with, 3),
        "added_cpu_pct": round(100 * (cpu_with - cpu_without) / cpu_without, 1),
        "added_cpu_ms_per_case": round(1000 * (cpu_with - cpu_without) / len(cases), 2),
        "boundary_only_ms_per_case_near_correct": round(1000 * shifted / len(cases), 2),
        "nsd_mean": round(float(table["nsd"].mean()), 4),
        "runs": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
    }


def _paper_volume() -> dict:
    """Four thin shells (cartilage-like) in a 160 x 512 x 512 grid, the prediction shifted by a voxel."""
    shape, spacing = (160, 512, 512), (0.8, 0.3125, 0.3125)
    z, y, x = (np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing))
    true = np.zeros((4, *shape), bool)
    centres = [(64, 60, 80), (64, 90, 80), (64, 110, 80), (64, 90, 100)]
    for k, (cz, cy, cx) in enumerate(centres):
        r = np.sqrt((z[:, None, None] - cz) ** 2 + (y[None, :, None] - cy) ** 2 + (x[None, None, :] - cx) ** 2)
        true[k] = (r > 25 + 5 * k) & (r < 27.5 + 5 * k)  # 2.5 mm thick
    pred = np.roll(true, (1, 2), axis=(1, 3))
    start, cpu_start = time.perf_counter(), time.process_time()
    rows = boundary_rows(
        pred, true, ["femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus"], spacing
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "shape": list(shape),
        "voxels_per_class": [int(t.sum()) for t in true],
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "nsd": [round(r["nsd"], 3) for r in rows],
        "hd95_mm": [round(r["hd95"], 3) for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper", action="store_true", help="also one synthetic paper-size knee volume")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a study trial's one thread
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": 1,
        "phantoms": [_evaluation(kind, args.repeats) for kind in ("mri", "ct")],
    }
    for part in out["phantoms"]:
        print(
            f"{part['dataset']}: {part['cases']} test cases {part['shape']}: evaluation {part['eval_s_without']} s "
            f"without NSD/HD95, {part['eval_s_with']} s with (+{part['added_s']} s, +{part['added_pct']} %); CPU "
            f"{part['eval_cpu_s_without']} s -> {part['eval_cpu_s_with']} s (+{part['added_cpu_pct']} %, "
            f"{part['added_cpu_ms_per_case']} ms per case; near-correct masks "
            f"{part['boundary_only_ms_per_case_near_correct']} ms CPU per case)"
        )
    if args.paper:
        out["paper_volume"] = _paper_volume()
        print(
            f"paper-size volume {out['paper_volume']['shape']}: NSD and HD95 of 4 classes in "
            f"{out['paper_volume']['seconds']} s ({out['paper_volume']['cpu_seconds']} s CPU)"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
