"""The network runtime computes what the simulation computes: same rounds, same global model,
for algorithms with client state, server optimisers, robust rules, dropout and client
sampling — and on PostgreSQL as on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.net.harness import (
    ServerThread,
    federation_files,
    participant_ids,
    small_config,
    start_participants,
)

from fedmetamal.api import build_federation, simulate
from fedmetamal.config import RunConfig
from fedmetamal.models.checkpoint import load_checkpoint
from fedmetamal.net.participant import Participant

pytestmark = pytest.mark.slow


def _run_in_process(
    tmp_path: Path,
    cfg: RunConfig,
    database_url: str | None = None,
    participant_class: type[Participant] = Participant,
) -> tuple[Any, list[Any]]:
    """Server in a thread, participants on this thread's event loop; the final params and
    the stored rounds."""
    files = federation_files(cfg, tmp_path / "data")
    server = ServerThread(tmp_path / "server", database_url=database_url)
    try:
        tokens = [server.token() for _ in files]

        async def participants() -> None:
            stop = asyncio.Event()
            tasks = start_participants(server, files, tmp_path, stop, tokens, participant_class)
            ids = await participant_ids(server, len(files))
            with server.control() as c:
                run = c.create_run("parity", cfg.model_dump_json(), ids, start=True)
                await asyncio.to_thread(lambda: list(c.watch(run.run_id)))
                state = c.run_action("Get", run.run_id)
                rounds = c.list_rounds(run.run_id)
            stop.set()
            await asyncio.gather(*tasks)
            assert state.state == "completed", state.error
            participants.result = (run.run_id, rounds)  # type: ignore[attr-defined]

        asyncio.run(participants())
        run_id, rounds = participants.result  # type: ignore[attr-defined]
        path = (
            server.core.data_dir / "runs" / run_id / f"round-{cfg.training.rounds:05d}.safetensors"
        )
        return load_checkpoint(path).params, rounds
    finally:
        server.stop()


CASES = {
    "fedprox": {"algorithm.name": "fedprox", "algorithm.params": {"mu": 0.1}},
    "fedadam": {"algorithm.name": "fedadam"},
    "fednova-momentum": {"algorithm.name": "fednova", "training.client_momentum": 0.9},
    "median-dropout": {"aggregation.kind": "median", "model.dropout": 0.2},
    "dp-adaptive-clip": {
        "privacy.mode": "participant",
        "privacy.noise_multiplier": 0.3,
        "privacy.clip": 1.0,
        "privacy.adaptive_clip": True,
        "privacy.clip_count_stddev": 0.5,
    },
    # > 1 MiB of parameters: tasks' tensors come by DownloadTask, not inside the PullTask reply
    "large-model-download": {"model.hidden": [4200], "training.rounds": 2},
    "sampling": {"partition.clients": 4, "training.client_fraction": 0.5, "training.rounds": 4},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_network_runtime_matches_the_simulation(tmp_path: Path, case: str) -> None:
    cfg = small_config(**CASES[case])
    params, rounds = _run_in_process(tmp_path, cfg)
    expected = simulate(cfg, write_outputs=False, federation=build_federation(cfg)).params
    assert float((params - expected).abs().max()) < 1e-5
    assert [r.round for r in rounds] == list(range(1, cfg.training.rounds + 1))
    if case == "sampling":  # 2 of 4 participants a round, the simulation's choice
        assert all(len(r.sampled) == 2 for r in rounds)
    if case.startswith("dp"):  # the accountant's epsilon grows round by round
        eps = [r.metrics["epsilon"] for r in rounds]
        assert eps == sorted(eps) and eps[0] > 0


def test_a_run_on_postgresql(tmp_path: Path) -> None:
    from tests.service.conftest import postgres_base_url

    base = postgres_base_url()
    cfg = small_config(**{"training.rounds": 2})
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fmm_net_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        params, rounds = _run_in_process(tmp_path, cfg, database_url=url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    expected = simulate(cfg, write_outputs=False, federation=build_federation(cfg)).params
    assert float((params - expected).abs().max()) < 1e-5
    assert [r.round for r in rounds] == [1, 2]


@pytest.mark.parametrize("neighbours", [None, 2])
def test_secure_aggregation_over_grpc_matches_the_simulated_protocol(
    tmp_path: Path, neighbours: int | None
) -> None:
    """Four protocol stages as tasks; the decoded weighted mean is the simulation's."""
    cfg = small_config(
        **{"partition.clients": 4, "secagg.enabled": True, "secagg.neighbours": neighbours}
    )
    params, rounds = _run_in_process(tmp_path, cfg)
    expected = simulate(cfg, write_outputs=False, federation=build_federation(cfg)).params
    assert float((params - expected).abs().max()) < 1e-5
    assert all(len(r.reported) == 4 for r in rounds)


class _DropsOutAtMaskedInput(Participant):
    """Goes silent in round 1 after sharing its keys, as a crashed machine would."""

    def _compute(self, task: Any, tensors: Any, header: Any) -> Any:
        from fedmetamal.net.participant_secagg import SecAggSessionLost
        from fedmetamal.v1 import federation_pb2

        if task.kind == federation_pb2.Task.SECAGG_MASKED_TRAIN and task.round == 0:
            raise SecAggSessionLost("simulated crash before the masked input")
        return super()._compute(task, tensors, header)


def test_secure_aggregation_survives_a_dropout_after_key_sharing(tmp_path: Path) -> None:
    """The dropped participant's pairwise masks are rebuilt from its key shares and removed:
    the round still aggregates the other three updates."""
    cfg = small_config(**{"partition.clients": 4, "secagg.enabled": True, "training.rounds": 2})
    params, rounds = _run_in_process(tmp_path, cfg, participant_class=_DropsOutAtMaskedInput)
    assert [r.round for r in rounds] == [1, 2]
    assert len(rounds[0].reported) == 3 and len(rounds[1].reported) == 4
    assert any("simulated crash" in why for why in rounds[0].rejected.values())
    assert bool(params.isfinite().all())
