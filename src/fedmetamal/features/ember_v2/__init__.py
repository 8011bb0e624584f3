"""EMBER feature version 2 (EMBER 2017/2018): raw JSON features -> 2381-column vectors.

The EMBER 2017 and 2018 downloads ship only raw JSON lines; :func:`vectorize_v2_jsonl` turns
them into the ``X_*.dat`` / ``y_*.dat`` folder that :mod:`fedmetamal.data.loaders_ember` reads,
with the column layout of :mod:`.layout` computed as in :mod:`.vectorize`.
"""

from __future__ import annotations

from fedmetamal.features.ember_v2.convert import (
    V2Summary,
    detect_feature_version,
    vectorize_v2_jsonl,
)
from fedmetamal.features.ember_v2.layout import GROUP_BY_NAME, GROUPS, WIDTH
from fedmetamal.features.ember_v2.vectorize import feature_version, vectorize_raw_v2

__all__ = [
    "GROUPS",
    "GROUP_BY_NAME",
    "WIDTH",
    "V2Summary",
    "detect_feature_version",
    "feature_version",
    "vectorize_raw_v2",
    "vectorize_v2_jsonl",
]
