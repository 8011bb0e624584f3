"""The smallest run config worth a suite test: seconds per run, every output still written."""

from __future__ import annotations

from typing import Any

TINY: dict[str, Any] = {
    "dataset": {"source": "synthetic", "synthetic": {"n_samples": 600, "n_features": 32}},
    "partition": {"clients": 3},
    "training": {"rounds": 2},
    "model": {"hidden": [16]},
    "output": {"onnx": False, "checkpoint": False},
}
