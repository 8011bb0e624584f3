"""Imported libraries and functions, hashed: 256 buckets of libraries, 1024 of ``lib:function``.

Functions imported by ordinal are named ``<dll>:ordinal<n>``; names are cut at 10000 characters.
As in the reference, a DLL that appears in two import descriptors keeps only the functions of
the last one.
"""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.hashing import hash_names

WIDTH = 2 + 256 + 1024


def _text(raw: bytes, warnings: list[str]) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        warnings.append("import name is not UTF-8 (the reference fails on this file)")
        return raw.decode(errors="replace")


def imported(pe: pefile.PE, warnings: list[str]) -> dict[str, list[str]]:
    """DLL name -> imported function names, as the reference collects them."""
    table: dict[str, list[str]] = {}
    for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", None) or ():
        dll = _text(entry.dll, warnings)
        names: list[str] = []
        table[dll] = names
        for symbol in entry.imports:
            if symbol.name is not None and len(symbol.name):
                names.append(_text(symbol.name, warnings)[:10000])
            elif symbol.ordinal is not None:
                names.append(f"{dll}:ordinal{symbol.ordinal}")
    return table


def import_features(pe: pefile.PE, warnings: list[str]) -> np.ndarray:
    """The 1282 import columns."""
    return vectorize_imports(imported(pe, warnings))


def vectorize_imports(table: dict[str, list[str]]) -> np.ndarray:
    """The 1282 import columns from {library: [function, ...]} (a file's, or EMBER's raw JSON)."""
    if not table:
        return np.zeros(WIDTH, dtype=np.float32)
    libraries = sorted({dll.lower() for dll in table})
    functions = [f"{dll.lower()}:{name}" for dll, names in table.items() for name in names]
    return np.hstack(
        [
            [len(functions), len(libraries)],
            hash_names(libraries, 256, alternate_sign=False),
            hash_names(functions, 1024, alternate_sign=False),
        ]
    ).astype(np.float32)
