"""One run as a worker process (or the runner's own process) executes it.

Workers are started with "spawn" (never forked from a process that has loaded torch) and each
keeps the datasets it loaded, keyed by their settings, so a grid over algorithms reads a CSV
once per worker. A failed run is returned, never raised, so one bad setting cannot stop a suite.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedmetamal.config import RunConfig, build_config
from fedmetamal.errors import FedMetaMalError
from fedmetamal.experiments.run_state import record_failure

if TYPE_CHECKING:
    from fedmetamal.data.dataset import Dataset

#: Datasets a process keeps loaded (runs are ordered so that equal datasets come together).
_CACHE_SIZE = 2
_DATASETS: OrderedDict[str, Dataset] = OrderedDict()


def dataset_key(cfg: RunConfig) -> str:
    """Runs with equal keys load the same dataset (the loaders are seeded by ``cfg.seed``)."""
    return json.dumps([cfg.dataset.model_dump(mode="json"), cfg.seed], sort_keys=True)


def _dataset(cfg: RunConfig) -> Dataset:
    from fedmetamal.api import load_data

    key = dataset_key(cfg)
    if key in _DATASETS:
        _DATASETS.move_to_end(key)
        return _DATASETS[key]
    ds = load_data(cfg)
    _DATASETS[key] = ds
    while len(_DATASETS) > _CACHE_SIZE:
        _DATASETS.popitem(last=False)
    return ds


def clear_dataset_cache() -> None:
    """Free the datasets this process keeps (after a suite ran in it)."""
    _DATASETS.clear()


def execute_run(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one planned run (``{"id", "config", "threads"}``); never raises for a failed run.

    Returns ``{"id", "status": "finished"|"failed", "seconds", ...}``: final metrics when it
    finished, error class and message when it failed. Runs in a worker process or in-process.
    """
    import torch

    from fedmetamal.api import simulate

    run_id, config = payload["id"], payload["config"]
    runs_dir = Path(config["output"]["dir"])
    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    try:
        cfg = build_config(config)
        threads = cfg.runtime.threads or payload.get("threads")
        if threads:
            torch.set_num_threads(threads)
        result = simulate(cfg, dataset=_dataset(cfg))
        metrics = {k: (v if v == v else None) for k, v in result.final_metrics.items()}
        return {
            "id": run_id,
            "status": "finished",
            "seconds": round(time.perf_counter() - t0, 3),
            "metrics": metrics,
        }
    except Exception as err:
        failure = {
            "id": run_id,
            "status": "failed",
            "seconds": round(time.perf_counter() - t0, 3),
            "error": type(err).__name__,
            "message": str(err),
        }
        if not isinstance(err, FedMetaMalError):  # a bug, not a setting: keep the traceback
            failure["traceback"] = traceback.format_exc()
        record_failure(runs_dir, run_id, config, failure)
        return failure
    finally:
        torch.set_num_threads(previous)


def init_worker(threads: int) -> None:
    """Worker set-up: the parent handles Ctrl-C; ``threads`` torch/BLAS threads each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
