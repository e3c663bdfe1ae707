"""The Ray cluster a study runs on: a local Ray on 127.0.0.1 or a cluster joined by address, what
its nodes can hold, and how many trials fit at once. Ray is imported only when one is started, so
checking a spec stays fast."""

from __future__ import annotations

import logging
import os
from typing import Any

from study.errors import SpecError


def start_ray(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    """Start a local Ray (or join ``address``) and return the per-node maximum of CPU and GPU.

    A process that already runs Ray (``study.run``'s ``main`` called again from Python: a notebook,
    the test suite's study runner) keeps that one: ``ray.init`` would refuse a second."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our own logging, no TensorBoard
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")  # the results of trials a halt stopped
    # Ray starts a task worker per CPU for the first driver; trials run in actors, which get workers
    # of their own, so those idle ones only took CPU from the trials (their start, then polling).
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        elif not ray.is_initialized():
            _loopback_only()
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, ...: all end here
        hint = " (a cluster with token authentication also needs RAY_AUTH_MODE=token here)" if "uth" in str(exc) else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SpecError(f"--address {address}: cannot join the Ray cluster: {first}{hint}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return {
        "cpu": float(total.get("CPU", 0)),
        "gpu": float(total.get("GPU", 0)),
        "nodes": float(len(nodes)),
        "max_node_cpu": max((n["Resources"].get("CPU", 0) for n in nodes), default=0),
        "max_node_gpu": max((n["Resources"].get("GPU", 0) for n in nodes), default=0),
    }


def _loopback_only() -> None:
    """A local Ray listens on 127.0.0.1 only. On Linux Ray announces the node's network address and
    its servers listen on every interface, unless clusters are switched off as on macOS: that
    switch is read from the environment by Ray's processes, and, in this already running process,
    from ``ray_constants`` (ray was imported before this point)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def check_resources(cpus: float, gpus: float, available: dict[str, float]) -> None:
    """Refuse at once what no node can hold: Tune would leave such trials PENDING forever."""
    where = f"the Ray cluster ({available['cpu']:g} CPUs, {available['gpu']:g} GPUs on {available['nodes']:g} node(s))"
    if gpus > 0 and available["max_node_gpu"] == 0:
        raise SpecError(f"resources.gpus_per_trial={gpus:g} but {where} has no GPU; set resources.gpus_per_trial=0")
    if gpus > available["max_node_gpu"]:
        raise SpecError(f"resources.gpus_per_trial={gpus:g} but no node of {where} has that many GPUs")
    if cpus > available["max_node_cpu"]:
        raise SpecError(f"resources.cpus_per_trial={cpus:g} but no node of {where} has that many CPUs")


def cluster_gpu(timeout_s: float = 120) -> Any:
    """One GPU node's first GPU (a ``study.preflight.gpu.Gpu``), asked by a task on it: Ray's resources count
    GPUs but not their memory. None when no GPU frees up in ``timeout_s``."""
    import ray

    from study.preflight.gpu import local_gpu

    ask = ray.remote(num_gpus=0.01, max_calls=1)(local_gpu)  # max_calls: its worker leaves with it
    ref = ask.remote()
    try:
        return ray.get(ref, timeout=timeout_s)
    except Exception:  # noqa: BLE001 - GetTimeoutError, a lost node: the check is skipped, not the study
        ray.cancel(ref, force=True)
        return None


def slots(cpus: float, gpus: float, available: dict[str, float]) -> int:
    fit = available["cpu"] // cpus
    if gpus > 0:
        fit = min(fit, available["gpu"] // gpus)
    return max(1, int(fit))
