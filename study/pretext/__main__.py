"""``python -m study.pretext preview --out PATH.png``: example corruptions (the paper's Figure 1).

    python -m study.pretext preview --out corruptions.png
    python -m study.pretext preview --out small.png --size 64 --patch-sizes 32,16

A user error (bad flag value, unreadable image) prints one line and exits with status 2, writing
nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from study._cli import ArgumentParser
from study.constants import PAPER_PATCH_SIZES
from study.errors import DataError, SpecError, StudyError
from study.pretext._preview import preview_figure, render_preview, synthetic_image


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m study.pretext", doc=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser(
        "preview",
        help="write a PNG grid of example corruptions (task x sampler x patch size)",
        description="Write a PNG grid of example corruptions: one row per task and sampler, one "
        "column per patch size, as in Figure 1 of Dominic et al. 2023.",
    )
    preview.add_argument("--out", required=True, type=Path, help="PNG file to write")
    preview.add_argument("--size", type=int, default=128, help="side of the synthetic image in px (default 128)")
    preview.add_argument("--image", type=Path, help="a .npy image (H, W) or (C, H, W) instead of the synthetic one")
    preview.add_argument("--seed", type=int, default=0, help="seed of the masks and the synthetic image (default 0)")
    preview.add_argument(
        "--patch-sizes",
        default=",".join(str(k) for k in PAPER_PATCH_SIZES),
        help="patch sizes in the paper's 512-px units, scaled to the image (default 64,32,16,8)",
    )
    return parser


def _patch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"--patch-sizes must be comma-separated integers like 64,32,16,8, got {text!r}") from None
    if any(k < 1 for k in sizes):
        raise SpecError(f"--patch-sizes must be integers >= 1, got {text!r}")
    return sizes


def _load_image(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"--image {path}: cannot read a .npy array ({error})") from None


def preview(args: argparse.Namespace) -> None:
    if args.out.suffix.lower() != ".png":
        raise SpecError(f"--out must name a .png file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise SpecError(f"--out {args.out}: folder {args.out.parent} does not exist")
    if not 8 <= args.size <= 4096:
        raise SpecError(f"--size must be an integer in [8, 4096], got {args.size}")
    image = _load_image(args.image) if args.image else synthetic_image(args.size, args.seed)
    figure = preview_figure(image, _patch_sizes(args.patch_sizes), seed=args.seed)
    render_preview(figure, args.out)
    height, width = figure.original.shape
    print(f"wrote {args.out} ({len(figure.panels)} panels, image {height} x {width})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        preview(args)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
