"""study.predict's pieces without a study: the label map from per-class masks, the input's layout
restored, the modality check. The round trip through a finished study and every refusal of the
command are checked on the study tests/data/test_any_image_size.py makes (tests/predict/round_trip.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.errors import DataError
from study.predict import _as_input_layout, _check_values, label_map

nibabel = pytest.importorskip("nibabel")


def test_label_map_takes_the_declared_values_and_the_higher_logit_where_two_classes_claim() -> None:
    masks = np.zeros((3, 1, 2, 3), bool)
    logits = np.zeros((3, 1, 2, 3), np.float32)
    masks[0, 0, 0, 0] = True  # one class: its value
    masks[1, 0, 0, 1] = masks[2, 0, 0, 1] = True  # two: the higher logit wins
    logits[1, 0, 0, 1], logits[2, 0, 0, 1] = 0.5, 2.0
    masks[0, 0, 1, 2] = masks[1, 0, 1, 2] = True
    logits[0, 0, 1, 2], logits[1, 0, 1, 2] = 3.0, 0.1
    labels, claimed_twice = label_map(masks, logits, [1, 7, 300])
    assert labels.tolist() == [[[1, 300, 0], [0, 0, 1]]] and claimed_twice == 2
    assert labels.dtype == np.int16  # 300 does not fit uint8
    assert label_map(masks, logits, [1, 2, 3])[0].dtype == np.uint8


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_the_input_layout_is_restored_for_any_slice_axis(tmp_path: Path, slice_axis: int) -> None:
    from study.data.nifti import _load

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = nibabel.Nifti1Image(data, np.eye(4))
    nibabel.save(image, str(tmp_path / "v.nii.gz"))
    slices_first, _ = _load(tmp_path / "v.nii.gz", slice_axis)  # as the import and study.predict read it
    assert np.array_equal(_as_input_layout(slices_first, image, slice_axis), data)
    flat = nibabel.Nifti1Image(data[..., 0], np.eye(4))
    assert np.array_equal(_as_input_layout(data[..., 0][None], flat, 2), data[..., 0])


def test_a_volume_of_the_other_modality_is_refused() -> None:
    ct = np.full((2, 8, 8), -1000.0)
    ct[:, 2:6, 2:6] = 40.0
    mri = np.random.default_rng(0).normal(100, 10, (2, 8, 8))
    _check_values(Path("ct.nii"), ct, "ct")
    _check_values(Path("mri.nii"), mri, "mri")
    with pytest.raises(DataError, match="as a CT in HU; the study's data set is MRI"):
        _check_values(Path("ct.nii"), ct, "mri")
    with pytest.raises(DataError, match="as an MRI magnitude"):
        _check_values(Path("mri.nii"), mri, "ct")
    with pytest.raises(DataError, match="NaN or infinite"):
        _check_values(Path("x.nii"), np.array([np.nan, -1000.0]), "ct")


def test_the_trial_defaults_to_the_optimum_at_its_largest_fraction_and_refuses_what_did_not_run(tmp_path: Path) -> None:
    """On the synthetic study tests/analysis/test_cli.py ranks (restoration clearly ahead): no --strategy
    means the analysis's optimum, no --fraction its largest label fraction, no --seed the spec's."""
    from study.errors import SpecError
    from study.folder.store import StudyStore
    from study.predict import choose_trial
    from tests.analysis.test_cli import write_study

    store = StudyStore(write_study(tmp_path))
    state = store.read_state()
    chosen = choose_trial(store, state, "mri", None, None, None)
    assert (chosen.strategy, chosen.label_fraction, chosen.seed) == (
        "restoration/K32/poisson_disc|encoder/at_once",
        1.0,
        0,
    )
    assert chosen.why == "the optimum of the study's analysis"
    assert store.trial_result(chosen.trial_id).label_fraction == 1.0
    low = choose_trial(store, state, "mri", "supervised", 0.05, 0)
    assert store.trial_result(low.trial_id).strategy == "supervised" and low.why == "named by --strategy"
    with pytest.raises(SpecError, match=r"--fraction 0.5: supervised ran at label fraction\(s\) 0.05, 0.25, 1"):
        choose_trial(store, state, "mri", "supervised", 0.5, None)
    with pytest.raises(SpecError, match=r"--seed 3: .* ran with seed\(s\) 0"):
        choose_trial(store, state, "mri", "supervised", None, 3)
    with pytest.raises(SpecError, match="the study's strategies: prediction/K8/random|encoder/at_once, restoration"):
        choose_trial(store, state, "mri", "restoration", None, None)
