"""The committed generated code is what scripts/gen_proto.sh makes from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO)) for p in (REPO / "proto").rglob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *protos,
    ]
    subprocess.run(cmd, cwd=REPO, check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert fresh, "protoc generated nothing"
    stale = [
        str(rel)
        for rel in fresh
        if (REPO / "src" / rel).read_bytes() != (tmp_path / rel).read_bytes()
    ]
    assert not stale, f"regenerate with scripts/gen_proto.sh: {stale}"


def test_generated_typescript_client_is_current(tmp_path: Path) -> None:
    """The dashboard's committed TS client (frontend/src/gen) matches the .proto files."""
    import pytest

    plugin = REPO / "frontend" / "node_modules" / ".bin" / "protoc-gen-es"
    if not plugin.exists():
        pytest.skip("frontend/node_modules is not installed (scripts/install.sh does it)")
    protos = sorted(str(p.relative_to(REPO)) for p in (REPO / "proto").rglob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        f"--plugin=protoc-gen-es={plugin}",
        f"--es_out={tmp_path}",
        "--es_opt=target=ts",
        *protos,
    ]
    subprocess.run(cmd, cwd=REPO, check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.ts"))
    assert fresh, "protoc-gen-es generated nothing"
    gen = REPO / "frontend" / "src" / "gen"
    stale = [str(rel) for rel in fresh if (gen / rel).read_bytes() != (tmp_path / rel).read_bytes()]
    assert not stale, f"regenerate with scripts/gen_proto.sh: {stale}"
