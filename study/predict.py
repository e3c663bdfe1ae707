"""``python -m study.predict STUDY --images DIR --out DIR``: a study's strategy segments new volumes.

    python -m study.predict pretext --images scans/ --out labels/             # the analysis's optimum
    python -m study.predict pretext --images scans/ --out labels/ --strategy supervised --fraction 1
    python -m study.predict search_spaces/pretext.yaml --images scans/ --out labels/ --dataset ct

Reads every ``.nii``/``.nii.gz`` volume in ``--images`` and writes one label map per volume, of the
same file name, to ``--out`` (a new folder): the input's affine and header, the data type set to
integers, voxel values the label values the classes were declared with at import (the first of
several merged values; 1..K for a data set not imported from NIfTI), 0 for background.

Which weights: the fine-tuned weights a finished trial kept (``keep_weights: best``) of the strategy
``--strategy`` names, else of the analysis's optimum (``analysis/summary.json``, or the analysis run
now when there is none), refused, naming the strategies, when there is no optimum. Among that
strategy's trials of the data set: ``--fraction`` (default the largest label fraction it was trained
at), ``--seed`` (default the spec's first), and of trials that differ in learning rate only the one
with the lowest validation loss, as the analysis selects them.

A volume is read as the import read the data set's volumes: slices along the slice axis it recorded,
the same preprocessing (MRI: z-scored over the volume; CT: the data set's HU windows, z-scored per
slice), padded to the U-Net's multiple and cropped back. Refused in one line (exit status 2, nothing
written): a study without kept weights, an input that is not a data set's modality (MRI magnitudes
have no values below -500; a CT in HU does, as air) or channel count (a 4-D volume of several
channels), a volume of another orientation (axis codes of its affine) or dimensionality than the
import's, and an output folder that exists and is not empty. The network runs on the GPU when there
is one (``--device cpu`` to keep it off).

The network scores each class on its own (a sigmoid per class), and so does the evaluation: a voxel
two classes claim goes to the class of the higher logit in the label map, which cannot hold both,
and the count of such voxels is printed. ``--masks`` also writes each class's own mask, the very
masks the per-case table's Dice, NSD and HD95 are computed from.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study._cli import ArgumentParser, run_main
from study._suggest import did_you_mean
from study.errors import DataError, SpecError
from study.execution.configs import train_settings, unet_config

MRI_MIN_VALUE = -500.0  # below this a voxel is HU (air is -1000), not an MRI magnitude
CT_NEEDS_BELOW = -100.0  # a CT slice in HU holds fat (about -100) or air; MRI magnitudes never do


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.predict", doc=__doc__)
    p.add_argument("study", help="a study folder, a study's spec file, or a study name under --storage")
    p.add_argument("--images", type=Path, required=True, help="folder of .nii / .nii.gz volumes to segment")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the label maps (never overwritten)")
    p.add_argument("--strategy", help="the strategy whose weights segment (default: the analysis's optimum)")
    p.add_argument("--fraction", type=float, help="its label fraction (default: the largest it was trained at)")
    p.add_argument("--seed", type=int, help="its seed (default: the spec's first)")
    p.add_argument("--dataset", help="the study's data set (its key in the spec), where it has several")
    p.add_argument("--storage", help="the folder of study folders a name is looked up in (default ./studies)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when a GPU is available, else cpu")
    p.add_argument(
        "--masks",
        action="store_true",
        help="also write each class's own mask, <name>_masks.nii.gz: "
        "the input's axes and one more of the classes in order, 0/1, as the evaluation scores them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@dataclass(frozen=True)
class Chosen:
    """The trial whose weights segment, and why it was chosen."""

    trial_id: str
    dataset: str
    strategy: str
    label_fraction: float
    seed: int
    why: str


def _choices(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _dataset_key(state: dict, given: str | None) -> tuple[str, str]:
    paths = state.get("data_paths") or {}
    if not paths:
        raise DataError("the study names no data set paths (data_paths): it has not run")
    if given is None:
        if len(paths) > 1:
            raise SpecError(f"the study has {len(paths)} data sets; name one with --dataset: {_choices(sorted(paths))}")
        given = next(iter(paths))
    if given not in paths:
        raise SpecError(
            f"--dataset {given!r} is not a data set of the study ({_choices(sorted(paths))})"
            + did_you_mean(given, sorted(paths))
        )
    return given, str(paths[given])


def _optimum(store, state: dict) -> tuple[list[str], str]:
    """The analysis's optimum and where it comes from: ``analysis/summary.json``, or the analysis run now."""
    import json

    summary = store.analysis_dir / "summary.json"
    if summary.is_file():
        try:
            return list(json.loads(summary.read_text()).get("optimum") or []), f"the optimum of {summary}"
        except (OSError, ValueError, AttributeError):
            pass
    from study.analysis import AnalysisSettings, analyze
    from study.analyze import load_study, spec_settings

    try:
        loaded = load_study(store)
        analysis = analyze(loaded.table, AnalysisSettings(**spec_settings(state, pairing=None, top_k=None)))
    except DataError as exc:  # too few test cases to rank: no optimum either
        return [], f"the study's analysis names no optimum ({str(exc).rstrip('.')}), so the optimum"
    return list(analysis.optimum), "the optimum of the study's analysis"


