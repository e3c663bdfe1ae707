"""The embedded default data: knee-MRI and abdominal-CT phantom data sets, made on first use.

A phantom data set is written once into a cache folder under the working directory (or
``$SSL_STUDY_DATA_CACHE``), named by a hash of its settings, and reused by every later run and
every concurrent trial; a file lock makes sure only one process writes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from filelock import FileLock

from study.data._h5 import MANIFEST, DatasetWriter
from study.data._model import Split
from study.data.preprocess import DEFAULT_CT_WINDOWS, ct_input, mri_input
from study.errors import SpecError

PhantomKind = Literal["mri", "ct"]
BUILTIN_KINDS: tuple[str, ...] = ("mri", "ct")
CACHE_ENV = "SSL_STUDY_DATA_CACHE"
# Bumped whenever a phantom generator changes what it draws, so no cache of the old phantoms is reused.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class PhantomSettings:
    """Size of a phantom data set. Counts are subjects: MRI volumes, or CT slices (one per patient).

    The defaults are laptop scale; ``size`` goes up to 512 (the paper's matrix).
    """

    kind: PhantomKind
    size: int = 64
    n_train: int = 20
    n_val: int = 4
    n_test: int = 8
    n_unlabeled: int = 20
    n_slices: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BUILTIN_KINDS:
            raise SpecError(f"phantom kind {self.kind!r} must be one of {', '.join(BUILTIN_KINDS)}")
        if not 32 <= self.size <= 512:
            raise SpecError(f"phantom size={self.size} must be between 32 and 512 pixels")
        for name in ("n_train", "n_val", "n_test", "n_slices"):
            if getattr(self, name) < 1:
                raise SpecError(f"phantom {name}={getattr(self, name)} must be >= 1")
        if self.n_unlabeled < 0:
            raise SpecError(f"phantom n_unlabeled={self.n_unlabeled} must be >= 0")

    @classmethod
    def default(cls, kind: PhantomKind, **overrides: int) -> "PhantomSettings":
        base = {"mri": {}, "ct": {"n_train": 100, "n_val": 20, "n_test": 40, "n_unlabeled": 200, "n_slices": 1}}
        if kind not in base:
            raise SpecError(f"phantom kind {kind!r} must be one of {', '.join(BUILTIN_KINDS)}")
        return cls(kind=kind, **{**base[kind], **overrides})

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _subject_rng(settings: PhantomSettings, index: int) -> np.random.Generator:
    # One stream per subject: adding subjects never changes the ones already there.
    kind_code = BUILTIN_KINDS.index(settings.kind)
    return np.random.default_rng(np.random.SeedSequence([settings.seed, kind_code, index]))


_ROLES = ("train", "val", "test", "unlabeled")


def phantom_split(settings: PhantomSettings) -> Split:
    """The split a phantom data set of these settings has, known before it is generated: scans are
    numbered in the order train, val, test, unlabeled."""
    ids, start = {}, 0
    for role in _ROLES:
        count = getattr(settings, f"n_{role}")
        ids[role] = tuple(f"{settings.kind}{i:04d}" for i in range(start, start + count))
        start += count
    return Split(**ids)


def phantom_rounding(settings: PhantomSettings) -> str:
    """How label fractions round on this phantom (as :func:`study.data.default_rounding` on the
    written data set): MRI scans are volumes, CT scans single slices."""
    return "ceil" if settings.n_slices > 1 else "half_even"


def make_phantom_dataset(settings: PhantomSettings, out: Path) -> Path:
    """Write a complete phantom data set in the platform's format to ``out`` (a new folder)."""
    from study.data import phantoms  # numpy-heavy generators, only needed here

    split = phantom_split(settings)
    mri = settings.kind == "mri"
    preprocessing = {"input": "rss_zscore_volume"} if mri else {"ct_windows": [list(w) for w in DEFAULT_CT_WINDOWS]}
    with DatasetWriter(
        out,
        name=f"phantom-{settings.kind}",
        modality=settings.kind,
        class_names=phantoms.MRI_CLASSES if mri else phantoms.CT_CLASSES,
        in_channels=1 if mri else len(DEFAULT_CT_WINDOWS),
        preprocessing={**preprocessing, "phantom": dataclasses.asdict(settings)},
    ) as writer:
        for index, (role, scan_id) in enumerate((role, s) for role in _ROLES for s in getattr(split, role)):
            rng = _subject_rng(settings, index)
            labels = None
            if mri:
                p = phantoms.make_mri_phantom(rng, size=settings.size, n_slices=settings.n_slices)
                image = mri_input(p.echo1, p.echo2)
                raw = {"echo1": p.echo1, "echo2": p.echo2, "t2_true_ms": p.t2_ms}
                labels, spacing, qdess = p.labels, p.spacing_mm, p.params
            else:
                p = phantoms.make_ct_phantom(rng, size=settings.size)
                image = ct_input(p.hu[None])
                raw = {"hu": p.hu[None].astype(np.float32)}
                labels, spacing, qdess = p.labels[None], (1.0, *p.spacing_mm), None
            writer.add_scan(
                scan_id,
                subject_id=scan_id,
                image=image,
                labels=None if role == "unlabeled" else labels,
                raw=raw,
                spacing_mm=spacing,
                qdess=qdess,
            )
        return writer.finish(split)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, "data_cache")).expanduser().absolute()


def builtin_dataset(kind: PhantomKind, settings: PhantomSettings | None = None) -> Path:
    """Path of the built-in phantom data set of ``kind``, generating it on first use."""
    settings = settings or PhantomSettings.default(kind)
    root = cache_root()
    out = root / f"phantom-{settings.kind}-{settings.size}px-{settings.key()}"
    if (out / MANIFEST).exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / MANIFEST).exists():  # another process may have made it while we waited
            make_phantom_dataset(settings, out)
    return out
