from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from study.errors import SpecError
from study.train import Diverged, EarlyStopping, StepDecay, TrainSettings, fit, load_checkpoint


class Points(Dataset):
    """y = 3x - 1 with a little noise: a problem whose loss must fall."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 1, generator=g)
        self.y = 3 * self.x - 1 + 0.01 * torch.randn(64, 1, generator=g)

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "mask": self.y[i]}


def _run(max_epochs: int, checkpoint: Path | None = None, lr: float = 0.05, patience: int = 50):
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    generator = torch.Generator().manual_seed(1)
    data = Points()
    loader = DataLoader(data, batch_size=8, shuffle=True, generator=generator)
    result = fit(
        model,
        batches=loader,
        step_loss=lambda m, b: ((m(b["image"]) - b["mask"]) ** 2).mean(),
        val_loss=lambda m: float(((m(data.x) - data.y) ** 2).mean()),
        schedule=StepDecay(lr),
        stopper=EarlyStopping(patience, 1e-3, mode="absolute"),
        settings=TrainSettings(max_epochs=max_epochs, batch_size=8),
        generator=generator,
        checkpoint=checkpoint,
    )
    return model, result


def test_loss_falls_and_the_best_weights_are_returned() -> None:
    # Adam with the paper's beta1 = 0.99 overshoots on this tiny problem: the loss oscillates while
    # it falls, so the best epoch is not the last and must be the one kept.
    model, result = _run(12, lr=0.2)
    losses = [r["val_loss"] for r in result.history]
    assert min(losses) < losses[0] / 10
    assert result.best_val_loss == min(losses)
    assert result.best_epoch != len(losses) - 1
    model.load_state_dict(result.best_state)
    data = Points()
    with torch.no_grad():
        assert float(((model(data.x) - data.y) ** 2).mean()) == pytest.approx(min(losses))
    assert result.history[1]["lr"] == pytest.approx(0.2 * 0.9)  # step decay applied per epoch


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    _, straight = _run(6)
    _run(3, checkpoint=tmp_path / "ck.pt")  # "crash" after 3 epochs
    assert load_checkpoint(tmp_path / "ck.pt")["epoch"] == 2
    model, resumed = _run(6, checkpoint=tmp_path / "ck.pt")
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    for key, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[key])


def test_truncated_checkpoint_starts_afresh(tmp_path: Path) -> None:
    _run(2, checkpoint=tmp_path / "ck.pt")
    data = (tmp_path / "ck.pt").read_bytes()
    (tmp_path / "ck.pt").write_bytes(data[: len(data) // 2])
    assert load_checkpoint(tmp_path / "ck.pt") is None
    _, result = _run(2, checkpoint=tmp_path / "ck.pt")
    assert result.epochs_run == 2


def test_divergence_is_reported() -> None:
    with pytest.raises(Diverged, match="diverged"):
        _run(5, lr=1e30)  # Adam steps of ~lr: the squared error overflows float32


def test_early_stopping_ends_the_fit() -> None:
    _, result = _run(200, lr=0.05, patience=2)
    assert result.stop_reason == "early_stopping" and result.epochs_run < 200


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_epochs": -1}, "max_epochs=-1"),
        ({"device": "gpu7"}, "not a torch device"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TrainSettings(**kwargs)
