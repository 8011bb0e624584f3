"""Where datasets come from: the built-in generator, shared real data, or a user's file.

:func:`load_dataset` is the one entry point the runtimes use; it dispatches on
``dataset.source``, applies ``max_samples`` and records provenance in ``info["provenance"]``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from fedmetamal import __version__
from fedmetamal.config import DatasetConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.loaders import load_path, subsample
from fedmetamal.data.loaders_tabular import load_csv
from fedmetamal.errors import DataError

#: Environment variable naming a folder that holds the shared datasets (e.g. ``pe-headers/``).
SHARED_DATA_ENV = "FEDMETAMAL_SHARED_DATA"

#: Named sources accepted as ``dataset.source``, with a one-line description for listings.
KNOWN_DATASETS: dict[str, str] = {
    "synthetic": (
        "built-in generator: malware families and benign categories with drift "
        "(settings under dataset.synthetic)"
    ),
    "pe-headers": (
        "20,306 Windows PE files, 50 PE header fields, label 'Malware' (14,599 malware, "
        "5,707 benign); read from ../shared/data or $" + SHARED_DATA_ENV
    ),
}

#: Shared datasets: name -> (file below the shared data folder, label column, feature schema).
_SHARED: dict[str, tuple[str, str, str]] = {
    "pe-headers": ("pe-headers/dataset_malwares.csv", "Malware", "pe-header"),
}


def shared_data_roots() -> list[Path]:
    """Folders searched for shared data, in order: the environment variable, then beside cwd
    and beside the checkout (``../shared/data``)."""
    roots = []
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd() / ".." / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
    return roots


def resolve_shared_data(name: str) -> Path:
    """The file of shared dataset ``name``; a DataError saying where it looked when absent."""
    if name not in _SHARED:
        raise DataError(
            f"'{name}' is not a shared dataset (known: {', '.join(_SHARED)}).",
            "Use one of those names, or pass a file path as dataset.source.",
        )
    relative = _SHARED[name][0]
    looked = []
    for root in shared_data_roots():
        candidate = root / relative
        if candidate.is_file():
            return candidate.resolve()
        looked.append(str(candidate))
    raise DataError(
        f"Shared dataset '{name}' was not found; looked for {', '.join(looked)}.",
        f"Set {SHARED_DATA_ENV} to the folder that contains '{relative.split('/')[0]}/', or "
        f"pass the CSV path as dataset.source.",
    )


def _source_path(source: str) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    close = difflib.get_close_matches(source, list(KNOWN_DATASETS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"Dataset source '{source}' is neither a known dataset ({', '.join(KNOWN_DATASETS)}) "
        f"nor an existing file or folder (looked at '{path.absolute()}').{hint}",
        "Check the path (relative paths start from the current folder) or use a known name.",
    )


def load_dataset(cfg: DatasetConfig, seed: int) -> Dataset:
    """The dataset ``cfg`` describes, subsampled to ``cfg.max_samples`` (stratified, seeded)."""
    path: Path | None = None
    if cfg.source == "synthetic":
        from fedmetamal.data.synthetic import generate

        ds = generate(cfg.synthetic, seed)
        fmt = "synthetic"
    elif cfg.source in _SHARED:
        path = resolve_shared_data(cfg.source)
        _, label, schema = _SHARED[cfg.source]
        ds = load_csv(path, cfg, seed, label_column=label)
        ds.name = cfg.source
        ds.info["schema"] = schema
        fmt = "csv"
    else:
        path = _source_path(cfg.source)
        ds, fmt = load_path(path, cfg, seed)
    ds = subsample(ds, cfg.max_samples, seed)
    ds.info["provenance"] = {
        "source": cfg.source,
        "format": fmt,
        "path": None if path is None else str(path.resolve()),
        "samples_in_source": ds.info.get("subsample", {}).get("from", ds.n_samples),
        "samples": ds.n_samples,
        "max_samples": cfg.max_samples,
        "seed": seed,
        "fedmetamal_version": __version__,
    }
    return ds
