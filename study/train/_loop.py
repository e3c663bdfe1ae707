"""The training loop shared by pretraining and fine-tuning: one function a trial and a test call.

It reads in running order: learning rate for the epoch, the epoch's steps, validation, early
stopping and the best weights, a checkpoint with everything a resume needs, then the log callback.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from study import faults
from study.constants import DEFAULT_PAD_MODE, DEFAULT_SEED, check_pad_mode
from study.errors import SpecError
from study.train._early_stopping import Diverged, EarlyStopping
from study.train._schedule import StepDecay, set_lr

ADAM_BETAS = (0.99, 0.995)  # the authors' code
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TrainSettings:
    """How to train, independent of what: batch, budget, device, seed.

    ``max_epochs`` is the upper budget (the paper: 500 with early stopping); ``steps_per_epoch``
    optionally fixes the batches per epoch (cycling a small subset, cutting a large one), so an
    epoch means the same amount of work on data sets of any size. On CUDA, ``bf16`` autocast and
    ``channels_last`` are used (the numbers are not bit-identical there anyway). On a CPU they are
    ``cpu_bf16`` and ``cpu_channels_last``, off by default: each gives other numbers than float32
    in NCHW (channels_last a step about 7 % faster, bf16 a slower one without AMX; BENCHMARKS.md),
    and with any of them the same seed and thread count still give the same numbers. ``pad_mode``
    pads a slice whose H or W is not a multiple of the U-Net's ``2 ** (levels - 1)`` for the
    network only (``study.data.padding``).
    ``cache_gb`` and ``gpu_cache_gb`` are the budgets of a cache of the training slices in host RAM
    and on the GPU (``study.train._cache``; 0: lazy reads with ``num_workers`` workers); ``compile``
    runs the model through ``torch.compile`` on CUDA (a CPU ignores it, so its reruns stay
    bit-identical).
    """

    batch_size: int = 9
    max_epochs: int = 500
    steps_per_epoch: int | None = None
    device: str = "cpu"
    seed: int = DEFAULT_SEED
    num_workers: int = 0
    bf16: bool = True
    channels_last: bool = True
    cpu_bf16: bool = False
    cpu_channels_last: bool = False
    pad_mode: str = DEFAULT_PAD_MODE
    cache_gb: float = 0.0
    gpu_cache_gb: float = 0.0
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise SpecError(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise SpecError(f"steps_per_epoch={self.steps_per_epoch!r} must be an integer >= 1 or null")
        if self.num_workers < 0:
            raise SpecError(f"num_workers={self.num_workers} must be >= 0")
        for name in ("cache_gb", "gpu_cache_gb"):
            if not getattr(self, name) >= 0:
                raise SpecError(f"{name}={getattr(self, name)!r} must be a number of GiB >= 0")
        try:
            check_pad_mode(self.pad_mode)
        except ValueError as exc:
            raise SpecError(f"pad_mode: {exc}") from None
        try:
            torch.device(self.device)
        except RuntimeError:
            raise SpecError(f"device={self.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None

    @property
    def on_cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    @property
    def uses_bf16(self) -> bool:
        return self.bf16 if self.on_cuda else self.cpu_bf16

    @property
    def uses_channels_last(self) -> bool:
        return self.channels_last if self.on_cuda else self.cpu_channels_last

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.uses_bf16:
            return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, model: nn.Module) -> nn.Module:
        """The model on the training device, in the memory format its batches come in."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.uses_channels_last else model

    def runnable(self, model: nn.Module) -> nn.Module:
        """What the steps call: the model itself, or on CUDA with ``compile`` its compiled wrapper
        (same parameters; the model keeps its own state-dict names)."""
        return torch.compile(model) if self.compile and self.on_cuda else model

    def to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.uses_channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@dataclass
