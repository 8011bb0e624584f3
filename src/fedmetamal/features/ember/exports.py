"""Exported function names, hashed into 128 buckets.

The first column is what the reference stores there: the length of the hashed vector, i.e. 128
whenever the file exports anything and 0 otherwise (not the number of exports).
"""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.hashing import hash_names

WIDTH = 1 + 128


def exported(pe: pefile.PE, warnings: list[str]) -> list[str]:
    """Export names (``ordinal<n>`` for nameless ones), cut at 10000 characters."""
    names: list[str] = []
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    for symbol in getattr(directory, "symbols", None) or ():
        if symbol.name is not None and len(symbol.name):
            try:
                names.append(symbol.name.decode()[:10000])
            except UnicodeDecodeError:
                warnings.append("export name is not UTF-8 (the reference fails on this file)")
                names.append(symbol.name.decode(errors="replace")[:10000])
        elif symbol.ordinal is not None:
            names.append(f"ordinal{symbol.ordinal}")
    return names


def export_features(pe: pefile.PE, warnings: list[str]) -> np.ndarray:
    """The 129 export columns."""
    return vectorize_exports(exported(pe, warnings))


def vectorize_exports(names: list[str]) -> np.ndarray:
    """The 129 export columns from the exported names (a file's, or EMBER's raw JSON)."""
    if not names:
        return np.zeros(WIDTH, dtype=np.float32)
    return np.hstack([[128], hash_names(list(names), 128)]).astype(np.float32)
