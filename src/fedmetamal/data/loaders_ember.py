"""EMBER vectorized features: a folder with ``X_{split}.dat`` / ``y_{split}.dat`` raw float32 files.

The files have no header, so the row count comes from the label file (4 bytes per row) and the
width from the feature file; only the EMBER widths 2381 (feature version 2) and 2568 (version 3)
are accepted, which also catches truncated copies. EMBER 2018 has 800k rows x 2381 floats
(7.6 GB), so the features stay a read-only ``np.memmap`` when the whole split is used; a
subsample reads only its rows, in sorted chunks. ``ember_subset="all"`` joins two files and is
therefore read into memory. A memory-mapped split is not scanned for NaN/inf (that would read
it all; EMBER's vectorizer writes finite values); rows read into memory follow
``dataset.nan_policy``. Label -1 (unlabelled) is kept.

Optional metadata: ``train_metadata.csv`` / ``test_metadata.csv``, or one ``metadata.csv``
(rows of train then test, or split by its ``subset`` column) with ``sha256``, ``appeared``
(-> ``first_seen``) and ``avclass`` (-> ``family``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders_common import (
    CHUNK_ROWS,
    EMBER_WIDTHS,
    apply_nan_policy,
    check_file,
    check_label_values,
    ember_schema,
    family_text,
    feature_names_for,
    metadata_name,
    parse_first_seen,
    stratified_sample_index,
)
from fedmetamal.data.loaders_tabular import read_csv
from fedmetamal.errors import DataError

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "test": ("test",),
    "all": ("train", "test"),
}
_REBUILD = "Re-create the vectorized features (ember.create_vectorized_features) or re-copy them."


def is_ember_folder(path: Path) -> bool:
    """True for a folder holding at least one EMBER split (``X_train.dat`` + ``y_train.dat``...)."""
    return path.is_dir() and any(
        (path / f"X_{s}.dat").is_file() and (path / f"y_{s}.dat").is_file()
        for s in ("train", "test")
    )


def _open_split(folder: Path, split: str) -> tuple[np.memmap, np.ndarray]:
    """Features as a read-only memory map and labels in memory, with sizes checked."""
    x_path = check_file(folder / f"X_{split}.dat", f"EMBER {split} features")
    y_path = check_file(folder / f"y_{split}.dat", f"EMBER {split} labels")
    y_bytes = y_path.stat().st_size
    if y_bytes == 0 or y_bytes % 4:
        raise DataError(
            f"'{y_path}' has {y_bytes} bytes, not a whole number of float32 labels "
            "(the file is empty or truncated).",
            _REBUILD,
        )
    n = y_bytes // 4
    x_bytes = x_path.stat().st_size
    if x_bytes == 0 or x_bytes % (4 * n):
        raise DataError(
            f"'{x_path}' has {x_bytes} bytes, which is not {n} rows (the row count of "
            f"'{y_path}') of float32 features: the file is truncated or belongs to other labels.",
            _REBUILD,
        )
    d = x_bytes // (4 * n)
    if d not in EMBER_WIDTHS.values():
        supported = ", ".join(f"{w} (feature version {v})" for v, w in EMBER_WIDTHS.items())
        raise DataError(
            f"'{x_path}' has {d} features per row ({n} rows); supported EMBER widths are "
            f"{supported}. A different width means another layout or a truncated file.",
            _REBUILD,
        )
    y_raw = np.fromfile(y_path, dtype=np.float32)
    y = check_label_values(y_raw, f"'{y_path}'")
    X = np.memmap(x_path, dtype=np.float32, mode="r", shape=(n, d))
    return X, y


def _row_counts(folder: Path) -> dict[str, int]:
    return {
        s: (folder / f"y_{s}.dat").stat().st_size // 4
        for s in ("train", "test")
        if (folder / f"y_{s}.dat").is_file()
    }


def _metadata_rows(folder: Path, splits: tuple[str, ...]) -> tuple[pd.DataFrame, str] | None:
    """Raw metadata rows of the chosen splits, in file order, and where they came from."""
    per_split = [folder / f"{s}_metadata.csv" for s in splits]
    counts = _row_counts(folder)
    if all(p.is_file() for p in per_split):
        frames = []
        for split, path in zip(splits, per_split, strict=True):
            df = read_csv(path)
            if len(df) != counts[split]:
                raise DataError(
                    f"'{path}' has {len(df)} rows but the {split} split has {counts[split]}.",
                    "Use the metadata files that belong to these features, or remove them.",
                )
            frames.append(df)
        return pd.concat(frames, ignore_index=True), ", ".join(str(p) for p in per_split)
    path = folder / "metadata.csv"
    if not path.is_file():
        return None
    df = read_csv(path)
    wanted = sum(counts[s] for s in splits)
    if "subset" in df.columns:
        frames = [df[df["subset"].astype("string") == s] for s in splits]
        got = sum(len(f) for f in frames)
        if got == wanted:
            return pd.concat(frames, ignore_index=True), str(path)
    elif len(df) == sum(counts.values()) and set(counts) == {"train", "test"}:
        offsets = {"train": (0, counts["train"]), "test": (counts["train"], len(df))}
        frames = [df.iloc[offsets[s][0] : offsets[s][1]] for s in splits]
        return pd.concat(frames, ignore_index=True), str(path)
    elif len(df) == wanted:
        return df.reset_index(drop=True), str(path)
    raise DataError(
        f"'{path}' does not match the features: it has {len(df)} rows, the "
        f"{'/'.join(splits)} split has {wanted} (train {counts.get('train', 0)}, "
        f"test {counts.get('test', 0)}).",
        "Use the metadata file that belongs to these features, or remove it.",
    )


def _tidy_metadata(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Library column names; ``label`` and ``subset`` dropped (they repeat the .dat files)."""
    df = df.drop(columns=[c for c in df.columns if str(c) in ("label", "subset")])
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed:")])
    df = df.rename(columns={c: metadata_name(str(c)) for c in df.columns})
    df = df.loc[:, ~df.columns.duplicated()]
    if "first_seen" in df.columns:
        df["first_seen"] = parse_first_seen(df["first_seen"], origin)
    if "family" in df.columns:
        df["family"] = family_text(df["family"])
    return df.reset_index(drop=True)


def _read_rows(X: np.ndarray, rows: np.ndarray, out: np.ndarray, at: int) -> None:
    """Copy sorted ``rows`` of a memory map into ``out[at:]``, a chunk at a time."""
    for start in range(0, rows.size, CHUNK_ROWS):
        part = rows[start : start + CHUNK_ROWS]
        out[at + start : at + start + part.size] = X[part]


def load_ember(path: Path, cfg: DatasetConfig, seed: int) -> Dataset:
    """An EMBER vectorized folder as a Dataset; ``cfg.max_samples`` is applied while reading."""
    if not path.is_dir():
        raise DataError(
            f"EMBER data is a folder with X_train.dat / y_train.dat; '{path}' is not a folder.",
            "Pass the folder that holds the .dat files.",
        )
    splits = SPLITS[cfg.ember_subset]
    opened = [_open_split(path, s) for s in splits]
    widths = {X.shape[1] for X, _ in opened}
    if len(widths) > 1:
        raise DataError(
            f"EMBER splits in '{path}' have different widths {sorted(widths)}.",
            "Use train and test features of the same feature version.",
        )
    d = widths.pop()
    y = np.concatenate([labels for _, labels in opened])
    offsets = np.cumsum([0] + [X.shape[0] for X, _ in opened])
    n = int(offsets[-1])
    rows = np.arange(n, dtype=np.int64)
    info: dict[str, Any] = {"schema": ember_schema(d), "ember_subset": cfg.ember_subset}
    if cfg.max_samples is not None and cfg.max_samples < n:
        rows = stratified_sample_index(y, cfg.max_samples, seed)
        info["subsample"] = {"max_samples": cfg.max_samples, "seed": seed, "from": n}
    names = feature_names_for(d)
    name = path.name if cfg.ember_subset == "train" else f"{path.name}-{cfg.ember_subset}"
    found = _metadata_rows(path, splits)
    meta = None
    if found is not None:
        meta = _tidy_metadata(found[0], found[1]).iloc[rows].reset_index(drop=True)
        info["metadata_file"] = found[1]
    if len(opened) == 1 and rows.size == n:
        X: np.ndarray = opened[0][0]
        info["memory_mapped"] = True
        info["nan_report"] = {"policy": cfg.nan_policy, "skipped": "memory-mapped, not scanned"}
        return Dataset(X=X, y=y, feature_names=names, metadata=meta, name=name, info=info)
    X = np.empty((rows.size, d), dtype=np.float32)
    for i, (mm, _) in enumerate(opened):
        lo, hi = offsets[i], offsets[i + 1]
        mine = rows[(rows >= lo) & (rows < hi)]
        _read_rows(mm, mine - lo, X, int(np.searchsorted(rows, lo)))
    y = y[rows]
    X, keep, info["nan_report"] = apply_nan_policy(X, cfg.nan_policy, names, f"'{path}'")
    if keep is not None:
        y = y[keep]
        meta = None if meta is None else meta[keep].reset_index(drop=True)
    info["memory_mapped"] = False
    return Dataset(X=X, y=y, feature_names=names, metadata=meta, name=name, info=info)
