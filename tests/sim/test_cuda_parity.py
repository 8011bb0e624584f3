"""The runtime on a GPU trains the same model as on the CPU (skipped without CUDA).

Noise, sampling, shuffling, dropout masks and secure-aggregation randomness are all drawn from
CPU generators seeded per (seed, round, client), so only float rounding may differ.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedmetamal import api

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BASE: dict[str, Any] = {
    "seed": 3,
    "dataset": {"source": "synthetic", "synthetic": {"n_samples": 2000, "n_features": 24}},
    "partition": {"clients": 12},
    "training": {"rounds": 3, "client_momentum": 0.9},
    "evaluation": {"per_client": False},
    "output": {"onnx": False, "checkpoint": False},
}

CASES: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "scaffold": {"algorithm": {"name": "scaffold"}},
    "sample-dp": {"privacy": {"mode": "sample", "noise_multiplier": 1.0}},
    "participant-dp": {"privacy": {"mode": "participant", "noise_multiplier": 0.5}},
    "secagg+": {"secagg": {"enabled": True, "neighbours": 6, "dropout": 0.1}},
    "pseudo-label": {
        "semi": {
            "scenario": "labels-at-clients",
            "label_ratio": 0.2,
            "method": "pseudo-label",
            "warmup_rounds": 1,
        }
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_cuda_trains_the_cpu_model(case: str) -> None:
    params = {}
    for device in ("cpu", "cuda"):
        cfg = {**BASE, **CASES[case], "runtime": {"device": device}}
        res = api.simulate(cfg, write_outputs=False)
        assert str(res.simulation.device).startswith(device)
        params[device] = res.params.detach().cpu()
    # secure aggregation quantises: a float difference can move a value across a level
    tol = 1e-4 if case == "secagg+" else 1e-5
    torch.testing.assert_close(params["cuda"], params["cpu"], atol=tol, rtol=tol)
