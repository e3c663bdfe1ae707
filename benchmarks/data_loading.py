"""Slices per second delivered to a training loop at 512 x 512, from a trial's cache and from lazy h5
reads with 0 and 2 DataLoader workers, side by side in one run; and the memory a reader holds.

Every source is the platform's own ``study.train._data.train_batches`` (batch 9, shuffled, seeded),
as a fine-tuning reads it (images and float32 masks) and as a pretraining does (images only). The
cache here is a CPU's: on CUDA the masks cross the bus as bits and are unpacked on the GPU, so the
host's share is the images-only row plus a gather of 32 KiB of bits a slice. Rounds alternate the
sources so that load on a shared machine hits them alike; the median round is reported. Then the
resident memory of one and of two concurrent reader processes, lazy vs cached.

    python benchmarks/data_loading.py [--slices 320] [--rounds 5] [--passes 3] [--out DIR]

The last line printed is JSON: ``cached_slices_per_s`` is the cache's rate in the images-only form
(a pretraining's, and the host's share of a CUDA trial's); ``..._with_masks_...`` the fine-tuning form.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.data import DatasetWriter, Split, open_dataset  # noqa: E402
from study.train import TrainSettings  # noqa: E402
from study.train._data import train_batches  # noqa: E402

SIZE, BATCH, SLICES_PER_SCAN = 512, 9, 40
SOURCES = {"cached": {"cache_gb": 64.0}, "h5": {"num_workers": 0}, "h5_2_workers": {"num_workers": 2}}


def make_dataset(out: Path, n_slices: int) -> Path:
    rng = np.random.default_rng(0)
    n_scans = n_slices // SLICES_PER_SCAN
    with DatasetWriter(out, "bench", "mri", ("a", "b", "c", "d"), 1, {}) as w:
        for i in range(n_scans):
            image = rng.standard_normal((SLICES_PER_SCAN, 1, SIZE, SIZE), dtype=np.float32)
            labels = rng.integers(0, 5, (SLICES_PER_SCAN, SIZE, SIZE), dtype=np.uint8)
            w.add_scan(f"s{i:03d}", f"s{i:03d}", image, labels, {}, (0.8, 0.3, 0.3))
        ids = tuple(f"s{i:03d}" for i in range(n_scans))
        return w.finish(Split(train=ids[:-2], val=ids[-2:-1], test=ids[-1:]))


def batches(root: Path, source: str, with_masks: bool):
    """The batches a trial's loop iterates, and the seconds it took to make them (the cache's fill)."""
    dataset = open_dataset(root)
    start = time.perf_counter()
    made = train_batches(
        dataset,
        dataset.split.train,
        TrainSettings(batch_size=BATCH, **SOURCES[source]),
        torch.Generator().manual_seed(0),
        with_masks=with_masks,
    )
    assert made.source == ("host" if source == "cached" else "lazy"), made.source
    return made, time.perf_counter() - start


def slices_per_second(epochs, passes: int = 1) -> float:
    n, start = 0, time.perf_counter()
    for _ in range(passes):
        for batch in epochs:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def _reader(root: str, source: str, ready: mp.Queue, go: mp.Event) -> None:
    data = None  # idle: the interpreter, torch and h5py alone, the floor of every reader
    if source != "idle":
        data, _ = batches(Path(root), source, with_masks=True)
        slices_per_second(data)
    ready.put(psutil.Process().memory_info().rss)  # measured while the reader still holds its data
    go.wait()  # stay alive so concurrent readers overlap
    del data


def resident_mb(root: Path, source: str, n_readers: int) -> float:
    ctx = mp.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_reader, args=(str(root), source, ready, go)) for _ in range(n_readers)]
    for p in procs:
        p.start()
    total = sum(ready.get(timeout=600) for _ in procs)
    go.set()
    for p in procs:
        p.join()
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3, help="epochs over the data per timed round")
    parser.add_argument("--sources", default=",".join(SOURCES), help="a subset of " + ",".join(SOURCES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sources = args.sources.split(",")
    torch.set_num_threads(1)
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        root = make_dataset(Path(tmp) / "bench", args.slices)
        for with_masks in (False, True):
            form = "_with_masks" if with_masks else ""
            loaders = {}
            for source in sources:
                loaders[source], fill = batches(root, source, with_masks)
                slices_per_second(loaders[source])  # warm: the page cache, the workers, the allocator
                if source == "cached":
                    rates[f"cache_fill{form}_s"] = fill
            rounds = {s: [] for s in sources}
            for _ in range(args.rounds):
                for source, loader in loaders.items():
                    rounds[source].append(slices_per_second(loader, args.passes))
            for source in sources:
                rates[f"{source}{form}_slices_per_s"] = float(np.median(rounds[source]))
            del loaders
        kinds = ["idle"] + [k for k in ("h5", "cached") if k in sources]
        memory = {f"{kind}_{n}_readers_mb": resident_mb(root, kind, n) for kind in kinds for n in (1, 2)}
        dataset = open_dataset(root)
        n_train = sum(dataset.scans[s].n_slices for s in dataset.split.train)
        dataset.close()
    gb = n_train * SIZE * SIZE * 4 / 2**30
    print(
        f"data set: {n_train} training slices at {SIZE}x{SIZE} ({gb:.2f} GiB of images), batch {BATCH}; "
        f"{args.rounds} rounds of {args.passes} epochs each, median; {psutil.cpu_count()} CPUs, load average "
        f"{psutil.getloadavg()[0]:.1f}"
    )
    print(f"{'slices/s to the loop':28s} {'images only':>12s} {'images + masks':>15s}")
    for source in sources:
        print(
            f"{source:28s} {rates[f'{source}_slices_per_s']:12.1f} {rates[f'{source}_with_masks_slices_per_s']:15.1f}"
        )
    if "cached" in sources:
        print(
            f"cache fill (read once per trial): {rates['cache_fill_s']:.2f} s images only, "
            f"{rates['cache_fill_with_masks_s']:.2f} s with masks"
        )
    for key, mb in memory.items():
        print(f"{key:24s} {mb:8.0f} MB resident in total")
    result = {
        "slices": n_train,
        "size": SIZE,
        "batch": BATCH,
        "rounds": args.rounds,
        "passes": args.passes,
        **{k: round(v, 2 if k.endswith("_s") and "per" not in k else 1) for k, v in rates.items()},
        **{
            f"{a}_over_{b}{form}": round(rates[f"{a}{form}_slices_per_s"] / rates[f"{b}{form}_slices_per_s"], 2)
            for a, b in (("cached", "h5"), ("cached", "h5_2_workers"))
            for form in ("", "_with_masks")
            if a in sources and b in sources
        },
        "load_average_1min": round(psutil.getloadavg()[0], 1),
        **{k: round(v, 1) for k, v in memory.items()},
        # Memory a reader adds over an idle process that imported the same libraries.
        **{
            f"{kind}_data_mb_per_reader": round((memory[f"{kind}_2_readers_mb"] - memory["idle_2_readers_mb"]) / 2, 1)
            for kind in kinds[1:]
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
