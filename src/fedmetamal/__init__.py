"""FedMetaMal: federated learning on malware data."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "simulate"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import fedmetamal` (and the CLI's --help) stays fast.
    if name == "simulate":
        from fedmetamal.api import simulate

        return simulate
    raise AttributeError(f"module 'fedmetamal' has no attribute {name!r}")
