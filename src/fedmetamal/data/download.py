"""Resumable HTTP downloads into a ``.part`` file, with progress and errors that say what to do.

Public dataset archives are gigabytes; a dropped connection must not cost the bytes already
received. The ``.part`` file therefore survives every failure, and the next call asks the
server for the rest with an HTTP ``Range`` request. Only the standard library is used, so a
fetch works wherever the package is installed.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from fedmetamal import __version__
from fedmetamal.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 30.0


class FetchError(DataError):
    """A download, checksum or unpacking step failed; the message says how to retry."""


class ProgressSink(Protocol):
    """Where a long step reports its bytes (a terminal bar in the CLI, nothing in tests)."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None: ...

    def advance(self, n: int) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    """A progress sink that shows nothing."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        del label, total, done

    def advance(self, n: int) -> None:
        del n

    def end(self) -> None:
        pass


def human_bytes(n: float) -> str:
    """``n`` bytes as a short text (``1.6 GB``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _range_total(header: str | None) -> int | None:
    """The complete size from a ``Content-Range`` header (``bytes a-b/total`` or ``*/total``)."""
    match = re.search(r"/(\d+)\s*$", header or "")
    return int(match.group(1)) if match else None


def _range_start(header: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", header or "")
    return int(match.group(1)) if match else None


def _interrupted(url: str, part: Path, written: int, total: int | None, why: object) -> FetchError:
    of = f" of {human_bytes(total)}" if total else ""
    return FetchError(
        f"The download from {_host(url)} stopped after {human_bytes(written)}{of} ({why}). "
        f"The bytes received are kept in '{part}'.",
        "Run the same command again to resume from there.",
    )


def _open(url: str, have: int, timeout: float) -> http.client.HTTPResponse | None:
    """The server's response for the bytes from ``have`` on; ``None`` when the ``.part`` file
    already holds the whole file (the server answers 416 to a range past its end)."""
    headers = {"User-Agent": f"fedmetamal/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        total = _range_total(err.headers.get("Content-Range")) if err.headers else None
        if err.code == 416 and have and total in (None, have):
            return None
        if err.code == 404:
            raise FetchError(
                f"{url} does not exist (HTTP 404 from {_host(url)}).",
                "Check the dataset name and --url; the publisher may have moved the file.",
            ) from None
        raise FetchError(
            f"{_host(url)} refused the download of {url}: HTTP {err.code} {err.reason}.",
            "Try again later, or download the file another way (see `fedmetamal data list`).",
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(
            f"Cannot reach {_host(url)} ({reason}); the network or the server is unavailable.",
            "Check the connection (and proxy settings via HTTPS_PROXY), then run the same "
            "command again; or put the archive in the downloads folder by hand (see docs/data.md).",
        ) from None


def download(
    url: str,
    part: Path,
    progress: ProgressSink | None = None,
    timeout: float = TIMEOUT_S,
    say: Callable[[str], None] | None = None,
) -> int:
    """Complete ``part`` from ``url``, resuming after the bytes it already holds; returns its
    final size. Raises FetchError (keeping ``part``) on any network failure."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"'{url}' is not an http(s) address.", "Pass --url http(s)://HOST/PATH.")
    progress = progress or NoProgress()
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    response = _open(url, have, timeout)
    if response is None:
        return have
    with response:
        total: int | None
        if have and response.status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != have:
                raise FetchError(
                    f"{_host(url)} answered the resume request with bytes from {start}, not "
                    f"{have}.",
                    f"Delete '{part}' and run the same command again to download from the start.",
                )
            total = _range_total(response.headers.get("Content-Range"))
            mode = "ab"
            if say:
                say(f"resuming at {human_bytes(have)}")
        else:
            if have and say:
                say("the server does not resume downloads; starting again from the beginning")
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        written = have
        progress.begin(f"download {part.name.removesuffix('.part')}", total, have)
        try:
            with part.open(mode) as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (http.client.HTTPException, OSError) as err:
                        raise _interrupted(url, part, written, total, err) from None
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                    except OSError as err:
                        raise FetchError(
                            f"Cannot write '{part}' ({err.strerror or err}).",
                            "Free disk space or choose another folder with --dir, then run "
                            "the same command again to resume.",
                        ) from None
                    written += len(chunk)
                    progress.advance(len(chunk))
        finally:
            progress.end()
    if total is not None and written < total:
        raise _interrupted(url, part, written, total, "the connection closed early")
    return written


def sha256_of(path: Path, progress: ProgressSink | None = None) -> str:
    """The SHA-256 of a file, read in chunks (archives are gigabytes)."""
    progress = progress or NoProgress()
    digest = hashlib.sha256()
    progress.begin(f"check {path.name.removesuffix('.part')}", path.stat().st_size)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                progress.advance(len(chunk))
    finally:
        progress.end()
    return digest.hexdigest()
