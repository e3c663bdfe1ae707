"""How a CPU computes a trial: float32 NCHW by default, bit-identical to the loop it replaced and run
to run; channels_last and bf16 autocast only when the scale asks, each with its own trial ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from study.design.scale import Scale
from study.execution.configs import train_settings
from study.model import UNet, UNetConfig
from study.train import EarlyStopping, StepDecay, TrainSettings, fit
from study.train._loop import ADAM_BETAS, ADAM_EPS
from study.train._losses import soft_dice_loss
from study.train._schedule import set_lr

TINY = UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32), groups=4)
EPOCHS = 3


@pytest.fixture(autouse=True)
def _one_thread():
    # A study trial's thread count; on a busy 2-core machine two threads also wait on each other
    # (these fits took 2-4 s each at two threads under load, 0.1 s at one).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data() -> tuple[list[dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 1, 32, 32, generator=g)
    y = (torch.rand(12, 4, 32, 32, generator=g) > 0.6).float()
    return [{"image": x[i : i + 4], "mask": y[i : i + 4]} for i in range(0, 8, 4)], x[8:], y[8:]


def _fit(settings: TrainSettings, checkpoint: Path | None = None, max_epochs: int = EPOCHS):
    batches, vx, vy = _data()
    model = settings.place(UNet(TINY, seed=2))

    def step_loss(m, b):
        return soft_dice_loss(m(settings.to_device(b["image"])), b["mask"])

    def val_loss(m):
        return float(soft_dice_loss(m(settings.to_device(vx)).float(), vy))

    result = fit(
        model,
        batches=batches,
        step_loss=step_loss,
        val_loss=val_loss,
        schedule=StepDecay(0.01),
        stopper=EarlyStopping(10, 1e-3, mode="absolute"),
        settings=replace(settings, max_epochs=max_epochs),
        generator=torch.Generator().manual_seed(0),
        checkpoint=checkpoint,
    )
    return model, result


def _the_loop_before() -> tuple[UNet, list[float]]:
    """The fit loop as it was before the CPU settings: Adam's per-parameter loop (a CPU's default),
    validation under no_grad."""
    batches, vx, vy = _data()
    model = UNet(TINY, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=ADAM_BETAS, eps=ADAM_EPS)
    schedule, val = StepDecay(0.01), []
    for epoch in range(EPOCHS):
        set_lr(optimizer, schedule.lr_at(epoch))
        model.train()
        for b in batches:
            loss = soft_dice_loss(model(b["image"]), b["mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val.append(float(soft_dice_loss(model(vx), vy)))
    return model, val


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_default_on_a_cpu_is_float32_nchw_and_bit_identical_to_the_loop_before() -> None:
    settings = TrainSettings(batch_size=4)
    assert not settings.uses_bf16 and not settings.uses_channels_last
    model, result = _fit(settings)
    before, val = _the_loop_before()
    assert [r["val_loss"] for r in result.history] == val
    assert _same_weights(model, before)
    assert all(p.is_contiguous() for p in model.parameters())


def test_channels_last_on_a_cpu_is_bit_identical_run_to_run_and_close_to_float32() -> None:
    settings = TrainSettings(batch_size=4, cpu_channels_last=True)
    assert settings.uses_channels_last
    first, a = _fit(settings)
    second, b = _fit(settings)
    assert first.enc_1.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert settings.to_device(torch.zeros(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert [r["val_loss"] for r in a.history] == [r["val_loss"] for r in b.history]
    assert _same_weights(first, second)
    _, fp32 = _fit(TrainSettings(batch_size=4))
    for cl, ref in zip(a.history, fp32.history):  # another summation order: the low digits move
        assert abs(cl["val_loss"] - ref["val_loss"]) < 1e-3


def test_bf16_on_a_cpu_trains_and_stays_near_float32() -> None:
    settings = TrainSettings(batch_size=4, cpu_bf16=True)
    assert settings.uses_bf16
    with settings.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    _, low = _fit(settings)
    _, again = _fit(settings)
    _, fp32 = _fit(TrainSettings(batch_size=4))
    assert [r["val_loss"] for r in low.history] == [r["val_loss"] for r in again.history]
    # bf16 keeps 8 bits of mantissa: the Dice loss moves in the second or third digit, not more
    for bf, ref in zip(low.history, fp32.history):
        assert abs(bf["val_loss"] - ref["val_loss"]) < 0.05
    assert any(bf["val_loss"] != ref["val_loss"] for bf, ref in zip(low.history, fp32.history))


def test_step_seconds_are_counted_and_survive_a_resume(tmp_path: Path) -> None:
    _, straight = _fit(TrainSettings(batch_size=4))
    assert straight.step_seconds > 0
    _, first = _fit(TrainSettings(batch_size=4), checkpoint=tmp_path / "ck.pt", max_epochs=2)
    _, resumed = _fit(TrainSettings(batch_size=4), checkpoint=tmp_path / "ck.pt")
    assert resumed.step_seconds > first.step_seconds > 0
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]


def test_the_cpu_settings_are_in_trial_ids_only_when_set() -> None:
    laptop = Scale()
    assert "cpu_channels_last" not in laptop.hashed() and "cpu_bf16" not in laptop.hashed()
    for field in ("cpu_channels_last", "cpu_bf16"):
        changed = Scale.model_validate({"profile": "laptop", field: True})
        assert changed.hashed() == {**laptop.hashed(), field: True}
        assert getattr(train_settings(changed, stage="finetune", device="cpu", seed=1), field) is True
    assert not train_settings(Scale(), stage="finetune", device="cpu", seed=1).cpu_bf16
