"""Nested mappings addressed by dotted keys, as suite files write config fields.

``{"training.rounds": 5}`` and ``{"training": {"rounds": 5}}`` mean the same; these helpers turn
one into the other, merge mappings deeply and set a key, so that suites, axes and exclude entries
can use either spelling.
"""

from __future__ import annotations

import copy
from typing import Any


def flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]`` (an empty mapping is kept as a leaf)."""
    out: list[tuple[str, Any]] = []
    for k, v in mapping.items():
        if isinstance(v, dict) and v:
            out += flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``src`` into ``dst`` (mappings merge, anything else replaces); returns ``dst``."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def expand_dotted(data: dict[str, Any]) -> dict[str, Any]:
    """``{"training.rounds": 5}`` -> ``{"training": {"rounds": 5}}`` (nested keys kept)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        v = expand_dotted(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        nested: Any = v
        for part in reversed(parts[1:]):
            nested = {part: nested}
        deep_merge(out, {parts[0]: nested})
    return out


def merge_at(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` to ``value``; a mapping value is merged into a mapping already there."""
    *parents, leaf = key.split(".")
    cur = data
    for part in parents:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    if isinstance(value, dict) and isinstance(cur.get(leaf), dict):
        deep_merge(cur[leaf], value)
    else:
        cur[leaf] = copy.deepcopy(value)
