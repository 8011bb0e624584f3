"""FedMetaMal: federated learning on malware data."""

from __future__ import annotations

__version__ = "0.1.0"

from fedmetamal.api import simulate  # noqa: E402

__all__ = ["__version__", "simulate"]
