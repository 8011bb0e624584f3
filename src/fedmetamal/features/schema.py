"""Feature schemas: a named, versioned, ordered list of columns and the extractor that fills them.

A schema is the contract between a dataset file and every model trained on it: the same name,
version and column order must be used when a new file is scored, so the registry here is the one
place a name such as ``pe-header`` is resolved.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from fedmetamal.errors import DataError
from fedmetamal.features.outcome import Outcome

#: An extractor reads one open file (its size already known) and never raises for bad input.
Extractor = Callable[["ReadAt", int], Outcome]
#: ``read_at(offset, length)`` returns up to ``length`` bytes at ``offset`` (fewer at EOF).
ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True)
class FeatureSchema:
    """What a feature vector means: its name, version and ordered columns, and how to compute it."""

    name: str
    version: int
    columns: tuple[str, ...]
    extract: Extractor
    summary: str
    #: How dataset files store the values: ``uint64`` keeps raw header fields exact,
    #: ``float32`` suits schemas with fractions and negatives (EMBER's entropies, hashed counts).
    value_type: str = "uint64"

    @property
    def width(self) -> int:
        return len(self.columns)

    def describe(self) -> dict[str, object]:
        """The metadata stored with every dataset file (and later every model)."""
        return {"name": self.name, "version": self.version, "columns": list(self.columns)}


_SCHEMAS: dict[str, FeatureSchema] = {}
#: Other spellings in use elsewhere (the shared pe-headers CSV is called ``pe-headers``).
_ALIASES: dict[str, str] = {"pe-headers": "pe-header"}


def register(schema: FeatureSchema) -> FeatureSchema:
    """Add ``schema`` to the registry; a second schema with the same name is a programming error."""
    if schema.name in _SCHEMAS:
        raise ValueError(f"feature schema '{schema.name}' is registered twice")
    if len(set(schema.columns)) != len(schema.columns):
        raise ValueError(f"feature schema '{schema.name}' has duplicate column names")
    _SCHEMAS[schema.name] = schema
    return schema


def schema_names() -> list[str]:
    """Names of every registered schema, sorted."""
    _load_builtin()
    return sorted(_SCHEMAS)


def get_schema(name: str) -> FeatureSchema:
    """The schema called ``name`` (or one of its aliases); a DataError listing the known ones."""
    _load_builtin()
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in _SCHEMAS:
        return _SCHEMAS[key]
    close = difflib.get_close_matches(key, list(_SCHEMAS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"Unknown feature schema '{name}' (known: {', '.join(sorted(_SCHEMAS))}).{hint}",
        "Pass one of the known names with --schema.",
    )


def _load_builtin() -> None:
    """Import the built-in schemas, which register themselves (lazily: avoids an import loop)."""
    from fedmetamal.features import ember, pe_header  # noqa: F401
