"""Scanning must work where torch is not installed: run it with torch made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import Trained

_BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, NoTorch())
sys.argv = ["fedmetamal", *sys.argv[1:]]
from fedmetamal.cli import main
try:
    main()
finally:
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch imported"
"""


def test_scan_runs_without_torch(trained: Trained) -> None:
    files = [str(p) for p in trained.pe_files[:4]] + [str(trained.other_files[0])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _BLOCK_TORCH,
            "scan",
            *files,
            "-m",
            str(trained.model),
            "-f",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in records] == files
    assert all(r["top_features"] for r in records[:4])
    assert records[-1]["verdict"] == "not a PE file"
    assert "blocked by the test" not in done.stderr


def test_the_blocker_does_block_torch() -> None:
    """The trick above must really stop an import, or the test above proves nothing."""
    code = _BLOCK_TORCH.split("sys.argv")[0] + "import fedmetamal.models.export\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "blocked by the test" in done.stderr
