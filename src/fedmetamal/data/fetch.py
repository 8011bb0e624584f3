"""``fedmetamal data fetch``: a catalog name -> a verified, unpacked folder in the data directory.

Layout of the data directory (``--dir``, else ``$FEDMETAMAL_DATA``, else
``$XDG_CACHE_HOME/fedmetamal/data`` or ``~/.cache/fedmetamal/data``)::

    downloads/<archive>.part   bytes received so far (kept on every failure; resumed)
    downloads/<archive>        a complete download not yet unpacked (or placed there by hand)
    <name>/                    the unpacked archive, with .fedmetamal-fetch.json

The marker file records the address, the SHA-256 and every unpacked file with its size, so a
second fetch can say "already fetched" without reading gigabytes, and the folder only appears
once unpacking has finished.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedmetamal import __version__
from fedmetamal.data.catalog import RemoteDataset, join_url
from fedmetamal.data.download import FetchError, ProgressSink, download, human_bytes, sha256_of
from fedmetamal.data.unpack import archive_kind, unpack

DATA_ENV = "FEDMETAMAL_DATA"
URL_ENV = "FEDMETAMAL_DATA_URL"
MARKER = ".fedmetamal-fetch.json"
DOWNLOADS = "downloads"


def default_data_dir() -> Path:
    """Where fetched datasets live unless ``--dir`` says otherwise."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "fedmetamal" / "data"


def resolve_data_dir(option: Path | None) -> Path:
    """The data directory: the option when given, else the default."""
    return (option.expanduser() if option else default_data_dir()).absolute()


def archive_path(entry: RemoteDataset, data_dir: Path) -> Path:
    return data_dir / DOWNLOADS / entry.filename


