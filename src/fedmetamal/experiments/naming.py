"""Names derived from labels and contents: file-name slugs, run-id slugs and content hashes.

There are two slug rules on purpose. :func:`slugify` names figure and table files and spells
Greek letters out (``α`` -> ``alpha``); :func:`id_slug` builds run ids, which are stored in
manifests and name run directories, so its rule (``α`` -> ``a``, ``=`` dropped, accents folded)
must never change: a changed id would orphan every finished run of an existing suite.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

_GREEK_NAMES = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "eps", "η": "eta",
    "λ": "lambda", "μ": "mu", "ρ": "rho", "σ": "sigma", "τ": "tau",
}  # fmt: skip


def slugify(text: str) -> str:
    """A file-name-safe form of a label: 'dirichlet α=0.05' -> 'dirichlet-alpha-0.05'."""
    s = "".join(f" {_GREEK_NAMES[ch]} " if ch in _GREEK_NAMES else ch for ch in str(text).lower())
    s = re.sub(r"[^a-z0-9.]+", "-", s).strip("-.")
    return s or "x"


def unique_slugs(labels: list[str]) -> dict[str, str]:
    """Slugs for distinct labels, suffixed -2, -3 ... where two labels slug alike."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = slug = slugify(label)
        n = 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        out[label] = slug
    return out


def id_slug(text: str) -> str:
    """A run-id part: 'dirichlet α=0.05' -> 'dirichlet-a0.05' (may be empty; frozen, see above)."""
    text = text.lower().replace("α", "a").replace("=", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9._]+", "-", text)
    return re.sub(r"-{2,}", "-", text).strip("-._")


def stable_hash(data: Any, length: int | None = None) -> str:
    """SHA-256 hex of JSON-ready ``data``, independent of key order and process (first
    ``length`` digits when given): ids and hashes stay valid across sessions and machines."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digest if length is None else digest[:length]
