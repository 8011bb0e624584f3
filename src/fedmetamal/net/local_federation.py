"""A whole federation on one machine over real gRPC: the demo and the end-to-end tests.

The dataset is partitioned exactly as the simulation partitions it; each participant's share is
written to its own file and read back by a separate ``fedmetamal join`` process, so what
crosses the loopback is what would cross a network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fedmetamal.config import RunConfig
from fedmetamal.data.federation import Federation


def write_partitions(fed: Federation, folder: Path) -> list[tuple[Path, Path]]:
    """Each client's training rows and local test split as ``.npz`` files (X, y, names),
    with their metadata (family, first_seen, ...) in the ``_metadata.csv`` beside each."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, c in enumerate(fed.clients, start=1):
        paths = []
        for part, ds in (("train", c.train), ("test", c.test)):
            p = folder / f"participant-{i}-{part}.npz"
            np.savez(p, X=np.asarray(ds.X), y=ds.y, feature_names=np.array(ds.feature_names))
            if ds.metadata is not None:  # family, first_seen...: the loader's sidecar file
                ds.metadata.to_csv(p.with_name(f"{p.stem}_metadata.csv"), index=False)
            paths.append(p)
        out.append((paths[0], paths[1]))
    return out


def partition_for(cfg: RunConfig) -> Federation:
    from fedmetamal.api import build_federation

    return build_federation(cfg)


def join_command(
    server: str,
    token: str,
    data: Path,
    test_data: Path | None,
    state_dir: Path,
    name: str,
    threads: int = 1,
) -> list[str]:
    """The ``fedmetamal join`` command line of a local (plaintext, loopback) participant."""
    cmd = [
        sys.executable,
        "-m",
        "fedmetamal",
        "join",
        "--server",
        server,
        "--token",
        token,
        "--data",
        str(data),
        "--state-dir",
        str(state_dir),
        "--name",
        name,
        "--insecure",
        "--threads",
        str(threads),
    ]
    if test_data is not None:
        cmd += ["--test-data", str(test_data)]
    return cmd


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a participant process with its output in ``log`` (one torch thread each)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