def choose_trial(
    store, state: dict, dataset: str, strategy: str | None, fraction: float | None, seed: int | None
) -> Chosen:
    """The finished trial of the current plan whose weights segment (module docstring)."""
    from study.analyze import plan_trial_ids

    planned = plan_trial_ids(state, store)
    records = [
        r
        for tid in store.trial_ids()
        if (planned is None or tid in planned)
        and (r := store.trial_result(tid)) is not None
        and r.finished
        and r.dataset == dataset
    ]
    if not records:
        raise DataError(f"the study has no finished trial on data set {dataset!r}")
    strategies = sorted({r.strategy for r in records})
    why = "named by --strategy"
    if strategy is None:
        best, source = _optimum(store, state)
        if not best:
            raise SpecError(
                f"{source} is none (no strategy beats the baseline and every other strategy): name one "
                f"with --strategy: {_choices(strategies)}"
            )
        strategy, why = best[0], source
    if strategy not in strategies:
        raise SpecError(
            f"--strategy {strategy!r} has no finished trial on {dataset}; the study's strategies: "
            f"{_choices(strategies)}"
        )
    mine = [r for r in records if r.strategy == strategy]
    fractions = sorted({float(r.label_fraction) for r in mine})
    if fraction is None:
        fraction = fractions[-1]
    elif not any(math.isclose(fraction, f) for f in fractions):
        raise SpecError(
            f"--fraction {fraction:g}: {strategy} ran at label fraction(s) {_choices(f'{f:g}' for f in fractions)}"
        )
    mine = [r for r in mine if math.isclose(float(r.label_fraction), fraction)]
    seeds = sorted({int(r.seed) for r in mine if r.seed is not None})
    if seed is None:
        spec_seeds = (state.get("spec") or {}).get("seeds") or [(state.get("spec") or {}).get("seed")]
        seed = next((s for s in spec_seeds if s in seeds), seeds[0] if seeds else None)
    elif seed not in seeds:
        raise SpecError(f"--seed {seed}: {strategy} at label fraction {fraction:g} ran with seed(s) {_choices(seeds)}")
    mine = [r for r in mine if r.seed == seed or seed is None]
    # Trials differing in learning rate only: the lowest validation loss, as the analysis selects them.
    best = min(mine, key=lambda r: (r.val_loss if r.val_loss == r.val_loss else math.inf, r.trial_id))
    return Chosen(best.trial_id, dataset, strategy, fraction, seed, why)


def _record(dataset) -> dict:
    """The import's record (study.data.nifti_record), or the importer's defaults for another data set."""
    record = dict(getattr(dataset, "preprocessing", {}).get("nifti") or {})
    record.setdefault("slice_axis", 2)
    record.setdefault("classes", {name: [k] for k, name in enumerate(dataset.class_names, start=1)})
    return record


