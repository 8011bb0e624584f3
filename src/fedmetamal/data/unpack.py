"""Unpacking downloaded archives without trusting them.

An archive may name members like ``../../.bashrc`` or ``/etc/passwd``, or carry links that
point outside the target; extracting such a member writes wherever the archive says. Every
member is therefore checked before it is written: only plain files and folders with relative
names inside the target are accepted, and one bad member refuses the whole archive. Members are
copied by hand (no ``extractall``) so no owner, mode or link from the archive is applied, and
the work happens in a scratch folder that is removed on any failure.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from fedmetamal.data.download import CHUNK, FetchError, NoProgress, ProgressSink

TAR_SUFFIXES = (".tar.bz2", ".tbz2", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar")
ZIP_SUFFIXES = (".zip",)


def archive_kind(name: str) -> str | None:
    """``tar`` or ``zip`` from the file name, ``None`` for a file that is not unpacked."""
    lower = name.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def _distrust(archive: Path) -> str:
    return (
        f"Delete '{archive}' and do not use its source; fetch from the publisher's address "
        "(without --url)."
    )


def safe_member_path(name: str, archive: Path) -> PurePosixPath:
    """The relative path a member may be written to; FetchError for absolute names, ``..``
    components or Windows drive names."""
    clean = name.replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if clean.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        raise FetchError(
            f"'{archive}' contains the member '{name}', which would be written outside the "
            "data folder; nothing was unpacked.",
            _distrust(archive),
        )
    return PurePosixPath(*parts)


class _Counting:
    """A read-only file wrapper that reports how many compressed bytes were consumed."""

    def __init__(self, raw: IO[bytes], progress: ProgressSink) -> None:
        self._raw = raw
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._progress.advance(len(data))
        return data


def _copy(src: IO[bytes], target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            size += len(chunk)
    return size


def _tar_members(archive: Path, dest: Path, progress: ProgressSink) -> Iterator[tuple[str, int]]:
    progress.begin(f"unpack {archive.name}", archive.stat().st_size)
    with archive.open("rb") as raw:
        counted = _Counting(raw, progress)
        with tarfile.open(fileobj=counted, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                rel = safe_member_path(member.name, archive)
                if member.isdir():
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise FetchError(
                        f"'{archive}' contains '{member.name}', a link or special file; only "
                        "plain files are unpacked, and nothing was.",
                        _distrust(archive),
                    )
                src = tar.extractfile(member)
                assert src is not None
                yield str(rel), _copy(src, dest / rel)


def _zip_members(archive: Path, dest: Path, progress: ProgressSink) -> Iterator[tuple[str, int]]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        progress.begin(f"unpack {archive.name}", sum(i.file_size for i in infos))
        for info in infos:
            rel = safe_member_path(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FetchError(
                    f"'{archive}' contains '{info.filename}', a link; only plain files are "
                    "unpacked, and nothing was.",
                    _distrust(archive),
                )
            if info.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                size = _copy(src, dest / rel)
            progress.advance(info.file_size)
            yield str(rel), size


def unpack(
    archive: Path,
    dest: Path,
    progress: ProgressSink | None = None,
    finish: Callable[[Path, dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Unpack ``archive`` into the new folder ``dest``; returns ``{relative path: size}``.

    ``dest`` appears only when every member was checked and written (a scratch sibling is
    renamed into place, after ``finish(scratch, files)`` adds what the caller needs, such as a
    marker file); a damaged or hostile archive leaves nothing behind.
    """
    progress = progress or NoProgress()
    kind = archive_kind(archive.name)
    if kind is None:
        raise FetchError(f"'{archive.name}' is not a tar or zip archive.", None)
    scratch = dest.with_name(f".{dest.name}.unpacking")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    members = _tar_members if kind == "tar" else _zip_members
    try:
        files = dict(members(archive, scratch, progress))
    except FetchError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    except OSError as err:
        shutil.rmtree(scratch, ignore_errors=True)
        if err.errno is None:  # bz2/gzip/lzma report bad data as an OSError without errno
            raise _damaged(archive, err) from None
        raise FetchError(
            f"Cannot write into '{dest.parent}' ({err.strerror or err}).",
            "Free disk space or choose another folder with --dir, then run the same command.",
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as err:
        shutil.rmtree(scratch, ignore_errors=True)
        raise _damaged(archive, err) from None
    finally:
        progress.end()
    if finish is not None:
        finish(scratch, files)
    scratch.replace(dest)
    return files


def _damaged(archive: Path, err: BaseException) -> FetchError:
    return FetchError(
        f"'{archive}' is damaged and cannot be unpacked ({err}).",
        f"Delete '{archive}' and run the same command again to download it afresh.",
    )