def part_path(entry: RemoteDataset, data_dir: Path) -> Path:
    return archive_path(entry, data_dir).with_name(entry.filename + ".part")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The fetch record of ``folder``, or ``None`` when it has none (or a damaged one)."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def _changed_files(folder: Path, record: dict[str, Any]) -> list[str]:
    """Files the marker lists that are missing or have another size now."""
    changed = []
    for rel, size in record["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            changed.append(rel)
    return changed


@dataclass
class FetchResult:
    """What a fetch did: ``fetched`` now, or ``already`` there and intact."""

    name: str
    folder: Path
    status: str
    sha256: str
    files: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(self.files.values())


def fetch_state(entry: RemoteDataset, data_dir: Path) -> tuple[str, int]:
    """``(state, bytes)`` for listings: ``fetched``, ``downloaded`` (not unpacked),
    ``partial`` (a ``.part`` file), or ``absent``."""
    record = read_marker(data_dir / entry.name)
    if record is not None:
        return "fetched", int(sum(record["files"].values()))
    archive = archive_path(entry, data_dir)
    if archive.is_file():
        return "downloaded", archive.stat().st_size
    part = part_path(entry, data_dir)
    if part.is_file():
        return "partial", part.stat().st_size
    return "absent", 0


def _already(entry: RemoteDataset, folder: Path) -> FetchResult | None:
    record = read_marker(folder)
    if record is None:
        if folder.exists():
            raise FetchError(
                f"'{folder}' exists but was not made by `fedmetamal data fetch` (it has no "
                f"{MARKER}).",
                "Move it away or choose another folder with --dir.",
            )
        return None
    if entry.sha256 and record.get("sha256") != entry.sha256:
        raise FetchError(
            f"'{folder}' was fetched from an archive with SHA-256 {record.get('sha256')}, not "
            f"the catalog's {entry.sha256}.",
            "Run the command again with --force to replace it.",
        )
    changed = _changed_files(folder, record)
    if changed:
        raise FetchError(
            f"'{folder}' was fetched earlier but {len(changed)} of its files are missing or "
            f"changed (e.g. '{changed[0]}').",
            "Run the command again with --force to fetch it afresh.",
        )
    return FetchResult(entry.name, folder, "already", str(record.get("sha256")), record["files"])


def _verify(entry: RemoteDataset, path: Path, progress: ProgressSink | None) -> str:
    """The file's SHA-256, checked against the published one when there is one."""
    digest = sha256_of(path, progress)
    if entry.sha256 and digest != entry.sha256:
        raise FetchError(
            f"The SHA-256 of '{path}' is {digest}, but the publisher's is {entry.sha256} "
            f"({entry.sha256_source}). The file was kept, not unpacked.",
            f"The transfer or the mirror is corrupt: delete '{path}' and run the same command "
            "again (without --url to use the publisher's address).",
        )
    return digest


def _download_archive(
    entry: RemoteDataset,
    data_dir: Path,
    base_url: str | None,
    progress: ProgressSink | None,
    say: Callable[[str], None],
) -> tuple[Path, str, str | None]:
    """A complete, verified archive in ``downloads/``, its SHA-256 and the address it came
    from (``None`` for an archive placed there by hand)."""
    archive = archive_path(entry, data_dir)
    if archive.is_file():
        say(f"using the archive already in {archive.parent}")
        return archive, _verify(entry, archive, progress), None
    base = base_url or os.environ.get(URL_ENV) or entry.base_url
    if base is None:
        raise FetchError(
            f"'{entry.name}' has no direct download address: {entry.content}.",
            f"Get it from {entry.homepage}, or place '{entry.filename}' in '{archive.parent}' "
            "and run the same command again.",
        )
    url = join_url(base, entry.filename)
    part = part_path(entry, data_dir)
    say(f"downloading {url}")
    size = download(url, part, progress, say=say)
    if entry.size is not None and size != entry.size:
        raise FetchError(
            f"'{part}' has {size} bytes, but the publisher gives {entry.size}. It was kept.",
            f"Delete '{part}' and run the same command again.",
        )
    digest = _verify(entry, part, progress)
    part.replace(archive)
    return archive, digest, url


def fetch(
    entry: RemoteDataset,
    data_dir: Path,
    base_url: str | None = None,
    progress: ProgressSink | None = None,
    say: Callable[[str], None] | None = None,
    keep_archive: bool = False,
    force: bool = False,
) -> FetchResult:
    """Download, verify and unpack ``entry`` into ``data_dir/<name>/``; idempotent.

    ``base_url`` (or ``$FEDMETAMAL_DATA_URL``) replaces the publisher's folder address, e.g.
    for a mirror; the published checksum is still required to match.
    """
    say = say or (lambda _text: None)
    folder = data_dir / entry.name
    if force and read_marker(folder) is not None:
        shutil.rmtree(folder)
    done = _already(entry, folder)
    if done is not None:
        return done
    archive, digest, url = _download_archive(entry, data_dir, base_url, progress, say)
    record: dict[str, Any] = {
        "name": entry.name,
        "filename": entry.filename,
        "url": url,
        "sha256": digest,
        "sha256_published": entry.sha256,
        "sha256_source": entry.sha256_source,
        "archive_bytes": archive.stat().st_size,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fedmetamal_version": __version__,
    }

    def write_marker(scratch: Path, files: dict[str, int]) -> None:
        record["files"] = files
        (scratch / MARKER).write_text(json.dumps(record, indent=2), encoding="utf-8")

    if archive_kind(entry.filename) is None:
        scratch = folder.with_name(f".{folder.name}.unpacking")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        files = {entry.filename: archive.stat().st_size}
        archive.replace(scratch / entry.filename)
        write_marker(scratch, files)
        scratch.replace(folder)
    else:
        files = unpack(archive, folder, progress, finish=write_marker)
    if not keep_archive and archive.exists():
        archive.unlink()
    say(f"unpacked {len(files)} files ({human_bytes(sum(files.values()))}) into {folder}")
    return FetchResult(entry.name, folder, "fetched", digest, files)
