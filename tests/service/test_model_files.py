"""Model versions as files (service/model_files.py), which both operator transports serve:
safetensors is the checkpoint itself, ONNX is built once and kept, tensors match the
checkpoint, and bad requests get one clear error."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import pytest
from tests.net.harness import ServerThread, small_config, wait_until

from fedmetamal.errors import ConfigError
from fedmetamal.models.checkpoint import load_checkpoint
from fedmetamal.service.model_files import export_model, model_tensors
from fedmetamal.service.store import NotFound


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, str]]:
    """A server with one finished simulated run; the id of its last model version."""
    srv = ServerThread(tmp_path_factory.mktemp("model-files") / "server")
    try:
        cfg = small_config()
        run_id = srv.run_sync(
            lambda: srv.core.create_run("m", cfg.model_dump_json(), [], True, simulated=3).run_id
        )
        wait_until(
            lambda: srv.core.store.get_run(run_id).state in ("completed", "failed"),
            120,
            "the simulated run",
            every=0.05,
        )
        assert srv.core.store.get_run(run_id).state == "completed"
        yield srv, srv.core.store.list_models(run_id)[-1].model_id
    finally:
        srv.stop()


def test_safetensors_export_is_the_checkpoint_file(stored: tuple[ServerThread, str]) -> None:
    srv, model_id = stored
    out = export_model(srv.core.store, srv.core.data_dir, model_id, "safetensors")
    path = srv.core.data_dir / srv.core.store.get_model(model_id).path
    assert out.data == path.read_bytes()
    assert out.name == f"{model_id}.safetensors"


def test_onnx_export_is_built_once_and_kept_beside_the_checkpoint(
    stored: tuple[ServerThread, str],
) -> None:
    srv, model_id = stored
    path = srv.core.data_dir / srv.core.store.get_model(model_id).path
    cached = path.with_suffix(".onnx")
    cached.unlink(missing_ok=True)
    first = export_model(srv.core.store, srv.core.data_dir, model_id, "onnx")
    assert cached.read_bytes() == first.data and first.media_type == "application/onnx"
    onnx.checker.check_model(onnx.load_from_string(first.data))
    stamp = cached.stat().st_mtime_ns
    again = export_model(srv.core.store, srv.core.data_dir, model_id, "onnx")
    assert again.data == first.data and cached.stat().st_mtime_ns == stamp
    assert not list(path.parent.glob(".*.tmp")), "no temporary file left behind"


def test_tensors_are_the_checkpoints_parameters_and_preprocessing(
    stored: tuple[ServerThread, str],
) -> None:
    srv, model_id = stored
    tensors = model_tensors(srv.core.store, srv.core.data_dir, model_id)
    ckpt = load_checkpoint(srv.core.data_dir / srv.core.store.get_model(model_id).path)
    np.testing.assert_array_equal(tensors["params"], ckpt.params.numpy())
    pre = {k.removeprefix("pre."): v for k, v in tensors.items() if k.startswith("pre.")}
    assert pre.keys() == ckpt.preprocessor.tensors().keys()


def test_an_unknown_format_or_model_is_refused_with_what_to_do(
    stored: tuple[ServerThread, str],
) -> None:
    srv, model_id = stored
    with pytest.raises(ConfigError, match=r"Unknown export format 'pickle'.*onnx or safetensors"):
        export_model(srv.core.store, srv.core.data_dir, model_id, "pickle")
    with pytest.raises(NotFound):
        export_model(srv.core.store, srv.core.data_dir, "m-nope", "onnx")
    with pytest.raises(NotFound):
        model_tensors(srv.core.store, srv.core.data_dir, "m-nope")
