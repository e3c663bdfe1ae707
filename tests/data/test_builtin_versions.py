"""The built-in data sets' versions (study/data/_builtin.py): the counts of the latest one can answer
the README main study, and a study folder made with an older version keeps its own data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from study.data import (
    DEFAULT_LABEL_FRACTIONS,
    LATEST_PHANTOM_VERSION,
    PHANTOM_VERSIONS,
    PhantomSettings,
    builtin_dataset,
    open_dataset,
    phantom_cache_path,
    study_data_paths,
    study_phantom_path,
    study_phantom_version,
    subset_size,
)
from study.errors import DataError
from study.preflight.power_check import needed
from tests.conftest import assert_user_error, run_cli

# What the code before versions made by default (PhantomSettings' defaults then): version 1.
OLD_MRI = {"n_train": 20, "n_val": 4, "n_test": 8, "n_unlabeled": 20, "n_slices": 16}
OLD_CT = {"n_train": 100, "n_val": 20, "n_test": 40, "n_unlabeled": 200, "n_slices": 1}


# ---------------------------------------------------------------- the latest counts


def test_the_latest_mri_phantom_is_80_20_32_80_volumes_of_4_slices() -> None:
    settings = PhantomSettings.default("mri")
    assert LATEST_PHANTOM_VERSION == 2
    counts = (settings.n_train, settings.n_val, settings.n_test, settings.n_unlabeled, settings.n_slices)
    assert counts == (80, 20, 32, 80, 4)
    assert settings == PhantomSettings(kind="mri")  # the dataclass defaults are the latest MRI data set


def test_latest_mri_can_show_16_strategies_and_let_pruning_stop() -> None:
    settings = PhantomSettings.default("mri")
    # 16 strategies under Holm: all-positive pairs reach 0.05 from 9 test volumes (16 / 2^9);
    # pruning's first Holm step over 16 configurations x 16 comparators (256) from 13.
    assert needed(16, 0.05) == 9 and needed(16 * 16, 0.05) == 13
    assert settings.n_test >= 3 * needed(16, 0.05)  # room for effects short of every pair positive
    assert settings.n_val >= needed(16 * 16, 0.05) + 5
    assert 16 / 2**settings.n_test < 0.05 / 1e6 and 256 / 2**settings.n_val < 0.05 / 100
    # the old version could not: 16 / 2^8 = 0.0625, 256 / 2^4 = 16
    old = PhantomSettings.default("mri", version=1)
    assert old.n_test < needed(16, 0.05) and old.n_val < needed(16 * 16, 0.05)


@pytest.mark.parametrize("fraction", DEFAULT_LABEL_FRACTIONS)
def test_latest_mri_keeps_the_labeled_slices_of_every_default_fraction(fraction: float) -> None:
    # 4 times the volumes at a quarter of the slices: the same labeled slices per fraction.
    new, old = PhantomSettings.default("mri"), PhantomSettings.default("mri", version=1)
    labeled = [subset_size(s.n_train, fraction, "ceil") * s.n_slices for s in (new, old)]
    assert labeled[0] == labeled[1]


@pytest.mark.parametrize("extent", [0.25, 0.5, 1.0, 1.5, 2.0])  # scaling.yaml's extents
def test_latest_mri_keeps_the_pretraining_slices_of_every_extent(extent: float) -> None:
    def slices(s: PhantomSettings) -> int:
        if extent <= 1:
            return subset_size(s.n_train, extent, "ceil") * s.n_slices
        extra = int(np.ceil(round((extent - 1) * s.n_train, 9)))
        assert extra <= s.n_unlabeled
        return (s.n_train + extra) * s.n_slices

    assert slices(PhantomSettings.default("mri")) == slices(PhantomSettings.default("mri", version=1))


def test_latest_mri_costs_the_test_slices_of_version_1_and_a_quarter_more_validation() -> None:
    new, old = PhantomSettings.default("mri"), PhantomSettings.default("mri", version=1)
    assert new.n_test * new.n_slices == old.n_test * old.n_slices == 128
    assert (new.n_val * new.n_slices, old.n_val * old.n_slices) == (80, 64)


def test_ct_is_the_same_data_set_in_every_version() -> None:
    keys = {PhantomSettings.default("ct", version=v).key() for v in PHANTOM_VERSIONS}
    assert keys == {"de8449546e5f"}


# ---------------------------------------------------------------- old versions stay reachable


def test_version_1_is_the_old_default_under_its_old_cache_key() -> None:
    # The key names the cache folder: the folders the old code made are found again by these keys.
    assert PHANTOM_VERSIONS[1] == {"mri": OLD_MRI, "ct": OLD_CT}
    assert PhantomSettings.default("mri", version=1) == PhantomSettings(kind="mri", **OLD_MRI)
    assert PhantomSettings.default("mri", version=1).key() == "8ad94b8940f6"
    paper = PhantomSettings(kind="mri", size=512, **OLD_MRI)
    assert PhantomSettings.default("mri", version=1, size=512).key() == paper.key()
    assert PhantomSettings.default("mri").key() != "8ad94b8940f6"


@pytest.mark.parametrize(
    "state, version",
    [
        (None, LATEST_PHANTOM_VERSION),  # no study folder yet: the latest
        ({"name": "s", "data_paths": {"mri": "/x/phantom-mri-64px-8ad94b8940f6"}}, 1),  # written before versions
        ({"name": "s", "phantom_version": 1}, 1),
        ({"name": "s", "phantom_version": 2}, 2),
    ],
)
def test_a_study_keeps_the_version_its_folder_records(state: dict | None, version: int) -> None:
    assert study_phantom_version(state) == version


@pytest.mark.parametrize("bad", [9, "2", True, None])
def test_an_unknown_recorded_version_is_refused(bad) -> None:
    with pytest.raises(
        DataError,
        match=r"study.json: made with built-in data version .* which this code does not know "
        r"\(it has 1, 2\).*--fresh",
    ):
        study_phantom_version({"phantom_version": bad}, "study.json")


def test_an_old_study_folder_resumes_with_its_own_data_found_or_made_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SSL_STUDY_DATA_CACHE", str(tmp_path / "cache"))
    # The data set the code before versions made for a study at 32 px, and the state it wrote.
    old = builtin_dataset("mri", PhantomSettings(kind="mri", size=32, **OLD_MRI))
    state = {"name": "s", "data_paths": {"mri": str(old)}}
    stamp = (old / "dataset.json").stat().st_mtime_ns
    version = study_phantom_version(state)
    assert version == 1
    assert study_data_paths({"mri": None}, 32, version) == {"mri": str(old)}
    assert (old / "dataset.json").stat().st_mtime_ns == stamp  # found, not made again
    dataset = open_dataset(old)
    assert (len(dataset.split.train), len(dataset.split.val), len(dataset.split.test)) == (20, 4, 8)
    scan = dataset.split.test[0]
    image, masks = dataset.read_image(scan), dataset.read_masks(scan)
    dataset.close()
    # The cache deleted: the same version is made again, the same arrays in the same folder.
    os.rename(old, tmp_path / "gone")
    assert study_data_paths({"mri": None}, 32, version) == {"mri": str(old)}
    again = open_dataset(old)
    np.testing.assert_array_equal(again.read_image(scan), image)
    np.testing.assert_array_equal(again.read_masks(scan), masks)
    again.close()
    # A new study gets the latest version, in a folder of its own.
    new = Path(study_data_paths({"mri": None}, 32, study_phantom_version(None))["mri"])
    assert new == phantom_cache_path(PhantomSettings.default("mri", size=32)) and new != old
    assert json.loads((new / "dataset.json").read_text())["preprocessing"]["phantom"]["n_test"] == 32
    assert study_data_paths({"mri": "/data/mine"}, 32, 1) == {"mri": "/data/mine"}  # a folder is a folder


def test_a_study_keeps_its_recorded_phantom_folder_after_a_generator_change(tmp_path: Path, monkeypatch) -> None:
    from study.data import _builtin

    monkeypatch.setenv("SSL_STUDY_DATA_CACHE", str(tmp_path / "cache"))
    settings = PhantomSettings.default("mri", version=1, size=32)
    made = builtin_dataset("mri", settings)
    recorded = {"mri": str(made)}  # the study's data_paths
    monkeypatch.setattr(_builtin, "GENERATOR_VERSION", _builtin.GENERATOR_VERSION + 1)
    assert phantom_cache_path(settings) != made  # a new study would get the new generator's data
    assert study_phantom_path(settings, str(made)) == made
    assert study_data_paths({"mri": None}, 32, 1, recorded) == {"mri": str(made)}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()) == [made.name]  # nothing made
    # a recorded folder of other settings, or one that is gone, is not the study's: its key decides
    other = PhantomSettings.default("mri", version=1, size=32, n_test=9)
    assert study_phantom_path(other, str(made)) == phantom_cache_path(other)
    assert study_phantom_path(settings, str(tmp_path / "gone")) == phantom_cache_path(settings)
    assert study_phantom_path(settings, str(tmp_path)) == phantom_cache_path(settings)  # no manifest there


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "v",
                "datasets": ["mri"],
                "storage": str(tmp_path / "studies"),
                "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "pretraining": {"task": ["restoration"], "patch_size": [32]},
                "label_fractions": [1.0],
                "baseline": True,
            }
        )
    )
    return spec


def test_the_dry_run_names_the_phantom_version_a_study_uses(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    new = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    latest = PhantomSettings.default("mri")
    assert (
        f"  data mri: built-in phantom version {LATEST_PHANTOM_VERSION}, the latest: 80 train, 20 val, 32 test, "
        f"80 unlabeled volumes of 4 slices, 64 px; cache {phantom_cache_path(latest)} (made when the study starts)"
        in new.stdout.splitlines()
    )
    # A study folder written before versions were recorded: version 1, its own cache folder.
    folder = tmp_path / "studies" / "v"
    folder.mkdir(parents=True)
    old_path = phantom_cache_path(PhantomSettings.default("mri", version=1))
    (folder / "study.json").write_text(json.dumps({"name": "v", "data_paths": {"mri": str(old_path)}}))
    old = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
    assert old.returncode == 0, old.stderr
    line = next(line for line in old.stdout.splitlines() if line.startswith("  data mri: "))
    assert line.startswith(
        "  data mri: built-in phantom version 1, this study folder's (the latest is 2: --fresh "
        "starts the study over on it): 20 train, 4 val, 8 test, 20 unlabeled volumes of 16 slices"
    )
    assert f"cache {old_path} " in line
    fresh = run_cli("study.run", str(spec), "--dry-run", "--fresh", cwd=tmp_path)
    assert f"built-in phantom version {LATEST_PHANTOM_VERSION}, the latest" in fresh.stdout
    (folder / "study.json").write_text(json.dumps({"name": "v", "phantom_version": 7}))
    assert_user_error(
        run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path),
        f"{folder / 'study.json'}: made with built-in data version 7",
    )


def test_the_phantom_command_makes_any_version(tmp_path: Path) -> None:
    made = run_cli(
        "study.data",
        "phantom",
        "--kind",
        "mri",
        "--phantom-version",
        "1",
        "--size",
        "32",
        "--n-train",
        "2",
        "--n-unlabeled",
        "0",
        "--out",
        str(tmp_path / "v1"),
    )
    assert made.returncode == 0, made.stderr
    phantom = json.loads((tmp_path / "v1" / "dataset.json").read_text())["preprocessing"]["phantom"]
    assert phantom == {
        **PHANTOM_VERSIONS[1]["mri"],
        "kind": "mri",
        "size": 32,
        "n_train": 2,
        "n_unlabeled": 0,
        "seed": 0,
    }
    refused = run_cli("study.data", "phantom", "--kind", "mri", "--phantom-version", "3", "--out", str(tmp_path / "v3"))
    assert refused.returncode == 2 and "--phantom-version" in refused.stderr
