"""A detector trained end to end on real PE files (extract -> simulate -> model.onnx), built once.

The corpus's MinGW programs are labelled benign and the ClamAV test executables malware; the
model is tiny and its verdicts mean little, but every stage it passes through is the real one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from features.pe_corpus import build_corpus  # tests/ is on sys.path (tests/features is a package)
from fedmetamal.api import simulate
from fedmetamal.cli import run as run_cli


@dataclass(frozen=True)
class Trained:
    """A run's model and the files around it."""

    model: Path
    checkpoint: Path
    dataset: Path
    pe_files: tuple[Path, ...]
    other_files: tuple[Path, ...]


def _train(tmp_path_factory: pytest.TempPathFactory, schema: str) -> Trained:
    """Extract the corpus with ``schema`` (benign: MinGW programs, malware: ClamAV's test
    executables), train a tiny detector on it and return its files."""
    try:
        corpus = build_corpus()
    except Exception as err:  # no compiler, no network: say why and skip
        pytest.skip(f"PE corpus could not be built: {type(err).__name__}: {err}")
    mingw = [p for p in corpus.pe_files if p.parent.name == "mingw"]
    clam = [p for p in corpus.pe_files if p.parent.name == "clamav"]
    if len(mingw) < 5 or len(clam) < 5:
        pytest.skip(f"too few real PE files in {corpus.root} to train a detector")
    root = tmp_path_factory.mktemp(f"detect-{schema}")
    data = root / "data"
    for files, folder in ((mingw, data / "benign"), (clam, data / "malware" / "clamtest")):
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / f.name)
    dataset = root / "ds.parquet"
    assert run_cli(["extract", str(data), "--schema", schema, "-o", str(dataset), "-q"]) == 0
    result = simulate(
        {
            "seed": 0,
            "dataset": {"source": str(dataset)},
            "partition": {
                "clients": 2,
                "min_client_size": 2,
                "test_fraction": 0.25,
                "client_test_fraction": 0.4,
            },
            "model": {"hidden": [8]},
            "training": {"rounds": 3},
            "output": {"dir": str(root / "runs")},
        }
    )
    assert result.run_dir is not None
    run_dir = Path(result.run_dir)
    return Trained(
        model=run_dir / "model.onnx",
        checkpoint=run_dir / "model.safetensors",
        dataset=dataset,
        pe_files=tuple(sorted(data.rglob("*.exe")) + sorted(data.rglob("*.dll"))),
        other_files=tuple(p for p in corpus.other_files if p.stat().st_size < 1_000_000)[:8],
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A detector on the pe-header schema."""
    return _train(tmp_path_factory, "pe-header")


@pytest.fixture(scope="session")
def trained_ember(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A detector on the ember-v3 schema (EMBER2024's 2568 features)."""
    return _train(tmp_path_factory, "ember-v3")
