"""``fedmetamal data``: list, inspect and fetch datasets. Parsing and printing only; the work is
in :mod:`fedmetamal.data.fetch` and :mod:`fedmetamal.data.inventory`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fedmetamal.cli_common import LabelColumnOpt, console, titled_table
from fedmetamal.config import build_config
from fedmetamal.errors import DataError

data_app = typer.Typer(help="List, inspect and fetch datasets.", no_args_is_help=True)

DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="Data directory (default: $FEDMETAMAL_DATA or ~/.cache/fedmetamal/data)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


class FeatureVersion(StrEnum):
    """EMBER feature version of raw JSON input (auto: from the first record's keys)."""

    auto = "auto"
    v2 = "2"
    v3 = "3"


class SplitChoice(StrEnum):
    """Split that feature-version-2 rows go to (auto: test*.jsonl -> test, others -> train)."""

    auto = "auto"
    train = "train"
    test = "test"


class _RichSink:
    """Byte progress (size, bytes/s, time left) on the error console, one line per step."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        self._task = self._progress.add_task(label, total=total, completed=done)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def end(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            if task.total is None:
                self._progress.update(self._task, total=task.completed)
            self._progress.stop_task(self._task)
            self._task = None


def _byte_progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Catalog name (see `fedmetamal data list`).")],
    data_dir: DirOpt = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Folder address to download from instead of the publisher's (a mirror; also "
            "$FEDMETAMAL_DATA_URL). The published checksum must still match.",
        ),
    ] = None,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the archive after unpacking.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even when already fetched.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download a public dataset, verify its checksum and unpack it (resumable, idempotent)."""
    from fedmetamal.data.catalog import lookup
    from fedmetamal.data.download import human_bytes
    from fedmetamal.data.fetch import fetch, resolve_data_dir
    from fedmetamal.data.inventory import dataset_folders

    entry = lookup(name)
    root = resolve_data_dir(data_dir)

    def say(text: str) -> None:
        if not quiet:
            console.print(f"{entry.name}: {text}", highlight=False)

    with _byte_progress(quiet) as bar:
        result = fetch(
            entry,
            root,
            base_url=url,
            progress=_RichSink(bar),
            say=say,
            keep_archive=keep_archive,
            force=force,
        )
    check = "SHA-256 matches the publisher's" if entry.sha256 else "no published checksum"
    if result.status == "already":
        print(
            f"{entry.name}: already fetched and verified in {result.folder} "
            f"({len(result.files)} files, {human_bytes(result.size)}; {check}). "
            "Use --force to fetch again."
        )
    else:
        print(
            f"{entry.name}: fetched into {result.folder} ({len(result.files)} files, "
            f"{human_bytes(result.size)}; {check}; sha256 {result.sha256})."
        )
    for found in dataset_folders(result.folder):
        if found.kind == "ember-raw":
            print(
                f"  {found.path}: raw EMBER features; vectorize before training: "
                f"fedmetamal data vectorize '{found.path}' -o OUTPUT"
            )
        else:
            print(f"  {found.path}: {found.kind}; use it with --dataset '{found.path}'.")


def _jsonl_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; a folder (a fetched one, say) stands for every ``*.jsonl`` under it."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise DataError(f"'{path}' holds no .jsonl files.", "Pass the .jsonl files.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"'{path}' does not exist.", "Pass EMBER raw-feature .jsonl files.")
    return files


def _input_version(files: list[Path], option: str) -> int:
    """The EMBER feature version to read: the option's, or the first record's (from its keys)."""
    from fedmetamal.features.ember_v2 import detect_feature_version

    if option != "auto":
        return int(option)
    version = detect_feature_version(files)
    if version in (2, 3):
        return version
    what = (
        "EMBER feature version 1 (the first EMBER 2017 release)"
        if version == 1
        else "no EMBER raw-feature record"
    )
    raise DataError(
        f"The first record of '{files[0]}' is {what}.",
        "Pass EMBER 2017/2018 (feature version 2: ember_dataset_2017_2 / 2018_2) or EMBER2024 "
        "raw-feature .jsonl files, or set --feature-version.",
    )


def _vectorize_v3(files: list[Path], output: Path, limit: int | None, bar: Progress) -> None:
    from fedmetamal.features.ember.raw_json import vectorize_jsonl
    from fedmetamal.features.ember_v2.dedup import drop_duplicate_sha256

    task = bar.add_task("vectorize", total=None)
    summary = vectorize_jsonl(
        files, output, limit=limit, on_row=lambda rows: bar.update(task, completed=rows)
    )
    bar.stop()
    dropped = drop_duplicate_sha256(summary.output)
    labels = summary.labels - dropped
    rows = summary.rows - sum(dropped.values())
    print(
        f"Wrote {rows:,} rows ({labels[1]:,} malware, {labels[0]:,} benign, "
        f"{labels[-1]:,} unlabelled) from {len(files)} file(s) to {summary.output} "
        "(schema ember-v3)."
    )
    _print_duplicates(sum(dropped.values()))
    if summary.with_notes:
        print(f"  {summary.with_notes:,} rows have notes in their 'warnings' column.")
    print(f"  Train on it: fedmetamal simulate --dataset '{summary.output}'")


