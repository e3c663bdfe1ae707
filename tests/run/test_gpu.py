"""A study on GPUs, checked before it starts: the trials packed on a GPU must fit its memory; the
dry run says what a trial needs and what the study costs. Pure functions, and the CLI with a GPU
named by --gpu-memory-gb, so no GPU is needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from study.errors import SpecError
from study.model import UNetConfig, training_memory, unet_macs
from study.preflight.gpu import (
    CUDA_CONTEXT_GIB,
    GIB,
    MEASURED_STEP_MS,
    Gpu,
    check_packing,
    rate_for,
    run_flops,
    time_lines,
    trial_memory,
    trials_per_gpu,
)
from study.preflight.workload import data_shape, runs
from tests.conftest import REPO, assert_user_error, run_cli

SPACES = REPO / "search_spaces"


@pytest.mark.parametrize(
    ("gpus", "limit", "per_gpu"),
    [(0.25, None, 4), (0.3, None, 3), (0.5, None, 2), (1, None, 1), (2, None, 1), (0.25, 2, 2), (0.1, None, 10)],
)
def test_trials_per_gpu_follow_rays_fractions(gpus: float, limit: int | None, per_gpu: int) -> None:
    assert trials_per_gpu(gpus, limit) == per_gpu


def test_a_packing_that_fits_is_said_and_one_that_cannot_is_refused() -> None:
    h100 = Gpu("NVIDIA H100 80GB HBM3", 80 * GIB)
    line = check_packing(0.25, 15 * GIB, h100)
    assert "4 trials per GPU" in line and "60.00 GiB" in line and "fits" in line
    with pytest.raises(SpecError) as refused:
        check_packing(0.25, 25 * GIB, h100)
    message = str(refused.value)
    assert message.startswith("resources.gpus_per_trial=0.25: 4 trials per GPU need about 100.00 GiB")
    assert "set resources.gpus_per_trial=0.333 (3 per GPU)" in message and "\n" not in message
    with pytest.raises(SpecError, match="one trial alone does not fit"):
        check_packing(1, 90 * GIB, h100)


def _spec(*overrides: str):
    spec = load_spec(SPACES / "pretext.yaml", ["scale=paper", *overrides])
    plan = make_plan(spec)
    return spec, plan, runs(plan, {n: data_shape(n, None, spec.scale.image_size) for n in spec.datasets})


def test_a_trial_needs_its_largest_step_its_cache_and_the_context() -> None:
    spec, _, all_runs = _spec()
    memory = trial_memory(spec, all_runs)
    # the CT networks (3 input channels) are the largest; the largest cache within 2 GiB is the MRI
    # fine-tuning's at 100 %: 320 slices of a 1 MiB float32 image and 4 classes of 512 x 512 bits
    step = training_memory(UNetConfig(in_channels=3, out_channels=4), 9, 512, 512)
    assert memory.model + memory.activations + memory.backward == step.total
    assert memory.cache == 320 * (2**20 + 2**17) and memory.context == CUDA_CONTEXT_GIB * GIB
    assert memory.total == step.total + 320 * (2**20 + 2**17) + CUDA_CONTEXT_GIB * GIB
    spec, _, all_runs = _spec("scale.gpu_cache_gb=0")
    assert trial_memory(spec, all_runs).cache == 0


def test_gpu_time_is_flops_over_a_stated_rate() -> None:
    _, _, all_runs = _spec()
    run = all_runs[0]  # an MRI pretraining: 320 training slices, 80 validation and 128 test slices
    forward = 2 * unet_macs(run.network, 512, 512)
    assert run_flops(run) == forward * (500 * (3 * 320 + 80) + 128)
    rate = rate_for(None)
    assert "ASSUMED, not measured" in rate.source and rate.flops == pytest.approx(0.35 * 989.4e12)
    hours = sum(run_flops(r) for r in all_runs) / rate.flops / 3600
    assert hours > 1 and f"at most {hours:,.1f} GPU-hours" in time_lines(all_runs, rate)[0]
    assert not MEASURED_STEP_MS, "a measured step time needs its figure in BENCHMARKS.md"


def test_speed_settings_do_not_change_trial_ids() -> None:
    _, plan, _ = _spec()
    _, faster, _ = _spec("scale.cache_gb=1", "scale.gpu_cache_gb=0", "scale.data_workers=5", "scale.compile=true")
    assert [t.id for t in plan.trials] == [t.id for t in faster.trials]
    assert [p for p in plan.pretrainings()] == [p for p in faster.pretrainings()]


def test_the_dry_run_refuses_a_packing_the_gpu_cannot_hold(tmp_path: Path) -> None:
    result = run_cli(
        "study.run",
        str(SPACES / "pretext.yaml"),
        "--set",
        "scale=paper",
        "--set",
        "resources.gpus_per_trial=0.25",
        "--set",
        f"storage={tmp_path}",
        "--gpu-memory-gb",
        "24",
        "--dry-run",
        cwd=tmp_path,
    )
    assert_user_error(
        result,
        "resources.gpus_per_trial=0.25: 4 trials per GPU need about",
        "the GPU of --gpu-memory-gb 24 has 24.00 GiB",
        "set resources.gpus_per_trial=0.5 (2 per GPU)",
    )
    assert not any(tmp_path.iterdir())
    result = run_cli(
        "study.run",
        str(SPACES / "smoke.yaml"),
        "--set",
        f"storage={tmp_path}",
        "--gpu-memory-gb",
        "0",
        "--dry-run",
        cwd=tmp_path,
    )
    assert_user_error(result, "--gpu-memory-gb 0 must be a positive number of GiB")


def test_the_dry_run_of_a_paper_scale_study_says_its_gpu_memory_and_time(tmp_path: Path) -> None:
    result = run_cli(
        "study.run",
        str(SPACES / "pretext.yaml"),
        "--set",
        "scale=paper",
        "--set",
        f"storage={tmp_path}",
        "--dry-run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "GPU memory per trial: 9.23 GiB (estimate: weights, gradients and Adam 0.12 GiB" in result.stdout
    assert "GPU time, one trial at a time on one GPU: at most" in result.stdout
    assert "ASSUMED, not measured" in result.stdout
    laptop = run_cli("study.run", str(SPACES / "smoke.yaml"), "--set", f"storage={tmp_path}", "--dry-run", cwd=tmp_path)
    assert laptop.returncode == 0 and "GPU memory" not in laptop.stdout and "GPU time" not in laptop.stdout
