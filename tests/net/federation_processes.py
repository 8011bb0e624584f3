"""A federation of real processes for the end-to-end and fault tests: `fedmetamal serve` and
`fedmetamal join` started as a user would, talking gRPC over loopback."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tests.net.harness import free_port, start_process, wait_until

from fedmetamal.config import RunConfig
from fedmetamal.net.control_client import ControlClient, ControlError


@dataclass
class ProcessFederation:
    root: Path
    procs: list[subprocess.Popen[bytes]]
    heartbeat_timeout: float = 3.0
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    participants: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "server"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_server(self) -> None:
        args = [
            "serve",
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--auto-approve",
            "--no-web",
            "--heartbeat-interval",
            "0.5",
            "--heartbeat-timeout",
            str(self.heartbeat_timeout),
        ]
        self.server = start_process(args, self.root / "server.log")
        self.procs.append(self.server)
        wait_until(self._answers, 60, "the server to answer")

    def _answers(self) -> bool:
        token_file = self.data_dir / "operator.token"
        if not token_file.is_file():
            return False
        try:
            with self.control() as c:
                c.server_info()
            return True
        except ControlError:
            return False

    def control(self) -> ControlClient:
        token = (self.data_dir / "operator.token").read_text().strip()
        return ControlClient(self.target, token, insecure=True)

    def start_participant(self, name: str, train: Path, test: Path | None = None) -> None:
        with self.control() as c:
            token = c.create_token(auto_approve=True).token
        args = [
            "join",
            "--server",
            self.target,
            "--token",
            token,
            "--data",
            str(train),
            "--state-dir",
            str(self.root / "state" / name),
            "--name",
            name,
            "--insecure",
            "--threads",
            "1",
        ]
        if test is not None:
            args += ["--test-data", str(test)]
        proc = start_process(args, self.root / f"{name}.log")
        self.procs.append(proc)
        self.participants[name] = proc

    def participant_ids(self, names: list[str]) -> list[str]:
        """Ids in the order of ``names``, once all are online with a summary."""

        def ready() -> list[str] | None:
            with self.control() as c:
                by_name = {p.name: p for p in c.list_participants()}
            ok = [
                by_name[n]
                for n in names
                if n in by_name and by_name[n].online and by_name[n].summary.n_train > 0
            ]
            return [p.participant_id for p in ok] if len(ok) == len(names) else None

        return wait_until(ready, 120, f"participants {names} to come online")

    def run(self, cfg: RunConfig, ids: list[str]) -> str:
        with self.control() as c:
            return c.create_run("test", cfg.model_dump_json(), ids, start=True).run_id

    def wait_finished(self, run_id: str, timeout: float = 300) -> str:
        def done() -> str | None:
            try:
                with self.control() as c:
                    state = c.run_action("Get", run_id).state
            except ControlError:
                return None
            return state if state in ("completed", "failed", "stopped") else None

        return wait_until(done, timeout, f"run {run_id} to finish", every=0.5)

    def final_params(self, run_id: str, rounds: int) -> torch.Tensor:
        from fedmetamal.models.checkpoint import load_checkpoint

        path = self.data_dir / "runs" / run_id / f"round-{rounds:05d}.safetensors"
        return load_checkpoint(path).params

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )
