"""Pruning compares patients: a CT set imported from NIfTI (several slices per volume) is paired by
patient at a rung, through the rung files as a trial writes them and the searcher that decides."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
from scipy import stats

from study.analysis import configuration, pooled_fractions
from study.data import open_dataset
from study.data.nifti import NiftiImport, import_nifti, parse_classes
from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from study.execution.rung_search import RungSearch
from study.execution.trial import Paused, case_subjects, run_trial
from study.folder.store import StudyStore

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SLICES = 3
# the learning rate that cannot learn: its configurations are worse by this much on every patient
SHIFT = {0.01: 0.0, 1e-6: -0.3}


@pytest.fixture(scope="module")
def nifti_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 CT volumes of 3 slices each, imported as the README says (CT slices become the cases)."""
    root = tmp_path_factory.mktemp("nifti")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(15):
        for folder, data in (
            (images, rng.normal(0, 200, (8, 8, SLICES)).astype(np.float32)),
            (labels, rng.integers(0, 3, (8, 8, SLICES)).astype(np.int16)),
        ):
            nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(folder / f"pat{i:02d}.nii.gz"))
    cfg = NiftiImport(
        images, labels, parse_classes("muscle=1,fat=2"), modality="ct", val_fraction=0.6, test_fraction=0.2
    )
    return import_nifti(cfg, root / "ct")


def _study(tmp_path: Path, data: Path):
    spec = load_spec(
        SPACES / "smoke.yaml",
        [
            f"datasets=[{data}]",
            "label_fractions=[0.25,0.5]",
            "pruning.enabled=true",
            "pruning.min_survivors=1",
            "finetuning.lr=[0.01,0.000001]",
        ],
    )
    return spec, make_plan(spec).trials, StudyStore(tmp_path / "study")


def _slice_dice(dataset, trials, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per trial, a Dice per validation slice: the patient's difficulty, the slice's, the
    configuration's shift and trial noise (slices of one patient are correlated, as on real CT)."""
    val = list(dataset.split.val)
    patient = {p: rng.uniform(0.5, 0.8) for p in sorted({dataset.scans[c].subject_id for c in val})}
    difficulty = {c: patient[dataset.scans[c].subject_id] + rng.normal(0, 0.05) for c in val}
    return {t.id: {c: float(difficulty[c] + SHIFT[t.lr] + rng.normal(0, 0.02)) for c in val} for t in trials}


def _decide(spec, trials, store, dice, subjects: bool) -> dict[str, dict]:
    dataset = open_dataset(spec.datasets[0])
    for t in trials:
        record = {"rung": 0, "epoch": 1, "seconds": 1.0, "val_dice": dice[t.id], "val_loss": 0.5}
        if subjects:  # what trial.run_trial writes; rung files of older studies have no subjects
            record["val_subject"] = case_subjects(dataset, dice[t.id])
        store.save_rung_values(t.id, 0, record)
    RungSearch(trials, store, spec, metric="val_loss")  # a driver that finds every trial at the rung decides it
    return {d["strategy"]: d for d in store.rung_decisions(spec.datasets[0], 0)}


def _means(trials, dice, by) -> dict[str, np.ndarray]:
    """Configuration -> its mean per unit (``by``: case -> unit) over the pooled fractions."""
    pooled = pooled_fractions([t.label_fraction for t in trials], None)
    out = {}
    for t in trials:
        if t.label_fraction in pooled:
            units: dict[str, list[float]] = {}
            for case, v in dice[t.id].items():
                units.setdefault(by(case), []).append(v)
            out.setdefault(configuration(t.strategy, t.lr, t.unfrozen_lr), []).append(
                [np.mean(units[u]) for u in sorted(units)]
            )
    return {s: np.mean(v, axis=0) for s, v in out.items()}


def test_a_nifti_ct_set_is_paired_by_patient_at_a_rung(nifti_ct: Path, tmp_path: Path) -> None:
    spec, trials, store = _study(tmp_path, nifti_ct)
    dataset = open_dataset(nifti_ct)
    patients = {dataset.scans[c].subject_id for c in dataset.split.val}
    assert len(dataset.split.val) == SLICES * len(patients) == 27
    dice = _slice_dice(dataset, trials, np.random.default_rng(1))
    decisions = _decide(spec, trials, store, dice, subjects=True)
    per_patient = _means(trials, dice, lambda c: dataset.scans[c].subject_id)
    per_slice = _means(trials, dice, lambda c: c)
    assert set(decisions) == {s for s in per_patient if not s.startswith("supervised")}
    for name, d in decisions.items():
        assert d["n"] == len(patients) == 9 and d["unit"] == "patient"
        mine, theirs = per_patient[name], per_patient[d["comparator"]]
        assert d["p"] == pytest.approx(stats.wilcoxon(theirs, mine, alternative="greater").pvalue, rel=1e-12)
        assert d["mean_dice"] == pytest.approx(mine.mean()) and d["comparator_dice"] == pytest.approx(theirs.mean())
    broken = configuration(next(t.strategy for t in trials if t.pretraining is not None), 1e-6, None)
    assert [name for name, d in decisions.items() if d["stopped"]] == [broken]
    # worse on all 9 patients: p = 1/2^9, times its 3 comparators, times 2 tested configurations (Holm);
    # paired by slice the same data would have claimed 27 pairs, p = 1/2^27
    assert decisions[broken]["p"] == 2.0**-9 and decisions[broken]["p_holm"] == 6 * 2.0**-9
    comparator = decisions[broken]["comparator"]
    assert stats.wilcoxon(per_slice[comparator], per_slice[broken], alternative="greater").pvalue == 2.0**-27
    # the stopped configuration's trials have their stopped record, the reason naming patients
    stopped = [r for r in store.results() if r.stopped]
    assert len(stopped) == 2 and all("9 validation patients" in r.reason for r in stopped)


def test_rung_files_without_subjects_still_decide_by_case(nifti_ct: Path, tmp_path: Path) -> None:
    """A study folder paused at a rung by the code before subjects were recorded resumes."""
    spec, trials, store = _study(tmp_path, nifti_ct)
    dataset = open_dataset(nifti_ct)
    dice = _slice_dice(dataset, trials, np.random.default_rng(1))
    decisions = _decide(spec, trials, store, dice, subjects=False)
    assert {(d["n"], d["unit"]) for d in decisions.values()} == {(27, "case")}


def test_a_paused_trial_names_each_validation_case_s_subject(nifti_ct: Path, tmp_path: Path) -> None:
    spec, trials, store = _study(tmp_path, nifti_ct)
    trial = next(t for t in trials if t.pretraining is None)
    assert isinstance(run_trial(store, trial, data_path=str(nifti_ct), rung=0, until_epoch=1), Paused)
    record = store.rung_values(trial.id, 0)
    val = open_dataset(nifti_ct).split.val
    assert sorted(record["val_dice"]) == sorted(val)
    assert record["val_subject"] == {c: c.split("_s")[0] for c in val}  # pat03_s001 is a slice of pat03
