from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.errors import SpecError
from study.pretext import SAMPLERS, TASKS, preview_figure, render_preview, synthetic_image
from study.pretext.__main__ import main


def test_synthetic_image_is_smooth_zscored_and_seeded() -> None:
    image = synthetic_image(96, seed=4)
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert abs(image.mean()) < 1e-5 and abs(image.std() - 1) < 1e-4
    assert np.abs(np.diff(image, axis=1)).max() < 0.5  # smooth: no jumps between neighbours
    np.testing.assert_array_equal(image, synthetic_image(96, seed=4))
    assert not np.array_equal(image, synthetic_image(96, seed=5))


def test_preview_grid_has_one_panel_per_task_sampler_and_patch_size() -> None:
    image = synthetic_image(128, seed=0)
    figure = preview_figure(image, (64, 32, 16, 8), seed=0)
    assert len(figure.panels) == len(TASKS) * len(SAMPLERS) * 4
    assert [p.patch_size for p in figure.panels[:4]] == [16, 8, 4, 2]  # 512-px sizes at 128 px
    for panel in figure.panels:
        changed = panel.changed.mean()
        if panel.sampler == "random" and panel.task == "prediction":
            assert changed >= 0.25
        elif panel.sampler == "random":
            assert changed > 0.2  # overlapping pairs can swap a pixel back
        else:
            n = 128 * 128 // (4 * panel.patch_size**2)
            assert changed == n * panel.patch_size**2 / 128**2
        if panel.task == "prediction":
            assert (panel.image[panel.changed] == 0.0).all()  # the mean of the z-scored image
        else:
            np.testing.assert_array_equal(np.sort(panel.image.ravel()), np.sort(figure.original.ravel()))
        np.testing.assert_array_equal(panel.image[~panel.changed], figure.original[~panel.changed])


def test_preview_accepts_a_multichannel_non_square_image() -> None:
    image = np.random.default_rng(0).normal(5.0, 3.0, size=(3, 90, 70))
    figure = preview_figure(image, (64,), seed=1, tasks=("restoration",), samplers=("random",))
    assert figure.original.shape == (90, 70) and abs(figure.original.mean()) < 1e-5
    assert figure.panels[0].patch_size == 10  # round(64 * round(sqrt(90 * 70)) / 512) = round(9.94)


def test_preview_refuses_an_image_that_is_not_2d() -> None:
    with pytest.raises(SpecError, match=r"finite \(H, W\) or \(C, H, W\) array, got shape \(4,\)"):
        preview_figure(np.zeros(4))


def test_render_writes_a_png(tmp_path: Path) -> None:
    figure = preview_figure(synthetic_image(32), (64, 16), seed=0, samplers=("poisson_disc",))
    render_preview(figure, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_the_grid_and_refuses_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig.png"
    assert main(["preview", "--out", str(out), "--size", "48", "--patch-sizes", "64,32"]) == 0
    assert out.stat().st_size > 0
    bad = tmp_path / "bad.png"
    assert main(["preview", "--out", str(bad), "--patch-sizes", "64,x"]) == 2
    assert "--patch-sizes must be comma-separated integers" in capsys.readouterr().err
    assert main(["preview", "--out", str(bad), "--image", str(tmp_path / "missing.npy")]) == 2
    assert "cannot read a .npy array" in capsys.readouterr().err
    assert not bad.exists()  # nothing written on error
    np.save(tmp_path / "slice.npy", synthetic_image(40, seed=1))
    image = ["--image", str(tmp_path / "slice.npy"), "--patch-sizes", "64"]
    assert main(["preview", "--out", str(bad), *image]) == 0
