"""Extracting one file safely: bounded reads, a size limit, and no exception ever escapes.

Header bytes are read with ``os.pread`` at the offsets a schema asks for, and the SHA-256 is
computed in 1 MiB chunks, so memory stays small whatever the file size. Anything that goes
wrong (unreadable file, a bug tripped by a malformed header) becomes a :class:`Failure` with a
reason, because one hostile file must not stop a run over thousands.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from fedmetamal.features.outcome import Failure, FileRecord
from fedmetamal.features.schema import FeatureSchema

#: Files above this size are refused unless the caller raises the limit (``--max-size-mb``).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 20
#: No schema reads more than this many bytes in one call: a corrupt length cannot allocate GBs.
MAX_READ = 1 << 20


def _sha256(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def extract_file(
    path: Path | str,
    schema: FeatureSchema,
    max_bytes: int = DEFAULT_MAX_BYTES,
    label: str | None = None,
) -> FileRecord:
    """Hash ``path`` and run ``schema``'s extractor on it; a Failure record for any problem.

    ``label`` is the path recorded in the result (a path relative to the scanned folder);
    it defaults to ``path`` itself.
    """
    shown = str(path) if label is None else label
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        return FileRecord(shown, 0, None, Failure(f"unreadable: {err.strerror or err}"))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return FileRecord(shown, 0, None, Failure("not a regular file: skipped"))
        size = info.st_size
        if size > max_bytes:
            reason = f"too large: {_mb(size)} exceeds the {_mb(max_bytes)} limit (--max-size-mb)"
            return FileRecord(shown, size, None, Failure(reason))

        def read_at(offset: int, length: int) -> bytes:
            if offset < 0 or offset >= size or length <= 0:
                return b""
            return os.pread(fd, min(length, MAX_READ, size - offset), offset)

        digest = _sha256(fd, size)
        try:
            outcome = schema.extract(read_at, size)
        except Exception as err:  # a malformed file must never stop the run
            outcome = Failure(f"extractor error: {type(err).__name__}: {err}")
        return FileRecord(shown, size, digest, outcome)
    except OSError as err:
        return FileRecord(shown, 0, None, Failure(f"unreadable: {err.strerror or err}"))
    finally:
        os.close(fd)
