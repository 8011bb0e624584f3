"""The ``ember-v3`` schema: EMBER2024's feature version 3 (2568 columns) computed from PE files.

One module per feature group (general, byte histogram, byte-entropy histogram, strings, header,
sections, imports, exports, data directories, rich header, Authenticode, parser warnings);
:mod:`layout` names every column, :mod:`extractor` runs the groups over one mapped file, and
:mod:`parity` compares the result with the reference extractor. Importing this package only
registers the schema; pefile and scikit-learn load on the first extraction.
"""

from __future__ import annotations

from fedmetamal.features.ember.layout import COLUMNS
from fedmetamal.features.outcome import Outcome
from fedmetamal.features.schema import FeatureSchema, ReadAt, register

NAME = "ember-v3"
VERSION = 3


def _extract(read_at: ReadAt, size: int) -> Outcome:
    from fedmetamal.features.ember.extractor import extract_ember_v3

    return extract_ember_v3(read_at, size)


SCHEMA = register(
    FeatureSchema(
        name=NAME,
        version=VERSION,
        columns=COLUMNS,
        extract=_extract,
        summary="EMBER2024 feature version 3: 2568 columns in 12 groups, from pefile",
        value_type="float32",
    )
)