def _vectorize_v2(
    files: list[Path], output: Path, limit: int | None, split: str, bar: Progress
) -> None:
    from fedmetamal.features.ember_v2 import vectorize_v2_jsonl

    if output.suffix.lower() in (".parquet", ".pq"):
        raise DataError(
            f"EMBER 2017/2018 features are written as a folder of X_/y_*.dat files, not "
            f"'{output.name}'.",
            "Pass a folder as --output (e.g. -o ember2018-vectors).",
        )
    task = bar.add_task("vectorize", total=None)
    summary = vectorize_v2_jsonl(
        files,
        output,
        limit=limit,
        split=split,
        on_row=lambda rows: bar.update(task, completed=rows),
    )
    bar.stop()
    labels = summary.labels
    splits = ", ".join(f"{summary.rows[s]:,} {s}" for s in ("train", "test") if summary.rows[s])
    print(
        f"Wrote {summary.total:,} rows ({splits}; {labels[1]:,} malware, {labels[0]:,} benign, "
        f"{labels[-1]:,} unlabelled) from {len(files)} file(s) to {summary.output} "
        "(EMBER feature version 2, 2381 columns)."
    )
    _print_duplicates(summary.duplicates)
    subset = "" if summary.rows["train"] else " --set dataset.ember_subset=test"
    print(f"  Train on it: fedmetamal simulate --dataset '{summary.output}'{subset}")


def _print_duplicates(count: int) -> None:
    if count:
        print(f"  Dropped {count:,} rows repeating an earlier row's sha256 (the first was kept).")


@data_app.command("vectorize")
def data_vectorize(
    paths: Annotated[
        list[Path],
        typer.Argument(help="EMBER raw-feature .jsonl files, or folders to search for them."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="EMBER2024: dataset file to write (.parquet). EMBER 2017/2018: folder to "
            "write X_/y_{train,test}.dat into.",
        ),
    ],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Stop after this many records.")
    ] = None,
    feature_version: Annotated[
        FeatureVersion,
        typer.Option(
            "--feature-version",
            help="EMBER feature version of the input: 2 (EMBER 2017/2018), 3 (EMBER2024), or "
            "auto (from the first record's keys).",
        ),
    ] = FeatureVersion.auto,
    split: Annotated[
        SplitChoice,
        typer.Option(
            "--split",
            help="Feature version 2: the split rows go to; auto sends test*.jsonl files to test "
            "and the others to train.",
        ),
    ] = SplitChoice.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Turn raw EMBER JSON features into training data: EMBER2024 into an ember-v3 dataset
    file, EMBER 2017/2018 into a vectorized EMBER folder (2381 columns). Rows repeating an
    earlier row's sha256 are dropped."""
    files = _jsonl_inputs(paths)
    version = _input_version(files, feature_version.value)
    with Progress(
        TextColumn("[bold]vectorize"), TextColumn("{task.completed:,.0f} records"),
        console=console, disable=quiet,
    ) as bar:  # fmt: skip
        if version == 2:
            _vectorize_v2(files, output, limit, split.value, bar)
        else:
            _vectorize_v3(files, output, limit, bar)


def _fetched_rows(root: Path) -> list[list[str]]:
    from fedmetamal.data.catalog import CATALOG
    from fedmetamal.data.download import human_bytes
    from fedmetamal.data.fetch import fetch_state

    rows = []
    for entry in CATALOG.values():
        state, size = fetch_state(entry, root)
        where = "-" if state == "absent" else f"{state} ({human_bytes(size)})"
        host = entry.url.split("/")[2] if entry.url else "by hand (see homepage)"
        checksum = "published" if entry.sha256 else "not published"
        rows.append([entry.name, entry.title, host, checksum, where])
    return rows


@data_app.command("list")
def data_list(data_dir: DirOpt = None, as_json: JsonOpt = False) -> None:
    """List built-in sources, fetchable public datasets, and the datasets in the data directory."""
    from fedmetamal.data.catalog import CATALOG
    from fedmetamal.data.download import human_bytes
    from fedmetamal.data.fetch import fetch_state, resolve_data_dir
    from fedmetamal.data.inventory import find_datasets
    from fedmetamal.data.sources import KNOWN_DATASETS

    root = resolve_data_dir(data_dir)
    found = find_datasets(root)
    if as_json:
        out = {
            "builtin": KNOWN_DATASETS,
            "data_dir": str(root),
            "catalog": [
                {
                    "name": e.name,
                    "title": e.title,
                    "url": e.url,
                    "homepage": e.homepage,
                    "sha256": e.sha256,
                    "sha256_source": e.sha256_source,
                    "size": e.size,
                    "on_disk": fetch_state(e, root)[0],
                }
                for e in CATALOG.values()
            ],
            "on_disk": [
                {"path": str(d.path), "kind": d.kind, "size": d.size, "fetched_as": d.fetched_as}
                for d in found
            ],
        }
        print(json.dumps(out, indent=2))
        return
    out_console = Console()
    builtin = titled_table("Built-in sources (--dataset NAME)", ["name", "what"])
    for key, text in KNOWN_DATASETS.items():
        builtin.add_row(key, text)
    out_console.print(builtin)
    fetchable = titled_table(
        "Fetchable (fedmetamal data fetch NAME)",
        ["name", "what", "from", "SHA-256", "on disk"],
    )
    fetchable.columns[0].no_wrap = True
    for row in _fetched_rows(root):
        fetchable.add_row(*row)
    out_console.print(fetchable)
    disk = titled_table(f"On disk in {root}", ["path", "kind", "size", "fetched as"], ["size"])
    for d in found:
        rel = d.path.relative_to(root) if d.path.is_relative_to(root) else d.path
        disk.add_row(str(rel), d.kind, human_bytes(d.size), d.fetched_as or "-")
    if not found:
        disk.caption = "nothing yet: `fedmetamal data fetch NAME` or put dataset files here"
    out_console.print(disk)


