"""The small run every privacy test trains: 10 clients, all sampled each round, seconds a run."""

from __future__ import annotations

from typing import Any


def settings(privacy: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Run settings as a dict; ``privacy`` becomes the ``privacy`` section, ``extra`` replaces
    whole top-level sections."""
    data: dict[str, Any] = {
        "seed": 5,
        "dataset": {"source": "synthetic", "synthetic": {"n_samples": 1500, "n_features": 32}},
        "partition": {"clients": 10},
        "model": {"hidden": [16]},
        "training": {"rounds": 3, "client_lr": 0.3},
        "evaluation": {"per_client": False},
        "runtime": {"threads": 1},
        "output": {"onnx": False, "checkpoint": False},
    }
    if privacy is not None:
        data["privacy"] = privacy
    data.update(extra)
    return data