def _check_header(path: Path, image: Any, record: dict, modality: str) -> None:
    """Refuse a volume the network never saw the like of, from its header alone."""
    from study.data.nifti_record import orientation

    shape = tuple(int(n) for n in image.shape)
    if len(shape) >= 4:
        raise DataError(
            f"{path}: a {len(shape)}-D volume {shape} (channels or time points); the {modality} data "
            f"set's volumes are one image of one channel each (2-D or 3-D)"
        )
    ndims = record.get("ndims")
    if ndims and len(shape) not in ndims:
        raise DataError(
            f"{path}: a {len(shape)}-D volume; the data set was imported from "
            f"{' and '.join(f'{n}-D' for n in ndims)} volumes"
        )
    if len(shape) not in (2, 3):
        raise DataError(f"{path}: expected a 2-D or 3-D volume, got shape {shape}")
    orientations = record.get("orientations")
    if orientations:
        mine = orientation(image)
        if mine not in orientations:
            raise DataError(
                f"{path}: orientation {mine}; the data set's volumes are {' or '.join(orientations)} "
                "(reorient it, e.g. with nibabel.as_closest_canonical or fslreorient2std, to match)"
            )


def _check_values(path: Path, volume: np.ndarray, modality: str) -> None:
    low = float(np.min(volume)) if volume.size else 0.0
    if not np.isfinite(volume).all():
        raise DataError(f"{path}: image has NaN or infinite voxels")
    if modality == "mri" and low < MRI_MIN_VALUE:
        raise DataError(f"{path}: values down to {low:g}, as a CT in HU; the study's data set is MRI")
    if modality == "ct" and low >= CT_NEEDS_BELOW:
        raise DataError(
            f"{path}: no value below {CT_NEEDS_BELOW:g} (lowest {low:g}), as an MRI magnitude; the study's "
            "data set is CT in HU, where fat lies near -100 and air at -1000"
        )


def network_input(volume: np.ndarray, modality: str, preprocessing: dict) -> np.ndarray:
    """(S, H, W) voxels -> (S, C, H, W) network input, as the import made it (study.data.nifti)."""
    from study.data.preprocess import DEFAULT_CT_WINDOWS, ct_input, zscore

    volume = volume.astype(np.float32)
    if modality == "mri":
        return zscore(volume)[:, None]
    return ct_input(volume, preprocessing.get("ct_windows") or DEFAULT_CT_WINDOWS)


def label_map(masks: np.ndarray, logits: np.ndarray, values: Sequence[int]) -> tuple[np.ndarray, int]:
    """(K, S, H, W) masks and logits -> (S, H, W) label map of ``values`` (0 background) and the
    number of voxels two or more classes claimed (given to the highest logit)."""
    claimed = masks.sum(axis=0)
    winner = np.argmax(np.where(masks, logits, -np.inf), axis=0)
    lookup = np.asarray(values, dtype=np.int64)
    out = np.where(claimed > 0, lookup[winner], 0)
    dtype = np.uint8 if lookup.max() <= 255 else np.int16 if lookup.max() <= 32767 else np.int32
    return out.astype(dtype), int((claimed > 1).sum())


def _write(path: Path, labels: np.ndarray, image: Any) -> None:
    nibabel = sys.modules["nibabel"]
    header = image.header.copy()
    header.set_data_dtype(labels.dtype)
    out = type(image)(labels, image.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)  # label values as written, never rescaled
    nibabel.save(out, str(path))


