"""Dataset files written by ``fedmetamal extract``: the stamped schema says what the features are.

Such a file is a plain Parquet table, but its feature-schema stamp lists the feature columns
exactly; every other column (sha256, path, size, family, first_seen, warnings) is metadata, so a
file size or a path can never leak into the model as a feature.
"""

from __future__ import annotations

from pathlib import Path

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_tabular import read_parquet, table_to_dataset
from fedmetamal.errors import DataError
from fedmetamal.features.dataset_file import LABEL, schema_stamp


def is_extracted(path: Path) -> bool:
    """Whether ``path`` is a Parquet file carrying a feature-schema stamp."""
    return path.is_file() and schema_stamp(path) is not None


def load_extracted(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """The stamped feature columns as features, the rest as metadata."""
    del seed
    stamp = schema_stamp(path)
    assert stamp is not None
    df = read_parquet(path)
    missing = [c for c in stamp["columns"] if c not in df.columns]
    if missing:
        raise DataError(
            f"'{path}' says schema '{stamp['name']}' but lacks its columns "
            f"{', '.join(missing[:5])}.",
            "Re-create it with fedmetamal extract.",
        )
    label = cfg.label_column or LABEL
    features = set(stamp["columns"])
    extra = [c for c in df.columns if c not in features and c != label]
    wanted = list(dict.fromkeys([*cfg.metadata_columns, *extra]))
    ds = table_to_dataset(
        df[[label, *stamp["columns"], *extra]],
        cfg.model_copy(update={"metadata_columns": wanted}),
        f"'{path}'",
        path.stem,
        label_column=label,
    )
    ds.info["schema"] = stamp["name"]
    ds.info["feature_schema"] = stamp
    return ds
