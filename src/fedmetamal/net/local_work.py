"""A participant's work on one task: local training or local evaluation of the global model.

Training runs the same ``fl.local.local_train`` and algorithm hooks as the simulation, on a
one-client store whose random streams are seeded with the participant's slot in the run, so a
participant computes exactly the update its simulated twin would. Client state that persists
between rounds (SCAFFOLD's control variate) is kept on disk per run, with the state from before
the last round it trained, so a round the server repeats (after a crash) starts from the same
state again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedmetamal.config import RunConfig
from fedmetamal.data.preprocess import Preprocessor
from fedmetamal.fl.base import RoundContext, State
from fedmetamal.fl.histogram_metrics import score_histogram
from fedmetamal.fl.local import local_train
from fedmetamal.fl.registry import build_algorithm
from fedmetamal.fl.schedule import DROPOUT_STREAM, round_generators
from fedmetamal.models.networks import Network
from fedmetamal.net.participant_data import LocalData
from fedmetamal.service.network_runs import parse_run_config
from fedmetamal.sim.client_store import ClientStore
from fedmetamal.sim.evaluate import predict

_EPS = 1e-7


@dataclass
class TrainResult:
    tensors: dict[str, np.ndarray]  # "delta" then "extra.<name>", in the server's order
    num_samples: int
    steps: int
    train_loss: float


class ClientStateFile:
    """Per-run client state on disk: the state after the last trained round and before it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _paths(self) -> tuple[Path, Path, Path]:
        return (
            self.folder / "state-before.safetensors",
            self.folder / "state-after.safetensors",
            self.folder / "state.json",
        )

    def load_for(self, round_index: int) -> State | None:
        """The state to start ``round_index`` from (None: the algorithm's initial state)."""
        from safetensors.torch import load_file

        before, after, meta = self._paths()
        if not meta.is_file():
            return None
        trained = int(json.loads(meta.read_text())["round"])
        path = before if trained >= round_index else after
        return load_file(str(path)) if path.is_file() else None

    def save(self, round_index: int, before: State, after: State) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        b, a, meta = self._paths()
        for path, state in ((b, before), (a, after)):
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
            tmp.replace(path)
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps({"round": round_index}))
        tmp.replace(meta)


class LocalWork:
    """Caches what stays the same between a run's rounds (config, network, preprocessed data)."""

    def __init__(self, data: LocalData, state_dir: Path) -> None:
        self.data = data
        self.state_dir = state_dir
        self._run: tuple[str, str] | None = None
        self.cfg: RunConfig | None = None
        self.network: Network | None = None
        self._pre_key: bytes = b""
        self._X: torch.Tensor | None = None
        self._X_test: torch.Tensor | None = None

    def _prepare(self, run_id: str, config_json: str, pre: dict[str, np.ndarray]) -> None:
        if self._run != (run_id, config_json):
            self.cfg = parse_run_config(config_json)
            self.network = Network.from_config(self.cfg.model, self.data.n_features)
            self._run, self._pre_key = (run_id, config_json), b""
        key = b"".join(np.ascontiguousarray(pre[k]).tobytes() for k in ("log_mask", "mean", "std"))
        if key != self._pre_key:
            p = Preprocessor.from_tensors(
                {k: torch.from_numpy(np.array(pre[k])) for k in ("log_mask", "mean", "std")}
            )
            if p.n_features != self.data.n_features:
                raise ValueError(
                    f"the server's preprocessing has {p.n_features} features, this "
                    f"participant's data {self.data.n_features}"
                )
            self._X = torch.from_numpy(p.apply(self.data.X))
            self._X_test = torch.from_numpy(p.apply(self.data.X_test))
            self._pre_key = key

    def train(
        self,
        run_id: str,
        round_index: int,
        slot: int,
        lr: float,
        config_json: str,
        tensors: dict[str, np.ndarray],
    ) -> TrainResult:
        self._prepare(
            run_id, config_json, {k[4:]: v for k, v in tensors.items() if k.startswith("pre.")}
        )
        cfg, network, X = self.cfg, self.network, self._X
        assert cfg is not None and network is not None and X is not None
        t = cfg.training
        algorithm = build_algorithm(
            cfg.algorithm.name, cfg.algorithm.params, cfg.algorithm.server_lr
        )
        params = torch.from_numpy(np.array(tensors["params"], dtype=np.float32))
        if params.shape != (network.num_params,):
            raise ValueError(
                f"the global model has {params.numel()} parameters, expected {network.num_params}"
            )
        broadcast = {
            k[10:]: torch.from_numpy(np.array(v))
            for k, v in tensors.items()
            if k.startswith("broadcast.")
        }
        store = ClientStore([X.numpy()], [self.data.y], torch.device("cpu"))
        store.seed_ids[:] = slot
        n_steps = store.step_counts([0], t.batch_size, t.local_epochs, t.local_steps)
        batches = store.batches([0], t.batch_size, n_steps, cfg.seed, round_index)
        ctx = RoundContext(
            round=round_index,
            global_params=params,
            broadcast=broadcast,
            lr=lr,
            momentum=t.client_momentum,
            weight_decay=t.weight_decay,
        )
        files = ClientStateFile(self.state_dir / "runs" / run_id)
        init = {
            k: v.unsqueeze(0) for k, v in algorithm.init_client_state(network.num_params).items()
        }
        stored = files.load_for(round_index) if init else None
        before = stored if stored is not None else init
        gen = (
            round_generators(torch.device("cpu"), cfg.seed, round_index, DROPOUT_STREAM, [slot])
            if network.dropout > 0
            else None
        )
        sizes = torch.as_tensor(store.sizes)
        out, new_state = local_train(
            network, algorithm, ctx, batches, {k: v.clone() for k, v in before.items()}, sizes, gen
        )
        if init:
            files.save(round_index, before, new_state)
        result = {"delta": out.delta[0].detach().float().numpy()}
        result |= {f"extra.{k}": v[0].detach().float().numpy() for k, v in out.extras.items()}
        return TrainResult(result, int(store.sizes[0]), int(out.steps[0]), float(out.train_loss[0]))

    def evaluate(
        self, run_id: str, config_json: str, tensors: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Score histograms of the local test split by class, and the summed loss."""
        self._prepare(
            run_id, config_json, {k[4:]: v for k, v in tensors.items() if k.startswith("pre.")}
        )
        assert self.network is not None and self._X_test is not None
        params = torch.from_numpy(np.array(tensors["params"], dtype=np.float32))
        scores = predict(self.network, params, self._X_test).astype(np.float64)
        y = self.data.y_test
        p = np.clip(scores, _EPS, 1 - _EPS)
        loss_sum = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
        hists = {
            "hist.benign": score_histogram(scores[y == 0]),
            "hist.malware": score_histogram(scores[y == 1]),
        }
        return hists, loss_sum
