"""Early stopping on validation loss, resumable, with divergence reported (docs/science.md §4).

The reference (C) uses Keras ``EarlyStopping`` on ``val_loss``: segmentation with min delta 1e-3 and
patience 10, inpainting with patience 4; the best checkpoint is the one evaluated. We keep Keras'
counting: an evaluation improves when it beats the best so far by *more than* the min delta; each
evaluation that does not adds one to ``wait``; training stops once ``wait`` reaches ``patience``.

**Min delta at every image size.** The Dice loss lies in [0, 1] whatever the image size, so an
``"absolute"`` min delta of 1e-3 means the same everywhere. The inpainting loss is a *sum* over
pixels (:func:`~study.train._losses.inpainting_loss`): at 512 × 512 it is 64 times its value at
64 × 64, so an absolute 1e-3 would be "any improvement" at paper scale and something else on a
laptop phantom. Mode ``"relative"`` asks instead that the loss fall by more than
``min_delta · |best|``, a fraction that does not depend on H·W.

Presets: :meth:`EarlyStopping.for_segmentation` (absolute 1e-3, patience 10, C) and
:meth:`EarlyStopping.for_inpainting` (relative 1e-3, patience 4; the relative delta is ours (I),
the patience is C's).

A NaN or infinite validation loss raises :class:`Diverged` (the trial runner records the trial as
failed with that reason; STYLE "A crashed or NaN trial is recorded"), never counts as "no
improvement": a diverged run would otherwise idle for ``patience`` more epochs and report a best
checkpoint as if it had converged.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

from study.errors import SpecError

Mode = Literal["relative", "absolute"]
MODES: tuple[str, ...] = ("relative", "absolute")


class Diverged(RuntimeError):
    """Raised by :meth:`EarlyStopping.step` when the validation loss is NaN or infinite.

    Not a :class:`~study.errors.StudyError`: the user's settings are not at fault in a way a message
    could name, and the study goes on with the next trial. ``epoch`` and ``value`` say where it
    happened; ``best`` / ``best_epoch`` describe the last good checkpoint.
    """

    def __init__(self, value: float, epoch: int, best: float, best_epoch: int | None) -> None:
        self.value = value
        self.epoch = epoch
        self.best = best
        self.best_epoch = best_epoch
        if best_epoch is None:
            where = "no finite loss before"
        else:
            where = f"best {best:.6g} at epoch {best_epoch}"
        super().__init__(f"validation loss diverged: {value} at epoch {epoch} ({where})")


class EarlyStopping:
    """Tracks the best validation loss and says when to stop.

    ``patience``: evaluations without improvement before stopping (integer >= 1; Keras counts the
    same way, one evaluation per epoch). ``min_delta``: the margin an improvement must exceed,
    >= 0; in ``"relative"`` mode a fraction of ``|best|`` and below 1. ``mode``: see the module.

    Usage, once per epoch after validation::

        if stopper.step(val_loss, epoch):   # improved: save the best checkpoint
            save(...)
        if stopper.should_stop:
            break

    :meth:`state_dict` / :meth:`load_state_dict` carry the counters through a resume.
    """

    def __init__(self, patience: int, min_delta: float, mode: Mode = "relative") -> None:
        is_integer = isinstance(patience, numbers.Integral) and not isinstance(patience, bool)
        if not (is_integer and patience >= 1):
            raise SpecError(f"early stopping patience={patience!r} must be an integer >= 1")
        if mode not in MODES:
            raise SpecError(f"early stopping mode={mode!r} must be one of {', '.join(MODES)}")
        is_number = isinstance(min_delta, numbers.Real) and not isinstance(min_delta, bool)
        if not (is_number and math.isfinite(min_delta) and min_delta >= 0):
            raise SpecError(f"early stopping min_delta={min_delta!r} must be a finite number >= 0")
        if mode == "relative" and min_delta >= 1:
            # A relative margin of 1 or more asks the loss to fall below zero (for a positive loss).
            raise SpecError(
                f"early stopping min_delta={min_delta!r} must lie in [0, 1) in relative mode "
                "(a fraction of the best loss)"
            )
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode: Mode = mode
        self.best = math.inf
        self.best_epoch: int | None = None
        self.last_epoch: int | None = None
        self.wait = 0
        self.diverged = False

    @classmethod
    def for_segmentation(cls) -> EarlyStopping:
        """Dice loss: absolute min delta 1e-3, patience 10 (docs/science.md §4, C)."""
        return cls(patience=10, min_delta=1e-3, mode="absolute")

    @classmethod
    def for_inpainting(cls) -> EarlyStopping:
        """Inpainting L2 loss: patience 4 (C); min delta 1e-3 of the best loss (I, see module)."""
        return cls(patience=4, min_delta=1e-3, mode="relative")

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` evaluations in a row did not improve, or after divergence."""
        return self.diverged or (self.best_epoch is not None and self.wait >= self.patience)

    def threshold(self) -> float:
        """The value a loss must fall below to count as an improvement now."""
        if math.isinf(self.best):
            return math.inf
        margin = self.min_delta * abs(self.best) if self.mode == "relative" else self.min_delta
        return self.best - margin

    def step(self, value: float, epoch: int) -> bool:
        """Record the validation loss of ``epoch``; return True if it is a new best.

        ``epoch`` must increase from call to call (a resumed run continues the numbering).
        Raises :class:`Diverged` for a NaN or infinite ``value``.
        """
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool):
            raise TypeError(f"epoch={epoch!r} must be an integer")
        if self.last_epoch is not None and epoch <= self.last_epoch:
            # Catches a resume that replays epochs and would count them twice.
            raise ValueError(f"epoch {epoch} is not after the last recorded epoch {self.last_epoch}")
        value = float(value)  # also accepts a 0-d tensor or numpy scalar
        if self.diverged:
            raise Diverged(value, int(epoch), self.best, self.best_epoch)
        self.last_epoch = int(epoch)
        if not math.isfinite(value):
            self.diverged = True
            raise Diverged(value, int(epoch), self.best, self.best_epoch)
        if value < self.threshold():
            self.best, self.best_epoch, self.wait = value, int(epoch), 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; plain Python values (JSON-safe: no ``inf``)."""
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "best": None if math.isinf(self.best) else self.best,
            "best_epoch": self.best_epoch,
            "last_epoch": self.last_epoch,
            "wait": self.wait,
            "diverged": self.diverged,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`state_dict`.

        The settings must match this instance's: a resume continues the same run, and a changed
        patience or min delta would silently re-interpret the counters.
        """
        for name in ("patience", "min_delta", "mode"):
            if state.get(name) != getattr(self, name):
                raise SpecError(
                    f"early stopping {name}={getattr(self, name)!r} differs from the checkpoint's "
                    f"{name}={state.get(name)!r}; resume with the settings the run started with"
                )
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.last_epoch = state["last_epoch"]
        self.wait = int(state["wait"])
        self.diverged = bool(state["diverged"])

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
            f"mode={self.mode!r}, best={self.best}, best_epoch={self.best_epoch}, wait={self.wait})"
        )