def _out_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out}: already exists and is not empty; name a new folder (nothing is overwritten)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from study.analyze import find_study
    from study.data.nifti import _load, _volumes
    from study.data.nifti_record import header_of, nibabel_module

    nibabel_module()
    out = args.out.expanduser().absolute()
    _out_folder(out)
    store = find_study(args.study, args.storage)
    state = store.read_state() or {}
    key, data_path = _dataset_key(state, args.dataset)
    chosen = choose_trial(store, state, key, args.strategy, args.fraction, args.seed)
    weights_path = store.trial_weights_path(chosen.trial_id)
    if not weights_path.is_file():
        kept = (state.get("spec") or {}).get("keep_weights", "best")
        raise DataError(
            f"trial {chosen.trial_id} ({chosen.strategy}) kept no weights ({weights_path} is missing"
            + ("; the study ran with keep_weights: none" if kept == "none" else "")
            + "): run it again with keep_weights: best to segment with it"
        )
    inputs = _volumes(args.images)

    from study.data import open_dataset

    dataset = open_dataset(data_path)
    record = _record(dataset)
    images = {name: header_of(path) for name, path in inputs.items()}
    for name, image in images.items():  # every header before any voxel: a refusal writes nothing
        _check_header(inputs[name], image, record, dataset.modality)

    import torch

    from study.design.plan import TrialPoint
    from study.design.scale import Scale
    from study.model import UNet
    from study.train import load_checkpoint, predict_image

    config = store.trial_config(chosen.trial_id)
    result = store.trial_result(chosen.trial_id)
    scale = TrialPoint.from_json(config).scale if config else Scale.model_validate(result.scale)
    weights = load_checkpoint(weights_path)
    if weights is None:
        raise DataError(f"{weights_path}: cannot be read as weights (truncated?)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no GPU is available to torch here")
    model = UNet(unet_config(scale, in_channels=dataset.in_channels, out_channels=len(dataset.class_names)))
    model.load_state_dict(weights)
    settings = train_settings(scale, stage="finetune", device=device, seed=chosen.seed or 0)
    model = settings.place(model)
    values = [vs[0] for vs in record["classes"].values()]
    print(
        f"segmenting {len(inputs)} volume(s) of {args.images} with trial {chosen.trial_id}: {chosen.strategy} on "
        f"{key}, label fraction {chosen.label_fraction:g}, seed {chosen.seed} ({chosen.why}); {device}"
    )

    from tqdm import tqdm

    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    overlaps: dict[str, int] = {}
    done = False
    try:
        for name in tqdm(list(inputs), unit="volume", file=sys.stderr, disable=args.quiet or None):
            path, image = inputs[name], images[name]
            volume, _ = _load(path, record["slice_axis"] if len(image.shape) >= 3 else 2)
            _check_values(path, volume, dataset.modality)
            x = network_input(
                volume, dataset.modality, dataset.preprocessing if hasattr(dataset, "preprocessing") else {}
            )
            logits: list[np.ndarray] = []
            masks = predict_image(model, lambda sl, x=x: x[sl], x.shape[0], settings, logits_out=logits)
            labels, overlaps[name] = label_map(masks, np.moveaxis(np.concatenate(logits), 1, 0), values)
            _write(scratch / path.name, _as_input_layout(labels, image, record["slice_axis"]), image)
            if args.masks:
                per_class = np.stack(
                    [_as_input_layout(m, image, record["slice_axis"]) for m in masks.astype(np.uint8)], axis=-1
                )
                _write(scratch / f"{name}_masks.nii.gz", per_class, image)
        _out_folder(out)  # still new: nothing appeared there meanwhile
        if out.exists():
            out.rmdir()
        os.replace(scratch, out)
        done = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in made if not done else ():  # a refusal leaves no trace, not even the parents it made
            try:
                folder.rmdir()
            except OSError:
                pass
    claimed = {n: v for n, v in overlaps.items() if v}
    print(
        f"wrote {len(inputs)} label map(s){' and their masks' if args.masks else ''} to {out}: "
        + ", ".join(f"{name}={value}" for name, value in zip(record["classes"], values))
    )
    if claimed:
        print(
            f"note: {sum(claimed.values())} voxel(s) in {len(claimed)} volume(s) were claimed by two classes and "
            "given to the one of the higher logit" + ("" if args.masks else " (--masks keeps each class's own)"),
            file=sys.stderr,
        )
    return 0


def _as_input_layout(labels: np.ndarray, image: Any, slice_axis: int) -> np.ndarray:
    """(S, H, W) slices-first back to the input's own axis order (a 2-D input: one slice)."""
    if len(image.shape) == 2:
        return labels[0]
    order = [slice_axis] + [a for a in range(3) if a != slice_axis]
    return np.transpose(labels, np.argsort(order))


if __name__ == "__main__":
    run_main(main)
