"""Train the validation study's federations in several processes at once.

Workers are started with ``spawn`` (no forked torch state), each loads the dataset once in its
initializer and gets an equal share of the CPU threads, so ``jobs`` workers do not oversubscribe
the cores. Configs travel as JSON-ready dicts and records come back as dicts: nothing is pickled
beyond plain Python values.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from fedmetamal.config import RunConfig, build_config

_WORKER: dict[str, Any] = {}


def _init_worker(base: dict[str, Any], threads: int) -> None:
    import torch

    from fedmetamal.api import load_data

    torch.set_num_threads(threads)
    _WORKER["dataset"] = load_data(build_config(base))


def _work(role: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from fedmetamal.experiments.noniid_validation import evaluate_entry

    return evaluate_entry(build_config(cfg), _WORKER["dataset"], role)


def run_parallel(
    base: RunConfig,
    todo: list[tuple[str, RunConfig]],
    jobs: int,
    finish: Callable[[dict[str, Any]], None],
) -> None:
    """Evaluate ``todo`` in ``jobs`` worker processes; ``finish`` gets each record as it lands
    (in the calling process, so results.jsonl has one writer)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    base_data = base.model_dump(mode="json")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(base_data, threads)
    ) as pool:
        pending: set[Future[dict[str, Any]]] = set()
        for role, cfg in todo:
            data = cfg.model_dump(mode="json")
            data["runtime"]["threads"] = threads
            pending.add(pool.submit(_work, role, data))
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                finish(fut.result())
