"""The embedded default data: knee-MRI and abdominal-CT phantom data sets, made on first use.

A phantom data set is written once into a cache folder under the working directory (or
``$SSL_STUDY_DATA_CACHE``), named by a hash of its settings, and reused by every later run and
every concurrent trial; a file lock makes sure only one process writes it.

The built-in data sets are versioned (:data:`PHANTOM_VERSIONS`): a new study gets the latest, a
study folder records the version it was made with and keeps it when it resumes
(:func:`study_phantom_version`), so no study ever mixes trials of two data sets. Why version 2 has
the counts it has: docs/data-format.md, "The built-in phantoms".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock

from study.data._h5 import MANIFEST, DatasetWriter
from study.data._model import Split
from study.data.preprocess import DEFAULT_CT_WINDOWS, ct_input, mri_input
from study.errors import DataError, SpecError

PhantomKind = Literal["mri", "ct"]
BUILTIN_KINDS: tuple[str, ...] = ("mri", "ct")
CACHE_ENV = "SSL_STUDY_DATA_CACHE"
# Bumped whenever a phantom generator changes what it draws, so no cache of the old phantoms is reused.
GENERATOR_VERSION = 2

_CT = {"n_train": 100, "n_val": 20, "n_test": 40, "n_unlabeled": 200, "n_slices": 1}
# The built-in data sets' settings by version (anything not named: the PhantomSettings defaults,
# size 64 and seed 0). Never edit a version: a study folder made with it finds its data by the
# cache key of these settings (or makes them again, identical), so a change gets a new version.
PHANTOM_VERSIONS: dict[int, dict[str, dict[str, int]]] = {
    # MRI: 20/4/8 volumes of 16 slices. 8 test volumes cannot show any of 16 strategies better than
    # the baseline under Holm (16 / 2^8 > 0.05), 4 validation volumes let pruning stop nothing.
    1: {"mri": {"n_train": 20, "n_val": 4, "n_test": 8, "n_unlabeled": 20, "n_slices": 16}, "ct": _CT},
    # MRI: 4 times the volumes at a quarter of the slices (the same 96 mm slab, 24 mm apart): the
    # same labeled slices at every label fraction and the same pretraining pool, the test slices of
    # version 1 in 32 volumes, 20 validation volumes (80 slices, 64 before). CT is version 1's.
    2: {"mri": {"n_train": 80, "n_val": 20, "n_test": 32, "n_unlabeled": 80, "n_slices": 4}, "ct": _CT},
}
LATEST_PHANTOM_VERSION = max(PHANTOM_VERSIONS)


@dataclass(frozen=True)
class PhantomSettings:
    """Size of a phantom data set. Counts are subjects: MRI volumes, or CT slices (one per patient).

    The defaults are laptop scale, the latest version's MRI data set (:data:`PHANTOM_VERSIONS`);
    ``size`` goes up to 512 (the paper's matrix).
    """

    kind: PhantomKind
    size: int = 64
    n_train: int = 80
    n_val: int = 20
    n_test: int = 32
    n_unlabeled: int = 80
    n_slices: int = 4
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
    def default(cls, kind: PhantomKind, version: int = LATEST_PHANTOM_VERSION, **overrides: int) -> PhantomSettings:
        """The built-in ``kind`` data set of ``version`` (default the latest), with ``overrides``."""
        if kind not in BUILTIN_KINDS:
            raise SpecError(f"phantom kind {kind!r} must be one of {', '.join(BUILTIN_KINDS)}")
        if version not in PHANTOM_VERSIONS:
            raise SpecError(f"phantom version {version!r} must be one of {', '.join(map(str, PHANTOM_VERSIONS))}")
        return cls(kind=kind, **{**PHANTOM_VERSIONS[version][kind], **overrides})

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
        for index, (role, scan_id) in enumerate((part, s) for part in _ROLES for s in getattr(split, part)):
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


def describe_phantom(settings: PhantomSettings) -> str:
    """The counts of a phantom data set in a few words: "80 train, 20 val, 32 test, 80 unlabeled
    volumes of 4 slices, 64 px"."""
    unit = "volumes" if settings.kind == "mri" else "slices"
    per = f" of {settings.n_slices} slices" if settings.kind == "mri" else ""
    return (
        f"{settings.n_train} train, {settings.n_val} val, {settings.n_test} test, {settings.n_unlabeled} "
        f"unlabeled {unit}{per}, {settings.size} px"
    )


def study_phantom_version(state: Mapping[str, Any] | None, where: str = "the study folder") -> int:
    """The built-in data version of a study whose folder holds ``state`` (its state as the store
    reads it, from ``where``; None for a study not started yet, which gets the latest). A study keeps the
    version it started with; a folder written before versions were recorded was made with version
    1, the only one then."""
    if not state:
        return LATEST_PHANTOM_VERSION
    version = state.get("phantom_version", 1)
    if isinstance(version, bool) or version not in PHANTOM_VERSIONS:
        raise DataError(
            f"{where}: made with built-in data version {version!r}, which this code does not know "
            f"(it has {', '.join(map(str, PHANTOM_VERSIONS))}): run the code that made it, or --fresh "
            "to start the study over"
        )
    return int(version)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, "data_cache")).expanduser().absolute()


def phantom_cache_path(settings: PhantomSettings) -> Path:
    """Where the phantom data set of ``settings`` is (or will be) cached: named by its key."""
    return cache_root() / f"phantom-{settings.kind}-{settings.size}px-{settings.key()}"


def builtin_dataset(kind: PhantomKind, settings: PhantomSettings | None = None) -> Path:
    """Path of the built-in phantom data set of ``kind``, generating it on first use."""
    settings = settings or PhantomSettings.default(kind)
    out = phantom_cache_path(settings)
    if (out / MANIFEST).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / MANIFEST).exists():  # another process may have made it while we waited
            make_phantom_dataset(settings, out)
    return out


def study_phantom_path(settings: PhantomSettings, recorded: str | None = None) -> Path:
    """Where a study's phantom of ``settings`` is: the folder the study recorded (``recorded``) while
    it holds a phantom of these very settings (also one an older generator made, whose key differs:
    its data are the study's), else the cache folder of their key (made there if missing)."""
    if recorded:
        try:
            manifest = json.loads((Path(recorded) / MANIFEST).read_text())
            if manifest["preprocessing"]["phantom"] == dataclasses.asdict(settings):
                return Path(recorded)
        except (OSError, ValueError, TypeError, KeyError):  # gone, unreadable, or not a phantom
            pass
    return phantom_cache_path(settings)


def study_data_paths(
    data: Mapping[str, str | None], size: int, version: int, recorded: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The folder of each of a study's data sets: its path in ``data``, or for a built-in one (None)
    the phantom of ``version`` at ``size`` px: the folder the study recorded before (``recorded``,
    its ``data_paths``) while it holds that phantom, else found by its cache key or made now."""
    out = {}
    for name, path in data.items():
        if path:
            out[name] = path
            continue
        settings = PhantomSettings.default(name, version=version, size=size)
        kept = study_phantom_path(settings, (recorded or {}).get(name))
        out[name] = str(kept if (kept / MANIFEST).exists() else builtin_dataset(name, settings))
    return out
