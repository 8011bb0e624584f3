"""Terminal output of a simulation: a live progress bar and the final metrics tables."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console

from fedmetamal.cli_common import progress_bar, titled_table
from fedmetamal.config import RunConfig
from fedmetamal.fl.metrics import METRIC_NAMES, SEMI_METRIC_NAMES, format_metric

if TYPE_CHECKING:
    from fedmetamal.api import SimulationResult
    from fedmetamal.sim.runtime import RoundRecord

_SHOWN = tuple(m for m in METRIC_NAMES if m not in ("n", "malware_share"))


class Reporter:
    """Progress while setting up and training; silent when ``quiet``."""

    def __init__(self, console: Console, cfg: RunConfig, quiet: bool = False) -> None:
        self.console, self.cfg, self.quiet = console, cfg, quiet
        self.progress = progress_bar(console, unit="rounds", disable=quiet)
        self.task = self.progress.add_task("setting up", total=cfg.training.rounds, latest="")

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def stage(self, message: str) -> None:
        self.progress.update(self.task, description=message)

    def round(self, rec: RoundRecord) -> None:
        latest = f"loss {rec.train_loss:.4f}"
        if rec.metrics:
            latest += f"  auc {format_metric('roc_auc', rec.metrics['roc_auc'])}"
            latest += f"  acc {format_metric('accuracy', rec.metrics['accuracy'])}"
        self.progress.update(
            self.task, completed=rec.round, description=f"{self.cfg.algorithm.name}", latest=latest
        )

    def final(self, result: SimulationResult) -> None:
        out = Console()
        cfg = result.config
        title = (
            f"{cfg.algorithm.name} on {result.dataset.get('name')} "
            f"({cfg.partition.kind}, {len(result.federation)} clients, "
            f"{len(result.history)} rounds, {result.seconds:.1f} s)"
        )
        table = titled_table(title, ["metric (global test set)", "value"], {"value"})
        for key in _SHOWN:
            table.add_row(key, format_metric(key, result.final_metrics.get(key, float("nan"))))
        table.add_row("test samples", str(int(result.final_metrics.get("n", 0))))
        for key in SEMI_METRIC_NAMES:  # training rows whose labels a scenario hid
            if key in result.final_metrics:
                table.add_row(key, format_metric(key, result.final_metrics[key]))
        out.print(table)
        if result.run_dir:
            out.print(f"run directory: [bold]{result.run_dir}[/]")
