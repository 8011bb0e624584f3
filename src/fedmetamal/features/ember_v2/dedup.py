"""Drop rows repeating an earlier row's sha256 from a stamped dataset file (EMBER2024 output).

``fedmetamal data vectorize`` drops repeated samples for both EMBER feature versions; the
EMBER 2017/2018 converter does it while reading (:mod:`.convert`), and for the EMBER2024
Parquet file this rewrites the finished file, one row group at a time so memory stays bounded,
keeping its schema stamp. Only the sha256 and label columns are read to find duplicates; a file
without any is left untouched.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def duplicate_mask(shas: list[str | None]) -> np.ndarray:
    """True for each entry whose sha256 appeared earlier (missing or empty ones never do)."""
    seen: set[str] = set()
    mask = np.zeros(len(shas), dtype=bool)
    for i, sha in enumerate(shas):
        if not sha:
            continue
        if sha in seen:
            mask[i] = True
        else:
            seen.add(sha)
    return mask


def drop_duplicate_sha256(path: Path) -> Counter[int]:
    """Remove repeated-sha256 rows from the Parquet dataset file ``path`` (first kept);
    returns how many were dropped per label."""
    source = pq.ParquetFile(path)
    if "sha256" not in source.schema_arrow.names:
        return Counter()
    head = pq.read_table(path, columns=["sha256", "label"])
    drop = duplicate_mask(head.column("sha256").to_pylist())
    if not drop.any():
        return Counter()
    labels = np.asarray(head.column("label").to_numpy(zero_copy_only=False))
    dropped = Counter(int(v) for v in labels[drop])
    tmp = path.with_name(path.name + ".dedup")
    try:
        with pq.ParquetWriter(tmp, source.schema_arrow) as writer:
            at = 0
            for index in range(source.num_row_groups):
                group = source.read_row_group(index)
                keep = ~drop[at : at + group.num_rows]
                at += group.num_rows
                writer.write_table(group.filter(pa.array(keep)))
        source.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return dropped
