"""Slices per second delivered to a training loop, and reader memory, at 512 x 512.

Compares the platform's lazy h5 reading (SliceDataset + DataLoader, batch 9, shuffled) with the same
loop over an in-memory numpy array, side by side in one run; then measures the resident memory of
one and of two concurrent reader processes of the same data set, lazy vs in-memory.

    python benchmarks/data_loading.py [--slices 320] [--out DIR]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader

from study.data import DatasetWriter, SliceDataset, Split, open_dataset  # noqa: E402

SIZE, BATCH, SLICES_PER_SCAN = 512, 9, 40


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


class InMemory(torch.utils.data.Dataset):
    """The baseline: every slice and mask already in RAM, as a trial holding a copy would have."""

    def __init__(self, root: Path) -> None:
        ds = open_dataset(root)
        ids = ds.split.train
        self.images = np.concatenate([ds.read_image(s) for s in ids])
        self.masks = np.concatenate([ds.read_masks(s) for s in ids])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.images[i]), "mask": torch.from_numpy(self.masks[i].astype(np.float32))}


def lazy(root: Path) -> SliceDataset:
    ds = open_dataset(root)
    return SliceDataset(ds, ds.split.train)


def slices_per_second(dataset: torch.utils.data.Dataset, epochs: int = 1) -> float:
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def _reader(root: str, kind: str, ready: mp.Queue, go: mp.Event) -> None:
    data = None  # idle: the interpreter, torch and h5py alone, the floor of every reader
    if kind != "idle":
        data = InMemory(Path(root)) if kind == "memory" else lazy(Path(root))
        slices_per_second(data)
    ready.put(psutil.Process().memory_info().rss)  # measured while the reader still holds its data
    go.wait()  # stay alive so concurrent readers overlap
    del data


def resident_mb(root: Path, kind: str, n_readers: int) -> float:
    ctx = mp.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_reader, args=(str(root), kind, ready, go)) for _ in range(n_readers)]
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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        root = make_dataset(Path(tmp) / "bench", args.slices)
        h5_data, mem_data = lazy(root), InMemory(root)
        slices_per_second(h5_data)  # warm the page cache: both then read from RAM
        rounds = [(slices_per_second(h5_data), slices_per_second(mem_data)) for _ in range(3)]
        h5_rate = float(np.median([r[0] for r in rounds]))
        mem_rate = float(np.median([r[1] for r in rounds]))
        del mem_data
        memory = {f"{kind}_{n}_readers_mb": resident_mb(root, kind, n) for kind in ("idle", "h5", "memory") for n in (1, 2)}
    gb = len(h5_data) * SIZE * SIZE * 4 / 2**30
    print(f"data set: {len(h5_data)} training slices at {SIZE}x{SIZE} ({gb:.2f} GiB of images), batch {BATCH}")
    print(f"h5 lazy:   {h5_rate:8.1f} slices/s")
    print(f"in memory: {mem_rate:8.1f} slices/s   (h5 / memory = {h5_rate / mem_rate:.2f})")
    for key, mb in memory.items():
        print(f"{key:24s} {mb:8.0f} MB resident in total")
    result = {
        "slices": len(h5_data), "size": SIZE, "batch": BATCH,
        "h5_slices_per_s": round(h5_rate, 1), "memory_slices_per_s": round(mem_rate, 1),
        "h5_over_memory": round(h5_rate / mem_rate, 3),
        **{k: round(v, 1) for k, v in memory.items()},
        # Memory a reader adds over an idle process that imported the same libraries.
        "h5_data_mb_per_reader": round((memory["h5_2_readers_mb"] - memory["idle_2_readers_mb"]) / 2, 1),
        "memory_data_mb_per_reader": round((memory["memory_2_readers_mb"] - memory["idle_2_readers_mb"]) / 2, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
