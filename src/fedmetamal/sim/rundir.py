"""A run directory: resolved config, metrics (JSONL and CSV), checkpoint, ONNX model, summary.

The directory is written as ``<name>.partial`` and renamed to ``<name>`` only when the run has
finished and every file is complete, so a directory that looks finished always is. A run that
fails is renamed ``<name>.failed`` with ``error.json`` saying why.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from fedmetamal.config import RunConfig, dump_config
from fedmetamal.errors import ConfigError


def _clean(value: Any) -> Any:
    """JSON cannot hold NaN: write null instead (metrics undefined on single-class splits)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def default_run_name(cfg: RunConfig) -> str:
    src = (
        Path(cfg.dataset.source).stem
        if cfg.dataset.source not in ("synthetic", "pe-headers")
        else cfg.dataset.source
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.algorithm.name}-{src}-{cfg.partition.kind}-{stamp}"


class RunDirectory:
    def __init__(self, cfg: RunConfig) -> None:
        parent = Path(cfg.output.dir)
        name = cfg.output.name or default_run_name(cfg)
        self.final = parent / name
        if cfg.output.name and self.final.exists():
            raise ConfigError(
                f"Run directory '{self.final}' already exists.",
                "Choose another output.name or remove the old run.",
            )
        suffix = 1
        while self.final.exists() or self.final.with_name(self.final.name + ".partial").exists():
            suffix += 1
            self.final = parent / f"{name}-{suffix}"
        self.path = self.final.with_name(self.final.name + ".partial")
        try:
            self.path.mkdir(parents=True)
        except OSError as err:
            raise ConfigError(
                f"Cannot create run directory '{self.path}': {err.strerror}.",
                "Choose a writable output.dir.",
            ) from None
        (self.path / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        self._metrics = (self.path / "metrics.jsonl").open("w", encoding="utf-8")
        self._clients = (self.path / "client_metrics.jsonl").open("w", encoding="utf-8")
        self.rows: list[dict[str, Any]] = []

    def log_round(self, row: dict[str, Any], client_rows: list[dict[str, Any]] | None) -> None:
        self.rows.append(row)
        self._metrics.write(json.dumps(_clean(row)) + "\n")
        self._metrics.flush()
        for c in client_rows or []:
            self._clients.write(json.dumps(_clean({"round": row["round"], **c})) + "\n")
        self._clients.flush()

    def _write_csv(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with (self.path / "metrics.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def write_json(self, name: str, data: Any) -> None:
        (self.path / name).write_text(json.dumps(_clean(data), indent=2) + "\n", encoding="utf-8")

    def file(self, name: str) -> Path:
        return self.path / name

    def finish(self, summary: dict[str, Any]) -> Path:
        self._close()
        self._write_csv()
        summary = {**summary, "status": "finished", "run_dir": str(self.final)}
        (self.path / "summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
        self.path.rename(self.final)
        return self.final

    def fail(self, error: BaseException) -> Path:
        self._close()
        failed = self.final.with_name(self.final.name + ".failed")
        n = 1
        while failed.exists():
            n += 1
            failed = self.final.with_name(f"{self.final.name}.failed-{n}")
        info = {"status": "failed", "error": type(error).__name__, "message": str(error)}
        (self.path / "error.json").write_text(json.dumps(info, indent=2) + "\n")
        self.path.rename(failed)
        return failed

    def _close(self) -> None:
        self._metrics.close()
        self._clients.close()
