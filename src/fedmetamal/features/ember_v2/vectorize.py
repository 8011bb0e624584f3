"""EMBER 2017/2018 raw JSON features (feature version 2) -> the 2381-column vector.

The EMBER 2017 (second release) and 2018 archives hold, per sample, what the ``ember`` package's
extractor computed before vectorization; its ``process_raw_features`` turned that into the
published ``X_*.dat`` rows. This module redoes that second step column for column:

* byte and byte-entropy histograms: float32 counts over their float32 sum;
* strings: counts and the printable-character distribution over the number of printables;
* general and header: fields in a fixed order; the header's machine, subsystem and magic (one
  string each) and its two flag lists are hashed into 10 buckets each;
* sections: five counts, then (name, size), (name, entropy) and (name, virtual size) hashed as
  pairs into 50 buckets each, the entry section's name, and the flags of the sections carrying
  that name;
* imports: distinct lower-cased libraries (256 buckets) and ``library:function`` (1024);
* exports: names (128 buckets); data directories: (size, RVA) of the first 15, by position.

All hashing is scikit-learn's ``FeatureHasher`` with its defaults (signed MurmurHash3, values
negated for negative hashes). One quirk is kept on purpose: the reference hands the entry
section's *name* to a string hasher that expects a *list* of names, and the scikit-learn of
2018 iterated that string, so the published vectors hash the name's characters one by one
(today's scikit-learn refuses that call). We hash characters too, so rows match the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.feature_extraction import FeatureHasher

from fedmetamal.features.ember.hashing import hash_names, hash_pairs
from fedmetamal.features.ember.raw_json import RawFeatureError
from fedmetamal.features.ember_v2.layout import (
    DATA_DIRECTORY_ORDER,
    EXPORT_HASH,
    GENERAL_FIELDS,
    GROUP_KEYS,
    GROUPS,
    HEADER_HASH,
    IMPORT_FUNCTION_HASH,
    IMPORT_LIBRARY_HASH,
    OPTIONAL_SCALARS,
    SECTION_HASH,
    STRING_COUNTS,
    WIDTH,
)

#: Keys only EMBER2024 (feature version 3) records have.
V3_ONLY_KEYS = ("richheader", "authenticode", "pefilewarnings")
#: From this many pairs on, scipy may sum colliding values in another order than the input's
#: (see fedmetamal.features.ember.hashing); such inputs go through FeatureHasher itself.
_SORT_EXACT_BELOW = 16


def feature_version(obj: dict[str, Any]) -> int | None:
    """The EMBER feature version a raw record was written with (1, 2 or 3), from its keys;
    ``None`` when it is no EMBER raw record at all."""
    if any(key in obj for key in V3_ONLY_KEYS):
        return 3
    if "datadirectories" in obj:
        return 2
    if "histogram" in obj and "section" in obj:
        return 1
    return None


def _number(value: Any, what: str) -> float | int:
    """A JSON number (``true``/``false`` count as 1/0); anything else is a clear error."""
    if not isinstance(value, int | float):
        raise ValueError(f"{what} is {value!r}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return value


def _numbers(values: Any, length: int, what: str) -> np.ndarray:
    """``length`` finite JSON numbers as float64 (exact for any count below 2**53)."""
    if not isinstance(values, list) or len(values) != length:
        size = len(values) if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{what} holds {size} counts, not {length}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full(1, np.nan)
    if array.shape != (length,) or not np.isfinite(array).all():
        raise ValueError(f"{what} holds a value that is not a number")
    return array


def _strings_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a list of strings")
    return value


def _hash_strings(names: list[str], width: int) -> np.ndarray:
    """``FeatureHasher(width, input_type="string")`` of one sample: each name weighs 1."""
    return hash_names(names, width)


def hash_pairs_exact(pairs: list[tuple[str, Any]], width: int, what: str) -> np.ndarray:
    """``FeatureHasher(width, input_type="pair")`` of one sample, bit for bit in float64 (the
    float32 cast hides the summation order all but never, but the cost is small). A text value
    is hashed as ``name=value`` with weight 1, as FeatureHasher does."""
    ready: list[tuple[str, float | int]] = []
    for name, value in pairs:
        if not isinstance(name, str):
            raise ValueError(f"{what}: name {name!r} is not a string")
        if isinstance(value, str):
            ready.append((f"{name}={value}", 1))
        else:
            ready.append((name, _number(value, f"{what} of {name!r}")))
    if len(ready) >= _SORT_EXACT_BELOW:
        hasher = FeatureHasher(width, input_type="pair")
        return np.asarray(hasher.transform([ready]).toarray()[0], dtype=np.float64)
    return hash_pairs(ready, width)


def _histogram(raw: Any) -> np.ndarray:
    """Counts over their sum, in float32; an all-zero histogram (an empty file, which the
    reference turns into NaN) stays zero."""
    counts = _numbers(raw, 256, "the histogram").astype(np.float32)
    total = counts.sum()
    return counts / total if total else counts


def _strings(raw: dict[str, Any]) -> np.ndarray:
    distribution = _numbers(raw["printabledist"], 96, "printabledist")
    printables = _number(raw["printables"], "printables")
    divisor = float(printables) if printables > 0 else 1.0
    shares = distribution / divisor
    head = [_number(raw[k], k) for k in ("numstrings", "avlength")] + [printables]
    tail = [_number(raw["entropy"], "entropy")] + [_number(raw[k], k) for k in STRING_COUNTS]
    return np.hstack([head, shares, tail]).astype(np.float32)


def _general(raw: dict[str, Any]) -> np.ndarray:
    return np.asarray([_number(raw[k], k) for k in GENERAL_FIELDS], dtype=np.float32)


def _header(raw: dict[str, Any]) -> np.ndarray:
    coff, optional = raw["coff"], raw["optional"]
    for text in (coff["machine"], optional["subsystem"], optional["magic"]):
        if not isinstance(text, str):
            raise ValueError(f"{text!r} is not a string (machine, subsystem and magic are)")
    return np.hstack(
        [
            _number(coff["timestamp"], "timestamp"),
            _hash_strings([coff["machine"]], HEADER_HASH),
            _hash_strings(_strings_list(coff["characteristics"], "characteristics"), HEADER_HASH),
            _hash_strings([optional["subsystem"]], HEADER_HASH),
            _hash_strings(
                _strings_list(optional["dll_characteristics"], "dll_characteristics"), HEADER_HASH
            ),
            _hash_strings([optional["magic"]], HEADER_HASH),
            [_number(optional[k], k) for k in OPTIONAL_SCALARS],
        ]
    ).astype(np.float32)


def _section(raw: dict[str, Any]) -> np.ndarray:
    entry, sections = raw["entry"], raw["sections"]
    if not isinstance(entry, str):
        raise ValueError(f"entry is {entry!r}, not a section name")
    if not isinstance(sections, list) or not all(isinstance(s, dict) for s in sections):
        raise ValueError("sections is not a list of objects")
    props = [set(_strings_list(s["props"], "props")) for s in sections]
    general = [
        len(sections),
        sum(1 for s in sections if s["size"] == 0),
        sum(1 for s in sections if s["name"] == ""),
        sum(1 for p in props if "MEM_READ" in p and "MEM_EXECUTE" in p),
        sum(1 for p in props if "MEM_WRITE" in p),
    ]
    entry_flags = [p for s in sections if s["name"] == entry for p in s["props"]]
    return np.hstack(
        [
            general,
            hash_pairs_exact([(s["name"], s["size"]) for s in sections], SECTION_HASH, "size"),
            hash_pairs_exact(
                [(s["name"], s["entropy"]) for s in sections], SECTION_HASH, "entropy"
            ),
            hash_pairs_exact([(s["name"], s["vsize"]) for s in sections], SECTION_HASH, "vsize"),
            _hash_strings(list(entry), SECTION_HASH),  # characters: see the module docstring
            _hash_strings(entry_flags, SECTION_HASH),
        ]
    ).astype(np.float32)


def _imports(raw: dict[str, Any]) -> np.ndarray:
    if not isinstance(raw, dict):
        raise ValueError("expected an object of library: [function, ...]")
    functions = []
    for library, names in raw.items():
        functions += [f"{library.lower()}:{name}" for name in _strings_list(names, library)]
    libraries = sorted({library.lower() for library in raw})
    return np.hstack(
        [
            _hash_strings(libraries, IMPORT_LIBRARY_HASH),
            _hash_strings(functions, IMPORT_FUNCTION_HASH),
        ]
    ).astype(np.float32)


def _exports(raw: list[str]) -> np.ndarray:
    return _hash_strings(_strings_list(raw, "exports"), EXPORT_HASH).astype(np.float32)


def _data_directories(raw: list[dict[str, Any]]) -> np.ndarray:
    if not isinstance(raw, list):
        raise ValueError("expected a list of directories")
    out = np.zeros(2 * len(DATA_DIRECTORY_ORDER), dtype=np.float32)
    for i, directory in enumerate(raw[: len(DATA_DIRECTORY_ORDER)]):
        out[2 * i] = _number(directory["size"], "size")
        out[2 * i + 1] = _number(directory["virtual_address"], "virtual_address")
    return out


_BUILDERS: dict[str, Callable[[Any], np.ndarray]] = {
    "histogram": _histogram,
    "byteentropy": _histogram,
    "strings": _strings,
    "general": _general,
    "header": _header,
    "section": _section,
    "imports": _imports,
    "exports": _exports,
    "datadirectories": _data_directories,
}


def vectorize_raw_v2(obj: dict[str, Any]) -> np.ndarray:
    """The 2381 float32 values of one EMBER feature-version-2 raw record.

    A missing group or a malformed value raises
    :class:`~fedmetamal.features.ember.raw_json.RawFeatureError` naming the group.
    """
    if not isinstance(obj, dict):
        raise RawFeatureError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in GROUP_KEYS if key not in obj]
    if missing:
        raise RawFeatureError(f"missing feature groups: {', '.join(missing)}")
    out = np.zeros(WIDTH, dtype=np.float32)
    for group in GROUPS:
        try:
            with np.errstate(over="ignore"):  # a float32 overflow is reported below
                values = _BUILDERS[group.name](obj[group.name])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            what = f"missing key {err}" if isinstance(err, KeyError) else str(err)
            raise RawFeatureError(f"group '{group.name}' is malformed: {what}") from None
        if values.shape != (group.width,):  # pragma: no cover - guarded by the builders
            raise RawFeatureError(f"group '{group.name}' gave {values.size} values")
        out[group.start : group.stop] = values
    if not np.isfinite(out).all():
        bad = next(g.name for g in GROUPS if not np.isfinite(out[g.start : g.stop]).all())
        raise RawFeatureError(f"group '{bad}' gives a value too large for float32")
    return out
