"""``fedmetamal experiment``: run a suite (a grid of runs), watch it, and report it.

Thin like the rest of the CLI: the work is in :mod:`fedmetamal.experiments`; this module parses
options, shows progress and prints tables. Errors are raised as they come (the main CLI prints
them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fedmetamal.cli_common import progress_bar

experiment_app = typer.Typer(
    help="Run suites of experiments (a grid of runs), see their status, build their reports.",
    no_args_is_help=True,
)

_STYLE = {
    "finished": "green",
    "failed": "red",
    "running": "cyan",
    "incomplete": "yellow",
    "pending": "dim",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _metric(metrics: dict[str, Any] | None, name: str) -> str:
    value = (metrics or {}).get(name)
    return "-" if value is None else f"{value:.4f}"


class _SuiteProgress:
    """Turns runner events into a progress bar with counts and an ETA, and one line per run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.metric = "roc_auc"
        self.progress: Progress | None = None
        self.task: Any = None
        self.failed = 0
        self.running = 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "plan":
            self._plan(event)
        elif kind == "start":
            self.running += 1
            self._update()
        elif kind == "finish":
            self.running -= 1
            self._line(
                f"[green]✓[/] {event['id']}  {self.metric} {_metric(event['metrics'], self.metric)}"
                f"  [dim]{_duration(event['seconds'])}[/]"
            )
            self._update(advance=1)
        elif kind == "fail":
            self.failed += 1
            if event.get("previous"):
                self._line(
                    f"[red]✗[/] {event['id']}  [dim]failed earlier ({event['error']}); "
                    "--retry-failed reruns it[/]"
                )
                return
            self.running -= 1
            self._line(f"[red]✗[/] {event['id']}  {event['error']}: {event['message']}")
            self._update(advance=1)
        elif kind == "interrupted":
            self.close()

    def _plan(self, event: dict[str, Any]) -> None:
        self.metric = event["metric_names"][0]
        done, before = event["done"], event["failed_before"]
        earlier = f"{done} finished earlier, " if done else ""
        earlier += f"{before} failed earlier, " if before else ""
        workers = "in this process" if event["jobs"] == 1 else f"with {event['jobs']} workers"
        self.console.print(
            f"Suite [bold]{event['suite']}[/]: {event['total']} runs, {earlier}"
            f"{event['pending']} to run {workers} → {event['suite_dir']}",
            highlight=False,
        )
        if not event["pending"]:
            return
        self.progress = progress_bar(self.console, transient=True)
        self.task = self.progress.add_task("runs", total=event["pending"], latest="")
        self.progress.start()

    def _update(self, advance: int = 0) -> None:
        if self.progress is not None:
            status = f"{self.running} running" + (f", {self.failed} failed" if self.failed else "")
            self.progress.update(self.task, advance=advance, latest=status)

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@experiment_app.command("run")
def run(
    suite: Annotated[Path, typer.Argument(help="Suite file (YAML): base config and grid.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Suite directory (default: runs/suites/<name>)."),
    ] = None,
    jobs: Annotated[
        str | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Runs at once: a number or 'auto' (default: the suite's `parallel`).",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run again the runs that failed earlier.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and list the runs; run nothing.")
    ] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not build tables, figures and report.html.")
    ] = False,
) -> None:
    """Run every run of a suite not finished yet (resumes where it stopped), then report."""
    from fedmetamal.experiments.runner import run_suite

    err = Console(stderr=True)
    if dry_run:
        _dry_run(suite, out, jobs, retry_failed, err)
        return

    progress = _SuiteProgress(err)
    try:
        outcome = run_suite(
            suite, out_dir=out, jobs=jobs, retry_failed=retry_failed, on_event=progress
        )
    finally:
        progress.close()
    err.print(
        f"Suite [bold]{outcome.name}[/] done in {_duration(outcome.seconds)}: "
        f"[green]{outcome.finished} finished[/], {outcome.skipped} skipped (finished earlier), "
        f"[{'red' if outcome.failed else 'dim'}]{outcome.failed} failed[/]",
        highlight=False,
    )
    if outcome.failed:
        err.print(
            f"  failures: `fedmetamal experiment status {outcome.suite_dir}`; rerun them with "
            "--retry-failed",
            highlight=False,
        )
    if not no_report:
        _report(outcome.suite_dir, err)


def _dry_run(
    suite: Path, out: Path | None, jobs: str | None, retry_failed: bool, err: Console
) -> None:
    from fedmetamal.experiments.run_pool import resolve_jobs
    from fedmetamal.experiments.runner import plan_suite

    plan = plan_suite(suite, out)
    s = plan.suite
    metric = s.metrics[0]
    axes = [a.key for a in s.axes]
    table = Table("run", *axes, "status", metric)
    for r in s.runs:
        state = plan.states[r.id]
        style = _STYLE.get(state.status, "")
        table.add_row(
            r.id,
            *(r.settings[a] for a in axes),
            f"[{style}]{state.status}[/]",
            _metric(state.metrics, metric),
        )
    Console().print(table)
    skip = ("finished",) if retry_failed else ("finished", "failed")
    pending = [r for r in s.runs if plan.states[r.id].status not in skip]
    err.print(
        f"{len(s.runs)} runs: {plan.count('finished')} finished, {plan.count('failed')} failed, "
        f"{len(pending)} to run, {resolve_jobs(jobs, s, pending)} at once → {plan.suite_dir} "
        "(dry run: nothing was run)",
        highlight=False,
    )


def _report(suite_dir: Path, err: Console) -> None:
    from fedmetamal.experiments.report import build_report

    report = build_report(suite_dir)
    err.print(f"  tables:  {suite_dir / 'tables'}", highlight=False)
    err.print(f"  figures: {suite_dir / 'figures'}", highlight=False)
    err.print(f"  report:  {report}", highlight=False)


@experiment_app.command("report")
def report(
    suite_dir: Annotated[Path, typer.Argument(help="A suite directory (manifest.json inside).")],
) -> None:
    """Rebuild the tables, figures and report.html of a suite from its finished runs."""
    from fedmetamal.experiments.suite import read_manifest

    read_manifest(suite_dir)
    _report(suite_dir, Console(stderr=True))


@experiment_app.command("status")
def status(
    suite_dir: Annotated[Path, typer.Argument(help="A suite directory (manifest.json inside).")],
) -> None:
    """Show each run of a suite (finished, failed, running, pending) and the counts."""
    from fedmetamal.experiments.runner import suite_status

    st = suite_status(suite_dir)
    metrics = st.manifest.get("metrics") or ["roc_auc"]
    metric = metrics[0]
    axes = [a.get("key") for a in st.manifest.get("axes", [])]
    failures = any(state.status == "failed" for _, state in st.runs)
    table = Table("run", *axes, "status", metric, "time", *(["error"] if failures else []))
    for entry, state in st.runs:
        settings = entry.get("settings") or {}
        style = _STYLE.get(state.status, "")
        error = [f"{state.error}: {state.message}" if state.status == "failed" else ""]
        table.add_row(
            state.id,
            *(str(settings.get(a, "")) for a in axes),
            f"[{style}]{state.status}[/]",
            _metric(state.metrics, metric),
            _duration(state.seconds),
            *(error if failures else []),
        )
    Console().print(table)
    counts = st.counts()
    shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n or k in ("finished", "pending"))
    Console(stderr=True).print(
        f"Suite {st.manifest.get('name')}: {len(st.runs)} runs: {shown}", highlight=False
    )
