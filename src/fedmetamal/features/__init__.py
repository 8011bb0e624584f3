"""PE file -> named feature vector: feature schemas, safe per-file extraction, dataset files.

Kept free of torch and pandas so extraction workers start fast and scanning stays light.
"""

from __future__ import annotations

from fedmetamal.features.outcome import Failure, FileRecord, Row
from fedmetamal.features.schema import FeatureSchema, get_schema, schema_names

__all__ = ["Failure", "FeatureSchema", "FileRecord", "Row", "get_schema", "schema_names"]
