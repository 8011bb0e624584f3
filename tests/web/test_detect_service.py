"""DetectService.ExtractFeatures: real PE files in, the model's feature vector out, from memory.

The model is a checkpoint registered in the server's store like a run's model version; its
inputs are the pe-header columns in reverse order, so the test sees the model's column order
rather than the schema's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedmetamal.config import RunConfig
from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.features.extract_file import extract_file
from fedmetamal.features.outcome import Row
from fedmetamal.features.schema import get_schema
from fedmetamal.models.checkpoint import save_checkpoint
from fedmetamal.models.networks import Network
from fedmetamal.service.records import ModelRecord, RoundRow, RunRecord
from fedmetamal.v1 import dashboard_pb2 as pb

from .conftest import VIEWER, Web, start_web


def _register_model(web: Web, model_id: str, names: list[str], schema: dict | None) -> None:
    """Write a checkpoint taking ``names`` and register it as round 1 of a run of its own."""
    cfg = RunConfig.model_validate({"model": {"hidden": [4]}})
    network = Network.from_config(cfg.model, len(names))
    import torch

    params = network.init(torch.Generator().manual_seed(0))
    rel = f"runs/{model_id}/round-00001.safetensors"
    save_checkpoint(
        web.data_dir / rel,
        network,
        params,
        Preprocessor.identity(len(names)),
        names,
        metadata={"feature_schema": schema} if schema else {},
    )
    now = time.time()
    store = web.thread.core.store
    run_id = f"run-{model_id}"
    store.add_run(RunRecord(run_id, run_id, "completed", cfg.model_dump_json(), [], now, now))
    store.complete_round(
        RoundRow(run_id, 1, now, now, [], [], {}, {}, model_id=model_id),
        ModelRecord(
            model_id,
            run_id,
            1,
            now,
            rel,
            "0" * 64,
            int(params.numel()),
            schema["name"] if schema else None,
        ),
        {"round": 1},
    )


SCHEMA = get_schema("pe-header")
COLUMNS = list(reversed(SCHEMA.columns))


@pytest.fixture(scope="module")
def pe_files() -> list[Path]:
    """A few real PE files from the cached corpus (tests/features/pe_corpus.py builds it)."""
    from features.pe_corpus import build_corpus

    try:
        corpus = build_corpus()
    except Exception as err:  # no compiler, no network: say why and skip
        pytest.skip(f"PE corpus could not be built: {type(err).__name__}: {err}")
    files = sorted(corpus.pe_files, key=lambda p: p.stat().st_size)[:3]
    if not files:
        pytest.skip(f"no real PE files in {corpus.root}")
    return files


@pytest.fixture(scope="module")
def detect_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    w = start_web(tmp_path_factory.mktemp("detect"), max_upload_mb=0.25)
    w.thread.run_sync(lambda: w.thread.server.web.accounts.create_user(*VIEWER, "viewer"))
    _register_model(w, "pe-model", COLUMNS, SCHEMA.describe())
    _register_model(w, "net-model", list(SCHEMA.columns), {"name": "pe-header"})
    _register_model(w, "synthetic-model", [f"f{i}" for i in range(8)], None)
    try:
        yield w
    finally:
        w.thread.stop()


def _extract(web: Web, content: bytes, model_id: str = "pe-model", filename: str = "x.exe"):
    b = web.login(*VIEWER)  # viewers may extract: it only reads
    return b.call(
        "DetectService",
        "ExtractFeatures",
        pb.ExtractFeaturesRequest(filename=filename, content=content, model_id=model_id),
        pb.ExtractFeaturesReply,
    )


def test_pe_file_gives_the_extractors_vector_in_model_order(
    detect_web: Web, pe_files: list[Path]
) -> None:
    import hashlib

    import numpy as np

    for path in pe_files:
        data = path.read_bytes()
        reply = _extract(detect_web, data)
        assert isinstance(reply, pb.ExtractFeaturesReply), reply
        assert reply.is_pe and not reply.error
        assert reply.file_type.startswith("PE32")
        assert reply.feature_schema == "pe-header"
        assert reply.sha256 == hashlib.sha256(data).hexdigest() and reply.size == len(data)
        row = extract_file(path, SCHEMA).outcome
        assert isinstance(row, Row)
        want = np.array(row.values, dtype=np.float64)[[SCHEMA.columns.index(c) for c in COLUMNS]]
        assert np.array_equal(np.array(reply.features), want.astype(np.float32))
        # a network run's checkpoint names only the schema: same values, schema order
        net = _extract(detect_web, data, "net-model")
        assert np.array_equal(np.array(net.features), np.array(row.values, dtype=np.float32))


def test_non_pe_upload_is_reported_without_features(detect_web: Web) -> None:
    for content in (b"%PDF-1.4\n% not an executable\n", b"\x7fELF" + b"\0" * 200, b""):
        reply = _extract(detect_web, content, filename="doc.pdf")
        assert not reply.is_pe
        assert reply.file_type == "not a PE file"
        assert list(reply.features) == []
        assert reply.error  # what it is instead, e.g. "not a PE file: no MZ header"


def test_upload_over_the_limit_is_refused_naming_it(detect_web: Web) -> None:
    limit = int(0.25 * 1024 * 1024)
    for size in (limit + 1, 4 * limit):  # caught in the handler / by Content-Length
        reply = _extract(detect_web, b"MZ" + b"\0" * (size - 2))
        assert reply.error["code"] == "resource_exhausted"
        assert "0.25 MB" in reply.error["message"]
        assert "--max-upload-mb" in reply.error["message"]
    assert isinstance(_extract(detect_web, b"MZ" + b"\0" * (limit - 2)), pb.ExtractFeaturesReply)


def test_filename_is_never_used_as_a_path(detect_web: Web, tmp_path: Path) -> None:
    before = _tree(detect_web.data_dir) | _tree(Path.cwd(), depth=1)
    hostile = "../../etc/passwd"
    for name in (hostile, "/tmp/fmm-should-not-exist", "a\0b", "..\\..\\boot.ini"):
        reply = _extract(detect_web, b"MZ" + b"\0" * 62, filename=name)
        assert isinstance(reply, pb.ExtractFeaturesReply)
        assert name not in reply.SerializeToString().decode("latin-1")
    assert not Path("/tmp/fmm-should-not-exist").exists()
    after = _tree(detect_web.data_dir) | _tree(Path.cwd(), depth=1)
    assert after == before


def _tree(root: Path, depth: int = 99) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if len(rel.parts) >= depth:
            dirs[:] = []
        out |= {str(rel / f) for f in files if not f.endswith(("-wal", "-shm", "-journal"))}
    return out


def test_models_that_cannot_score_files_are_refused(detect_web: Web) -> None:
    reply = _extract(detect_web, b"MZ", "synthetic-model")
    assert reply.error["code"] == "failed_precondition"
    assert "cannot score files" in reply.error["message"]
    assert _extract(detect_web, b"MZ", "no-such-model").error["code"] == "not_found"
    assert _extract(detect_web, b"MZ", "").error["code"] == "invalid_argument"


def test_extraction_needs_a_session(detect_web: Web) -> None:
    anon = detect_web.browser()
    code = anon.code(
        "DetectService",
        "ExtractFeatures",
        pb.ExtractFeaturesRequest(content=b"MZ" * 1000, model_id="pe-model"),
        pb.ExtractFeaturesReply,
    )
    assert code == "unauthenticated"


def test_default_limit_is_32_mb(tmp_path: Path) -> None:
    w = start_web(tmp_path)
    try:
        assert w.thread.server.web.max_upload_bytes == 32 * 1024 * 1024
    finally:
        w.thread.stop()
