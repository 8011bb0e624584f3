"""A suite's grid axes: which config field each varies, its values and their display labels.

An axis key must name a run config field (checked against the schema, with a "did you mean"),
each value gets a readable label (given, or derived: ``dirichlet α=0.05``), and ``exclude``
entries match values by label, by value, or by part of a mapping value.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.dotted_keys import expand_dotted, flatten

#: Settings the runner sets itself (each run's directory).
_RUNNER_KEYS = {"output.dir", "output.name"}

_GREEK = {"alpha": "α"}


@dataclass(frozen=True)
class Axis:
    """One grid axis: a dotted config key, its values and their display labels."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "labels": list(self.labels), "values": list(self.values)}


def auto_label(value: Any) -> str:
    """A compact display label: ``dirichlet α=0.05``, ``label-quantity k=1``, ``mu=0.01``."""
    if not isinstance(value, dict):
        return str(value)
    items = flatten(value)
    head = next((v for k, v in items if k in ("kind", "name") and isinstance(v, str)), None)
    rest = []
    for key, v in items:
        if head is not None and key in ("kind", "name") and v == head:
            continue
        leaf = key.rsplit(".", 1)[-1]
        rest.append(f"{_GREEK.get(leaf, leaf)}={v}")
    if head is None:
        return ", ".join(rest) or "{}"
    return " ".join([head, *rest])


def show_value(value: Any) -> str:
    """A value as an error message quotes it (mappings and lists as JSON)."""
    return json.dumps(value, default=str) if isinstance(value, dict | list) else repr(value)


# --------------------------------------------------------------------------- building axes


def check_axis_key(key: str) -> None:
    """A ConfigError unless ``key`` is a dotted path of a run config field."""
    if key in _RUNNER_KEYS:
        raise ConfigError(
            f"Grid axis '{key}' cannot be varied: the suite runner sets it (each run writes "
            "to <suite dir>/runs/<run id>).",
            "Remove that axis; use --out to choose where the suite is written.",
        )
    model: type[BaseModel] = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        where = ".".join(parts[:i]) or "the run config"
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f" Did you mean '{'.'.join([*parts[:i], close[0]])}'?" if close else ""
            raise ConfigError(
                f"Grid axis '{key}' is not a config field: {where} has no field '{part}'.{hint}",
                f"Fields of {where}: {', '.join(fields)}.",
            )
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if i < len(parts) - 1 and typing.get_origin(annotation) is not dict:
            raise ConfigError(
                f"Grid axis '{key}' is not a config field: '{'.'.join(parts[: i + 1])}' is a "
                "setting, not a section.",
                f"Use '{'.'.join(parts[: i + 1])}' as the axis key.",
            )
        return


def build_axis(key: str, raw_values: list[Any]) -> Axis:
    """The axis of grid entry ``key: raw_values``; labels must tell the values apart."""
    check_axis_key(key)
    values: list[Any] = []
    labels: list[str] = []
    for raw in raw_values:
        if isinstance(raw, dict):
            value = {k: v for k, v in raw.items() if k != "label"}
            value = expand_dotted(value)
            label = str(raw["label"]) if raw.get("label") is not None else auto_label(value)
        else:
            value, label = raw, auto_label(raw)
        values.append(value)
        labels.append(label)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise ConfigError(
                f"Grid axis '{key}' has two values labelled '{label}' (values "
                f"{show_value(values[seen[label]])} and {show_value(values[i])}).",
                "Remove the duplicate, or give mapping values distinct `label:` entries.",
            )
        seen[label] = i
    return Axis(key, tuple(values), tuple(labels))


# --------------------------------------------------------------------------- exclude


def _value_matches(axis: Axis, index: int, wanted: Any) -> bool:
    label, value = axis.labels[index], axis.values[index]
    if isinstance(wanted, str) and wanted == label:
        return True
    if wanted == value and type(wanted) is type(value):
        return True
    if isinstance(wanted, int | float) and isinstance(value, int | float):
        return not isinstance(wanted, bool) and not isinstance(value, bool) and wanted == value
    if isinstance(wanted, dict) and isinstance(value, dict):
        flat = dict(flatten(value))
        return all(flat.get(k) == v for k, v in flatten(expand_dotted(wanted)))
    return False


def _matches(axis: Axis, index: int, wanted: Any) -> bool:
    if _value_matches(axis, index, wanted):
        return True
    return isinstance(wanted, list) and any(_value_matches(axis, index, w) for w in wanted)


def check_excludes(excludes: list[dict[str, Any]], axes: dict[str, Axis]) -> None:
    """A ConfigError unless every exclude entry names axes and matches one of their values."""
    for n, entry in enumerate(excludes, 1):
        if not entry:
            raise ConfigError(f"exclude entry {n} is empty.", "Name at least one axis and value.")
        for key, wanted in entry.items():
            if key not in axes:
                raise ConfigError(
                    f"exclude entry {n} names '{key}', which is not a grid axis.",
                    f"Grid axes: {', '.join(axes)}.",
                )
            axis = axes[key]
            if not any(_matches(axis, i, wanted) for i in range(len(axis.values))):
                raise ConfigError(
                    f"exclude entry {n}: {show_value(wanted)} matches no value of grid axis "
                    f"'{key}'.",
                    f"Use a label ({', '.join(repr(lb) for lb in axis.labels)}) or a value.",
                )


def is_excluded(
    excludes: list[dict[str, Any]], axes: dict[str, Axis], combo: dict[str, int]
) -> bool:
    """Whether the grid point ``combo`` (axis key -> value index) matches an exclude entry."""
    return any(
        all(_matches(axes[k], combo[k], wanted) for k, wanted in entry.items())
        for entry in excludes
    )
