"""Ray Tune + Optuna glue: the trainables, the two phases of a grid, a sampled search.

The Ray cluster itself (starting or joining it, what it can hold) is :mod:`study.preflight.cluster`.

A grid goes to Optuna's ``GridSampler`` as one categorical axis of pending trial ids, so every point
runs exactly once and a re-run or an enlarged space asks only for what is missing (``Tuner.restore``
cannot extend a finished experiment; each invocation is a fresh Tune experiment over the study
folder, whose files say what is done). Sampled searches (TPE, GP, random) get the real axes; what
an earlier invocation finished is replayed to Optuna as evaluated points, and a repeated draw of
the same configuration reads back the earlier result instead of training again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from study import faults
from study.design.plan import Plan, PretrainPoint, TrialPoint, optuna_space, resolve
from study.design.spec import StudySpec
from study.execution.trial import Paused, ensure_pretrained, run_trial
from study.folder.store import StudyStore

OBJECTIVE = "objective"  # best validation soft-Dice loss of the fine-tuning: lower is better


@dataclass(frozen=True)
class Context:
    """What every trial needs besides its config; all paths absolute (Tune changes directories)."""

    store: StudyStore
    data_paths: dict[str, str]
    spec: StudySpec  # with its tracking URI's password redacted: Tune pickles the context to disk
    trials: dict[str, TrialPoint] = field(default_factory=dict)  # grid: the pending trials by id
    threads: int = 1
    use_gpu: bool = False

    def trial_of(self, config: dict) -> TrialPoint:
        if "trial" in config:
            return self.trials[config["trial"]]
        return resolve(self.spec, config["dataset"], config)


# -- trainables (run in Ray workers) ---------------------------------------------------------------


def _prepare_worker(context: Context) -> str:
    import torch

    torch.set_num_threads(context.threads)
    if not (context.use_gpu and torch.cuda.is_available()):
        return "cpu"
    # A trial's shapes stay fixed, so cuDNN's timed choice of algorithms is made once and then pays
    # (benchmarks/gpu_unet.py measures with it on); GPU numbers are not bit-identical anyway.
    torch.backends.cudnn.benchmark = True
    return "cuda"


def pretrain_trainable(config: dict, context: Context) -> None:
    from ray import tune

    device = _prepare_worker(context)
    point = PretrainPoint.from_json(config["point"])
    result = ensure_pretrained(
        context.store,
        point,
        data_path=context.data_paths[point.dataset],
        device=device,
        report=lambda r: tune.report({OBJECTIVE: r["val_loss"], **_numbers(r)}),
    )
    objective = result.best_val_loss if result.finished else math.nan
    tune.report({OBJECTIVE: objective, "final": 1, "key": point.key})


def finetune_trainable(config: dict, context: Context) -> None:
    from ray import tune

    device = _prepare_worker(context)
    trial, store = context.trial_of(config), context.store
    store.trial_dir(trial.id).mkdir(parents=True, exist_ok=True)
    fault = faults.trial_hook(store.faults_dir, store.trial_dir(trial.id) / "faults")
    _note_attempt(store, trial.id)

    def report(record: dict) -> None:
        tune.report({OBJECTIVE: record["val_loss"], "trial_id": trial.id, **_numbers(record)})
        if record.get("stage") != "pretrain":
            fault(record)

    with store.trial_lock(trial.id):  # a sampled duplicate waits, then reads the result
        result = run_trial(
            store,
            trial,
            data_path=context.data_paths[trial.dataset],
            device=device,
            keep_weights=context.spec.keep_weights,
            report=report,
            rung=config.get("rung"),
            until_epoch=config.get("until_epoch"),
            nsd_tolerance_mm=context.spec.analysis.nsd_tolerance_mm,
        )
    if isinstance(result, Paused):  # a pruning rung: the searcher decides, then hands it out again
        tune.report(
            {
                OBJECTIVE: result.val_loss,
                "trial_id": trial.id,
                "final": 1,
                "paused": 1,
                "rung": result.rung,
                "paused_at_epoch": result.epoch,
            }
        )
        return
    tune.report({OBJECTIVE: result.val_loss, "trial_id": trial.id, "final": 1, **_numbers(result.metrics)})


def _numbers(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str)) and k != OBJECTIVE}


def _note_attempt(store: StudyStore, trial_id: str) -> None:
    """Each start of a trial, with the checkpoint epoch it resumes from (-1: from scratch)."""
    from study.train import FINETUNE_CHECKPOINTS, load_checkpoint

    resumed = -1
    for name in reversed(FINETUNE_CHECKPOINTS.values()):  # the fine-tuning's checkpoints, latest stage first
        path = store.trial_work(trial_id) / name
        if path.exists():
            # None when it cannot be read (truncated, or gone since): the fit then starts afresh.
            # Every checkpoint fit() writes has its epoch, and fit() reads it too: no need to guard.
            saved = load_checkpoint(path)
            resumed = -1 if saved is None else int(saved["epoch"])
            break
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    store.note_attempt(trial_id, {"pid": os.getpid(), "node": node, "time": time.time(), "resumed_from_epoch": resumed})


# -- driving Tune ---------------------------------------------------------------------------------


def new_halt() -> Any:
    """A Tune stopper that ends the whole run once its ``reason`` is set: when the storage is
    full, retrying trials or starting new ones only fails again."""
    from ray.tune.stopper import Stopper

    class Halt(Stopper):
        reason: str | None = None

        def __call__(self, trial_id: str, result: dict) -> bool:
            return self.reason is not None

        def stop_all(self) -> bool:
            return self.reason is not None

    return Halt()


_NO_SPACE = re.compile(r"\[Errno 28\] No space left on device(?:: '([^']*)')?")


def storage_full(error_text: str | None) -> str | None:
    """The path a trial could not write (or a general word) when its error was a full disk."""
    match = _NO_SPACE.search(error_text or "")
    if match is None:
        return None
    return f"{match.group(1) or 'the study storage'}: no space left on device"


def tune_run(
    name: str,
    trainable: Callable,
    context: Context,
    *,
    search: Any,
    num_samples: int,
    resources: dict[str, float],
    max_concurrent: int,
    retries: int,
    callbacks: list,
    param_space: dict | None = None,
    halt: Any = None,
) -> None:
    from ray import tune

    # A failed attempt is named by the progress view, its traceback kept in the Tune folder; on the
    # terminal it would bury the study's own lines. A retried trial re-reports its resumed epochs.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="The reported value is ignored because this `step=")
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, context=context), resources),
        param_space=param_space or {},
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="min",
            search_alg=search,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(context.store.tune_dir),
            verbose=0,
            callbacks=callbacks,
            stop=halt,
            failure_config=tune.FailureConfig(max_failures=retries),
        ),
    )
    tuner.fit()


def grid_search(pending: list[str], seed: int, study_name: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"trial": optuna.distributions.CategoricalDistribution(pending)}
    grid = optuna.samplers.GridSampler({"trial": pending}, seed=seed)
    return OptunaSearch(space=space, sampler=grid, seed=seed, study_name=study_name, metric=OBJECTIVE, mode="min")


def pruned_search(trials: list[TrialPoint], store: StudyStore, spec: StudySpec, on_stop=None):
    """A grid run rung by rung (``study.execution.rung_search``): every planned trial, ended ones included,
    since they take part in the rungs' comparisons; ``on_stop(trial id, epochs)`` hears of each
    trial a rung stops."""
    from study.execution.rung_search import RungSearch

    return RungSearch(trials, store, spec, metric=OBJECTIVE, on_stop=on_stop)


def sampled_search(plan: Plan, study_name: str, done: list[tuple[dict, float]]):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed, algorithm = plan.spec.search.seed, plan.spec.search.algorithm
    optuna_sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }[algorithm]()
    finished = [(p, r) for p, r in done if math.isfinite(r)]
    return OptunaSearch(
        space=optuna_space(plan.spec),
        sampler=optuna_sampler,
        seed=seed,
        study_name=study_name,
        metric=OBJECTIVE,
        mode="min",
        points_to_evaluate=[p for p, _ in finished] or None,
        evaluated_rewards=[r for _, r in finished] or None,
    )
