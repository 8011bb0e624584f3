"""Fake but valid suite directories with known numbers, for the results/tables/report tests.

Each run directory looks exactly like one ``api.simulate`` writes (config.yaml from
``dump_config``, metrics.jsonl, summary.json with ``final_metrics`` and ``heterogeneity``), so the
readers are tested without training anything. ``FakeSuite.expected`` holds every finished run's
final metrics for computing expected table cells with numpy.
"""

from __future__ import annotations

import copy
import itertools
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.config import build_config, dump_config, set_dotted

SUITE_YAML = "name: fake-study\n# a comment that must appear in the report\nmetrics: [roc_auc]\n"

PARTITIONS: list[tuple[str, Any]] = [
    ("iid", {"kind": "iid"}),
    ("dirichlet α=0.1", {"kind": "dirichlet", "alpha": 0.1}),
    ("dirichlet α=1", {"kind": "dirichlet", "alpha": 1.0}),
]


@dataclass
class FakeSuite:
    root: Path
    manifest: dict[str, Any]
    expected: pd.DataFrame  # one row per finished run: id, method, setting, seed, metrics...
    ids: dict[tuple[str, str, int], str] = field(default_factory=dict)  # (method, setting, seed)

    def values(self, method: str, setting: str, metric: str) -> np.ndarray:
        e = self.expected
        rows = e[(e["method"] == method) & (e["setting"] == setting)]
        return rows[metric].to_numpy(dtype=float)


def _metric_value(run_id: str, metric: str) -> float:
    rng = np.random.default_rng(zlib.crc32(f"{run_id}/{metric}".encode()))
    if metric == "loss":
        return float(rng.uniform(0.1, 0.8))
    return float(rng.uniform(0.55, 0.99))


def make_suite(
    root: Path,
    *,
    methods: tuple[str, ...] = ("fedavg", "fedprox"),
    setting_axes: list[tuple[str, list[tuple[str, Any]]]] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    metrics: tuple[str, ...] = ("roc_auc", "accuracy", "loss"),
    rounds: int = 3,
    fail: tuple[str, ...] = (),
    pending: tuple[str, ...] = (),
    heterogeneity: bool = True,
    suite_yaml: str | None = SUITE_YAML,
) -> FakeSuite:
    """Write a suite directory; ``fail``/``pending`` name runs by ``method/setting/seed``."""
    setting_axes = [("partition", PARTITIONS)] if setting_axes is None else setting_axes
    root.mkdir(parents=True, exist_ok=True)
    axes = [{"key": "algorithm.name", "labels": list(methods)}]
    axes += [{"key": k, "labels": [label for label, _ in opts]} for k, opts in setting_axes]
    axes += [{"key": "seed", "labels": [str(s) for s in seeds]}]
    runs, expected, ids = [], [], {}
    status_lines = []
    combos = list(itertools.product(*(opts for _, opts in setting_axes)))
    n = 0
    for method in methods:
        for combo in combos:
            setting = " / ".join(label for label, _ in combo) if combo else "all runs"
            for seed in seeds:
                n += 1
                run_id = f"{n:04d}-{method}-s{seed}"
                key = f"{method}/{setting}/{seed}"
                settings = {"algorithm.name": method}
                values: dict[str, Any] = {"algorithm.name": method}
                for (axis, _), (label, value) in zip(setting_axes, combo, strict=True):
                    settings[axis] = label
                    values[axis] = value
                settings["seed"] = str(seed)
                values["seed"] = seed
                runs.append(
                    {"id": run_id, "settings": settings, "values": values, "config_hash": "x"}
                )
                ids[(method, setting, seed)] = run_id
                if key in pending:
                    continue
                if key in fail:
                    write_failed_run(root / "runs" / f"{run_id}.failed", "ValueError", f"boom {n}")
                    status_lines.append(
                        {"id": run_id, "status": "failed", "seconds": 0.1, "error": "ValueError",
                         "message": f"boom {n}"}
                    )  # fmt: skip
                    continue
                cfg: dict[str, Any] = {"seed": seed, "algorithm": {"name": method}}
                for axis, value in values.items():
                    if axis in ("seed", "algorithm.name"):
                        continue
                    if axis == "partition":
                        cfg["partition"] = copy.deepcopy(value)
                    else:
                        set_dotted(cfg, axis, value)
                final = {m: _metric_value(run_id, m) for m in metrics}
                het = {"index": (n % 10) / 10, "label_emd": 0.01 * n} if heterogeneity else None
                write_finished_run(root / "runs" / run_id, cfg, final, rounds, het)
                expected.append(
                    {"id": run_id, "method": method, "setting": setting, "seed": seed, **final}
                )
                status_lines.append({"id": run_id, "status": "finished", "seconds": 1.5})
    manifest = {
        "format": "fedmetamal-suite/1",
        "name": "fake-study",
        "suite_hash": "abc123",
        "method_axis": "algorithm.name",
        "metrics": list(metrics),
        "axes": axes,
        "runs": runs,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    if suite_yaml is not None:
        (root / "suite.yaml").write_text(suite_yaml, encoding="utf-8")
    (root / "status.jsonl").write_text("".join(json.dumps(s) + "\n" for s in status_lines))
    return FakeSuite(root, manifest, pd.DataFrame(expected), ids)


def write_finished_run(
    path: Path,
    cfg: dict[str, Any],
    final: dict[str, float],
    rounds: int,
    heterogeneity: dict[str, float] | None,
) -> None:
    path.mkdir(parents=True)
    config = build_config(cfg)
    (path / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    lines = []
    for r in range(1, rounds + 1):
        row: dict[str, Any] = {"round": r, "clients": 4, "lr": 0.1, "train_loss": 1.0 / r}
        row["seconds"] = 0.01
        if r == rounds:
            row.update({f"test_{k}": v for k, v in final.items()})
        else:  # earlier rounds: a known ramp towards the final value
            row.update({f"test_{k}": v * r / rounds for k, v in final.items()})
        lines.append(json.dumps(row))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary: dict[str, Any] = {
        "algorithm": config.algorithm.name,
        "partition": config.partition.kind,
        "clients": 4,
        "rounds": rounds,
        "seconds": 1.5,
        "final_metrics": final,
        "status": "finished",
    }
    if heterogeneity is not None:
        summary["heterogeneity"] = heterogeneity
    (path / "summary.json").write_text(json.dumps(summary, indent=2))


def write_failed_run(path: Path, error: str, message: str) -> None:
    path.mkdir(parents=True)
    info = {"status": "failed", "error": error, "message": message}
    (path / "error.json").write_text(json.dumps(info))
