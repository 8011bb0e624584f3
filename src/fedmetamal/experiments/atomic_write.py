"""One way to write a file that a crash or a concurrent reader never sees half-written.

Suite files, manifests, tables, figures and reports all go through :func:`write_atomic`, so every
file a suite directory holds is either its old or its new version.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` (UTF-8 for text) via a synced temporary file renamed over it.

    The temporary name is unique per process and call, so parallel writers never share one; on
    any error it is removed and the error re-raised, leaving ``path`` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
