"""What a run prints while it runs and when it ends (issue 27, Found 1): validation figures only,
one time left for the whole study, the final table in numeric order with the baseline marked.
Nothing here starts Ray or trains."""

from __future__ import annotations

import re

import pytest

from study.execution import progress as progress_module
from study.execution.progress import Progress, StudyClock, summary_table
from study.folder.records import PretrainRecord, Status, TrialRecord


def _trial(strategy: str, fraction: float, val_loss: float, dice: float, task: str = "restoration") -> TrialRecord:
    return TrialRecord(
        trial_id=f"{strategy}-{fraction}",
        status=Status.FINISHED,
        dataset="mri",
        strategy=strategy,
        label_fraction=fraction,
        task=task,
        metrics={"val_loss": val_loss, "dice": dice},
    )


def test_progress_shows_validation_losses_and_one_time_left_for_the_study(monkeypatch, capsys) -> None:
    now = [1000.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: now[0])
    clock = StudyClock(trials=6)
    pre = Progress("pretext pretraining", 2, clock=clock, phase="pretrain")
    now[0] += 60
    record = {"key": "k", "strategy": "r", "status": "finished", "best_val_loss": 812.5}
    pre.finished(PretrainRecord.from_json(record), "restoration K32 poisson | mri")
    # one pretraining a minute: one more, then six trials counted at that rate until one has finished
    assert "| ~7m00s left (with the trials)" in capsys.readouterr().out
    now[0] += 60
    pre.finished(
        PretrainRecord.from_json({**record, "key": "j", "best_val_loss": 800.0}), "prediction K32 poisson | mri"
    )
    assert "~6m00s left (with the trials)" in capsys.readouterr().out  # not 0: the trials are still to come

    trials = Progress("pretext", 6, clock=clock)
    now[0] += 30
    trials.finished(_trial("supervised", 0.05, 0.40, 0.84, task="none"), "supervised | 5 % | mri")
    now[0] += 30
    trials.finished(
        _trial("restoration/K32/poisson_disc|encoder/at_once", 0.05, 0.45, 0.90), "restoration K32 poisson | 5 % | mri"
    )
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(
        "last restoration K32 poisson | 5 % | mri: validation loss 0.450 (best there 0.400, supervised) | ~2m00s left"
    )
    assert not [line for line in out if "Dice" in line]  # test data never show while the search runs
    now[0] += 30
    trials.finished(
        _trial("prediction/K32/poisson_disc|encoder/at_once", 1.0, 0.30, 0.5), "prediction K32 poisson | 100 % | mri"
    )
    assert "validation loss 0.300 (best there) | ~1m30s left" in capsys.readouterr().out  # its own fraction's best


def test_a_pruned_grid_counts_its_time_left_in_fine_tuning_epochs(monkeypatch, capsys) -> None:
    # Every trial of a pruned grid pauses at each rung, so finished trials come last: counted in
    # trials, the time left after the first rung would be minutes per finished trial times all of them.
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: now[0])
    trials = Progress("pretext", 4, clock=StudyClock(trials=4), epochs_per_trial=10)
    for name in "abcd":  # every trial to the rung at epoch 5: 20 epochs in 100 s, 5 s an epoch
        now[0] += 25
        trials.reached(name, 5)
    trials.line()
    assert "~1m40s left" in capsys.readouterr().out  # 20 epochs still to run, nothing stopped yet
    trials.stopped("a", 5)
    trials.stopped("b", 5)
    trials.line()
    out = capsys.readouterr().out
    assert "2/4 done" in out and "2 stopped by pruning" in out and "~0m50s left" in out  # c and d's 10
    now[0] += 50
    trials.finished(_trial("restoration/K32/poisson_disc|encoder/at_once", 0.05, 0.45, 0.90), "r | 5 % | mri", "c")
    finished = _trial("supervised", 0.05, 0.40, 0.84, task="none")
    finished.metrics["epochs"] = 8  # ended early by patience: 3 epochs after the rung, not 5
    trials.finished(finished, "supervised | 5 % | mri", "d")
    assert trials.work_done == trials.work_total == 28
    assert "left" not in capsys.readouterr().out.splitlines()[-1]


def test_the_final_table_reads_in_numeric_order_with_the_baseline_first() -> None:
    results = [_trial(f"restoration/K{k}/random|encoder/at_once", 0.05, 0.4, 0.5 + k / 1000) for k in (16, 32, 64, 8)]
    results.append(_trial("supervised", 0.05, 0.4, 0.5, task="none"))
    table = summary_table(results)
    assert list(table.index) == [
        "supervised (baseline)",
        *[f"restoration/K{k}/random|encoder/at_once" for k in (8, 16, 32, 64)],
    ]
    assert table.loc["restoration/K8/random|encoder/at_once", ("mri", 0.05)] == pytest.approx(0.508)
    assert [int(k) for k in re.findall(r"K(\d+)", " ".join(table.index))] == [8, 16, 32, 64]
