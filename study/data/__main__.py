"""``python -m study.data``: make phantoms, import NIfTI volumes, validate a data set.

Examples:
    python -m study.data check /data/skm-tea
    python -m study.data phantom --kind mri --size 256 --n-train 40 --out phantom-mri-256
    python -m study.data import-nifti --images imgs --labels labels --modality ct --classes muscle=1,sat=4 --out ct
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from study._cli import ArgumentParser, run_main
from study.data import (
    LATEST_PHANTOM_VERSION,
    PHANTOM_VERSIONS,
    PhantomSettings,
    builtin_dataset,
    make_phantom_dataset,
    open_dataset,
)
from study.data.check import check_dataset
from study.errors import SpecError


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (none shown where there is none), examples kept as typed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


_EXAMPLES = {
    "phantom": """examples:
  python -m study.data phantom --kind mri --size 256 --n-train 40 --out phantom-mri-256
  python -m study.data phantom --kind ct --size 128 --out phantom-ct-128
  python -m study.data phantom --kind mri --phantom-version 1 --out mri-v1   # the built-in MRI phantom before v2""",
    "import-nifti": """examples:
  python -m study.data import-nifti --images imgs/ --labels labels/ --modality ct \\
      --classes muscle=1,imat=2,vat=3,sat=4 --out my-ct/
  python -m study.data import-nifti --images knees/ --labels segs/ --modality mri \\
      --classes femoral_cartilage=1,tibial_cartilage=2+3,meniscus=4 --unlabeled more-knees/ --out my-knees/
  python -m study.data import-nifti ... --split-file split.json   # {"train": [...], "val": [...], "test": [...]}

The data set is named after --out (its last folder). Needs nibabel: pip install -e ".[nifti]".""",
    "check": """examples:
  python -m study.data check /data/skm-tea      # an SKM-TEA root, read in place
  python -m study.data check my-ct/             # a folder import-nifti or phantom wrote""",
}


def _latest(field: str) -> str:
    """What the latest built-in data set of each kind has of ``field``, for --help."""
    return ", ".join(f"{kind} {PhantomSettings.default(kind).__dict__[field]}" for kind in ("mri", "ct"))


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m study.data", doc=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> ArgumentParser:
        return sub.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", epilog=_EXAMPLES[name], formatter_class=_Help
        )

    ph = command("phantom", "write a built-in knee-MRI or abdominal-CT phantom data set")
    ph.add_argument("--kind", choices=("mri", "ct"), required=True)
    ph.add_argument("--out", type=Path, help="new folder to write (default: the built-in cache under ./data_cache)")
    ph.add_argument("--size", type=int, help="image height and width in pixels, 32-512 (default: 64)")
    for name, what in (("train", "training"), ("val", "validation"), ("test", "test"), ("unlabeled", "unlabeled")):
        ph.add_argument(f"--n-{name}", type=int, help=f"number of {what} subjects (default: {_latest(f'n_{name}')})")
    ph.add_argument("--n-slices", type=int, help=f"slices per MRI volume (default: {_latest('n_slices')})")
    ph.add_argument("--seed", type=int, help="random seed (default: 0)")
    ph.add_argument(
        "--phantom-version",
        type=int,
        choices=sorted(PHANTOM_VERSIONS),
        default=LATEST_PHANTOM_VERSION,
        help="the built-in data set whose settings the others change (the latest; docs/data-format.md)",
    )

    ni = command("import-nifti", "convert NIfTI volumes and label maps to the platform's format")
    ni.add_argument("--images", type=Path, required=True, help="folder of image volumes (.nii/.nii.gz)")
    ni.add_argument("--labels", type=Path, required=True, help="folder of integer label maps, same file names")
    ni.add_argument("--classes", required=True, help="class=VALUE[+VALUE],... e.g. muscle=1,imat=2,vat=3,sat=4")
    ni.add_argument("--out", type=Path, required=True, help="new folder to write; its name names the data set")
    ni.add_argument(
        "--modality",
        choices=("mri", "ct"),
        required=True,
        help="ct: HU windows as input channels, slices as cases; mri: z-scored volumes as cases",
    )
    ni.add_argument("--slice-axis", type=int, default=2, help="array axis that indexes slices")
    ni.add_argument("--unlabeled", type=Path, help="folder of unlabeled volumes (pretraining only)")
    ni.add_argument("--split-file", type=Path, help="JSON with lists train, val, test of file names")
    ni.add_argument("--ct-windows", default="400/50,1800/400,500/50", help="CT windows WIDTH/LEVEL,... in HU")
    ni.add_argument("--seed", type=int, default=0, help="seed of the random split")

    ck = command("check", "validate a data set and print a summary")
    ck.add_argument("path", type=Path, help="a data set folder (platform format or SKM-TEA root)")
    return parser


def _windows(text: str) -> tuple[tuple[float, float], ...]:
    try:
        return tuple((float(width), float(level)) for width, level in (p.split("/") for p in text.split(",")))
    except ValueError:
        raise SpecError(f"--ct-windows {text!r} must look like 400/50,1800/400,500/50") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "phantom":
        given = {k: getattr(args, k) for k in ("size", "n_train", "n_val", "n_test", "n_unlabeled", "n_slices", "seed")}
        settings = PhantomSettings.default(
            args.kind, version=args.phantom_version, **{k: v for k, v in given.items() if v is not None}
        )
        path = make_phantom_dataset(settings, args.out) if args.out else builtin_dataset(args.kind, settings)
        print(f"wrote {path}")
        summary = check_dataset(open_dataset(path))
    elif args.command == "import-nifti":
        from study.data.nifti import NiftiImport, import_nifti, parse_classes

        cfg = NiftiImport(
            image_dir=args.images,
            label_dir=args.labels,
            classes=parse_classes(args.classes),
            modality=args.modality,
            slice_axis=args.slice_axis,
            unlabeled_dir=args.unlabeled,
            split_file=args.split_file,
            ct_windows=_windows(args.ct_windows),
            seed=args.seed,
        )
        path = import_nifti(cfg, args.out)
        print(f"wrote {path}")
        summary = check_dataset(open_dataset(path))
    else:
        summary = check_dataset(open_dataset(args.path))
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    run_main(main)
