"""Finding the label column of a table and turning its values into 1 / 0 / -1.

The value rule (case-insensitive, surrounding spaces ignored):

* malware: ``malware``, ``malicious``, ``mal``, and the flags ``1``, ``true``, ``yes``
* benign: ``benign``, ``goodware``, ``clean``, ``legit``, ``legitimate``, and the flags ``0``,
  ``false``, ``no``
* unlabelled: ``unlabelled``, ``unlabeled``, ``unknown``, ``-1`` and empty cells
* anything else is an error naming the values.

A column named ``legitimate`` (as in several public PE datasets) says 1 for *benign*, so its
flags (1/0, true/false, yes/no) are inverted; words such as ``malware`` keep their meaning.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from fedmetamal.data.loaders_common import check_label_values
from fedmetamal.errors import DataError

#: Column names (lower-case) recognised as the label when none is given.
LABEL_CANDIDATES = (
    "label",
    "labels",
    "malware",
    "is_malware",
    "class",
    "target",
    "y",
    "legitimate",
)
#: Label columns whose 1 means benign.
INVERTED_LABELS = frozenset({"legitimate"})

_MALWARE_WORDS = frozenset({"malware", "malicious", "mal"})
_BENIGN_WORDS = frozenset({"benign", "goodware", "clean", "legit", "legitimate"})
_TRUE_FLAGS = frozenset({"1", "1.0", "true", "yes"})
_FALSE_FLAGS = frozenset({"0", "0.0", "false", "no"})
_UNLABELLED = frozenset({"unlabelled", "unlabeled", "unknown", "-1", "-1.0", ""})

_LABEL_FIX = "Pass the label column with --label-column (dataset.label_column)."


def _shown_columns(columns: list[str], limit: int = 20) -> str:
    more = f", ... ({len(columns) - limit} more)" if len(columns) > limit else ""
    return ", ".join(columns[:limit]) + more


def find_label_column(columns: list[str], requested: str | None, origin: str) -> str:
    """The label column: the requested one (exact, then case-insensitive) or the one candidate."""
    if requested is not None:
        if requested in columns:
            return requested
        folded = [c for c in columns if c.lower() == requested.lower()]
        if len(folded) == 1:
            return folded[0]
        close = difflib.get_close_matches(requested, columns, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            f"Label column '{requested}' is not in {origin}; its columns are: "
            f"{_shown_columns(columns)}.{hint}",
            _LABEL_FIX,
        )
    found = [c for c in columns if c.strip().lower() in LABEL_CANDIDATES]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"No label column found in {origin}: looked for {', '.join(LABEL_CANDIDATES)} "
            f"(any case); its columns are: {_shown_columns(columns)}.",
            _LABEL_FIX,
        )
    raise DataError(
        f"Several columns of {origin} look like labels: {', '.join(found)}.",
        _LABEL_FIX,
    )


def _map_token(token: str, inverted: bool) -> int | None:
    if token in _UNLABELLED:
        return -1
    if token in _MALWARE_WORDS:
        return 1
    if token in _BENIGN_WORDS:
        return 0
    if token in _TRUE_FLAGS:
        return 0 if inverted else 1
    if token in _FALSE_FLAGS:
        return 1 if inverted else 0
    return None


def labels_from_column(values: pd.Series, origin: str) -> np.ndarray:
    """Labels as int8 1 / 0 / -1 following the rule in this module's docstring."""
    column = str(values.name)
    inverted = column.strip().lower() in INVERTED_LABELS
    where = f"label column '{column}' of {origin}"
    if pd.api.types.is_bool_dtype(values):
        y = values.to_numpy(dtype=np.int8)
        return (1 - y).astype(np.int8) if inverted else y
    if pd.api.types.is_numeric_dtype(values):
        y = check_label_values(values.to_numpy(dtype=np.float64), where)
        return np.where(y >= 0, 1 - y, y).astype(np.int8) if inverted else y
    tokens = values.astype("string").str.strip().str.lower().fillna("")
    mapping = {t: _map_token(t, inverted) for t in tokens.unique()}
    unknown = sorted(t for t, v in mapping.items() if v is None)
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10])
        raise DataError(
            f"Unrecognised values in {where}: {shown}. Known: malware/malicious/mal/1/true/yes "
            "(malware), benign/goodware/clean/legit/0/false/no (benign), "
            "unlabelled/unknown/-1/empty (unlabelled).",
            "Map the labels to these values, or choose another column with --label-column.",
        )
    return tokens.map(mapping).to_numpy(dtype=np.int8)