class FitResult:
    """What a fit produced: the best weights (the ones to evaluate) and the learning curve."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str = "max_epochs"
    steps: int = 0  # optimiser steps over every epoch run, resumed ones included (compute accounting)
    # Wall seconds of those steps (batches read, forward, backward, optimiser; no validation or
    # checkpoint), resumed epochs included: what a study's wall time is compared with (BENCHMARKS.md).
    step_seconds: float = 0.0


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    faults.before_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none or it is unreadable (truncated)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable checkpoint means "start this fit afresh"
        return None


def fit(
    model: nn.Module,
    *,
    batches: Iterable[dict[str, Tensor]],
    step_loss: Callable[[nn.Module, dict[str, Tensor]], Tensor],
    val_loss: Callable[[nn.Module], float],
    schedule: StepDecay,
    stopper: EarlyStopping,
    settings: TrainSettings,
    generator: torch.Generator,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` until early stopping or ``settings.max_epochs``; return the best weights.

    ``batches`` is re-iterated every epoch (a DataLoader shuffling with ``generator``);
    ``step_loss(model, batch)`` returns the training loss of one batch; ``val_loss(model)`` the
    validation loss (called in eval mode under ``torch.inference_mode``). With ``checkpoint`` set, the
    state after every epoch is saved there and a later call with the same path resumes from it.
    Raises :class:`Diverged` when the validation or training loss becomes NaN or infinite.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    # foreach: the very arithmetic of the per-parameter loop (checked bit for bit on a CPU, where
    # the loop is the default), in fewer calls: a laptop step spends 20 % less in Adam.
    optimizer = torch.optim.Adam(params, lr=schedule.initial_lr, betas=ADAM_BETAS, eps=ADAM_EPS, foreach=True)
    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    start, steps, step_seconds = 0, 0, 0.0
    saved = load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        stopper.load_state_dict(saved["stopper"])
        generator.set_state(saved["generator"])
        best_state, history, start = saved["best_state"], saved["history"], saved["epoch"] + 1
        steps = int(saved.get("steps", 0))
        step_seconds = float(saved.get("step_seconds", 0.0))
    stop_reason = "early_stopping" if stopper.should_stop else "max_epochs"
    runner = settings.runnable(model)

    for epoch in range(start, settings.max_epochs):
        if stopper.should_stop:
            break
        lr = schedule.lr_at(epoch)
        set_lr(optimizer, lr)

        model.train()
        total, n = 0.0, 0
        began = time.perf_counter()
        for step, batch in enumerate(batches):
            if settings.steps_per_epoch is not None and step >= settings.steps_per_epoch:
                break
            with settings.autocast():
                loss = step_loss(runner, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Summed on the loss's device in float64, the very additions of Python floats: reading
            # the loss back every step would make the host wait for the GPU before the next batch.
            total, n = total + loss.detach().double(), n + 1
        steps += n
        train_loss = float(total) / max(n, 1)  # on CUDA this waits for the epoch's last step
        step_seconds += time.perf_counter() - began
        if not math.isfinite(train_loss):
            raise Diverged(train_loss, epoch, stopper.best, stopper.best_epoch)

        model.eval()
        # inference_mode, not just no_grad: no version counters or views to track, the same logits
        # to the bit, a faster pass (BENCHMARKS.md); val_loss returns a float, nothing escapes it.
        with torch.inference_mode(), settings.autocast():
            val = float(val_loss(runner))
        improved = stopper.step(val, epoch)  # raises Diverged on NaN
        if improved:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

        record = {"epoch": float(epoch), "lr": lr, "train_loss": train_loss, "val_loss": val}
        history.append(record)
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "stopper": stopper.state_dict(),
                    "generator": generator.get_state(),
                    "best_state": best_state,
                    "history": history,
                    "epoch": epoch,
                    "steps": steps,
                    "step_seconds": step_seconds,
                },
            )
        if on_epoch is not None:
            on_epoch(record)
        if stopper.should_stop:
            stop_reason = "early_stopping"

    return FitResult(
        best_state=best_state,
        best_epoch=-1 if stopper.best_epoch is None else stopper.best_epoch,
        best_val_loss=stopper.best,
        epochs_run=len(history),
        history=history,
        stop_reason=stop_reason,
        steps=steps,
        step_seconds=step_seconds,
    )