def _resolve_info_target(source: str, data_dir: Path | None) -> tuple[str, Path | None]:
    """A catalog name or fetched folder -> the one dataset inside it; other sources unchanged.
    Returns the source to load and, for a raw EMBER folder, that folder instead."""
    from fedmetamal.data.catalog import CATALOG
    from fedmetamal.data.fetch import read_marker, resolve_data_dir
    from fedmetamal.data.inventory import dataset_folders, kind_of
    from fedmetamal.data.sources import KNOWN_DATASETS

    path = Path(source).expanduser()
    if source.lower() in CATALOG and source not in KNOWN_DATASETS and not path.exists():
        path = resolve_data_dir(data_dir) / source.lower()
        if read_marker(path) is None:
            raise DataError(
                f"'{source}' has not been fetched into '{path.parent}'.",
                f"Run `fedmetamal data fetch {source}` (with the same --dir), or pass a path.",
            )
    if not path.is_dir() or kind_of(path) == "ember":
        return source if not path.is_dir() else str(path), None
    if kind_of(path) == "ember-raw":
        return str(path), path
    inside = dataset_folders(path)
    if len(inside) != 1:
        listed = ", ".join(str(d.path) for d in inside) or "none"
        raise DataError(
            f"'{path}' holds {len(inside)} datasets ({listed}).",
            "Pass one of them as the path.",
        )
    only = inside[0]
    return str(only.path), (only.path if only.kind == "ember-raw" else None)


def _print_summary(info: dict[str, Any]) -> None:
    from fedmetamal.data.download import human_bytes
    from fedmetamal.data.inventory import label_shares

    s = info["summary"]
    table = titled_table(f"Dataset {info.get('name') or s.get('path')}", ["field", "value"])
    if s.get("path"):
        table.add_row("path", str(s["path"]))
    if s.get("size_bytes") is not None:
        table.add_row("size on disk", human_bytes(s["size_bytes"]))
    table.add_row("format", str(s.get("format")))
    table.add_row("schema", str(s.get("schema") or "-"))
    if s.get("samples") is not None:
        table.add_row("samples x features", f"{s['samples']:,} x {s['features']:,}")
        table.add_row("labels", label_shares(s["labels"]))
    if "families" in s:
        fam = s["families"]
        top = ", ".join(f"{k} ({v})" for k, v in fam["top"].items())
        table.add_row("malware families", f"{fam['count']}: {top}" if top else "none")
    if s.get("first_seen"):
        table.add_row("first_seen", f"{s['first_seen']['from']} .. {s['first_seen']['to']}")
    for name, size in s.get("files", {}).items():
        table.add_row("file", f"{name} ({human_bytes(size)})")
    if s.get("note"):
        table.add_row("note", s["note"])
    Console().print(table)


@data_app.command("info")
def data_info(
    source: Annotated[
        str, typer.Argument(help="'synthetic', 'pe-headers', a fetched catalog name, or a path.")
    ],
    label_column: LabelColumnOpt = None,
    top: Annotated[int, typer.Option(help="How many malware families to show.")] = 10,
    data_dir: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Report a dataset's size, format, schema, labels, families, time range and loader notes."""
    from fedmetamal.data.inventory import disk_size, raw_summary, summarize
    from fedmetamal.data.sources import load_dataset

    target, raw = _resolve_info_target(source, data_dir)
    if raw is not None:
        info: dict[str, Any] = {
            "name": raw.name,
            "summary": {**raw_summary(raw), "path": str(raw), "size_bytes": disk_size(raw)},
        }
    else:
        cfg = build_config({"dataset": {"source": target, "label_column": label_column}})
        ds = load_dataset(cfg.dataset, cfg.seed)
        info = {**ds.describe(), "report": ds.info}
        provenance = ds.info.get("provenance", {})
        path = provenance.get("path")
        info["summary"] = {
            "path": path,
            "size_bytes": disk_size(Path(path)) if path else None,
            "format": provenance.get("format"),
            **summarize(ds, top),
        }
    if as_json:
        print(json.dumps(info, default=str, indent=2))
        return
    _print_summary(info)
    if "report" in info:
        Console().print_json(json.dumps(info["report"], default=str))
