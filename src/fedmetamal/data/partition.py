"""Spread one dataset over simulated clients: the non-IID settings federated malware work studies.

:func:`partition` first carves a label-stratified global test set, then assigns the remaining
samples to ``cfg.clients`` clients by ``cfg.kind``, then splits each client into local train and
test parts. Every random choice comes from one ``numpy.random.default_rng(seed)``, so the same
dataset, config and seed always give the same federation.

Choices worth knowing:

* Unlabelled samples (label -1) never enter a test set. Partitions that skew labels or families
  cannot place them by class, so they are spread uniformly at random over all clients.
* The global test set is a stratified random share for every kind, ``temporal`` included: it
  measures how well the federation's model does on the whole distribution, not on the future.
* ``feature-noise`` and ``feature-subset`` change the clients' copies (train and local test)
  only; the source dataset and the global test set keep their clean, full features.
* ``feature-subset`` sets hidden features to 0, like a feature an extractor cannot compute.
* ``feature_skew`` (``noise`` or ``subset``) applies the same feature step after any other kind,
  so a Dirichlet label skew can be mixed with feature skew.
* Family classes come from metadata first (``family``, then benign ``category``) and from the
  label only where both are missing, so a label-noise flip stays with its true group.
  ``family-dirichlet`` splits benign samples by ``category`` when present; ``label-quantity``
  with ``by: family`` counts all benign samples as one ``benign`` class.
* ``Federation.info`` holds only plain Python values (JSON-ready).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedmetamal.config import PartitionConfig
from fedmetamal.data.dataset import BENIGN, MALWARE, Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.data.preprocess import signed_log1p
from fedmetamal.data.splits import (
    ASSIGNERS,
    REDRAWN,
    Extra,
    Gen,
    Parts,
    client_split,
    holdout_split,
    round_half_up,
)
from fedmetamal.errors import PartitionError

__all__ = ["MAX_DRAWS", "client_label_counts", "feature_masks", "partition"]

#: How often a random partition is redrawn before the size guard gives up.
MAX_DRAWS = 100
#: Largest signed-log value noise may reach (expm1 of it still fits float32).
_MAX_LOG = 88.0


def partition(dataset: Dataset, cfg: PartitionConfig, seed: int) -> Federation:
    """Build the federation ``cfg`` describes from ``dataset``, reproducibly from ``seed``."""
    _check_metadata(dataset, cfg)
    rng = np.random.default_rng(seed)
    rest, test = holdout_split(dataset.y, cfg.test_fraction, rng)
    needed = cfg.clients * cfg.min_client_size
    if rest.size < needed:
        raise PartitionError(
            f"{rest.size} training samples (after the global test set) cannot give "
            f"{cfg.clients} clients at least min_client_size={cfg.min_client_size} each "
            f"({needed} needed).",
            f"Use at most {rest.size // cfg.min_client_size} clients, a smaller "
            "min_client_size, or a smaller test_fraction.",
        )
    parts, extra = _assign(dataset, rest, cfg, rng)

    clients = []
    for i, part in enumerate(parts):
        train, local_test = client_split(
            part, dataset.y, cfg.client_test_fraction, cfg.min_client_size, rng
        )
        name = f"{dataset.name}/client-{i}"
        clients.append(
            ClientData(
                client_id=i,
                train=_renamed(dataset.subset(train), name),
                test=_renamed(dataset.subset(local_test), f"{name}/test"),
            )
        )
    if cfg.kind == "feature-noise" or cfg.feature_skew == "noise":
        extra["noise_scale"] = _add_feature_noise(clients, dataset, rest, cfg.noise, rng)
    elif cfg.kind == "feature-subset" or cfg.feature_skew == "subset":
        extra["visible_features"] = _hide_features(clients, cfg.subset_fraction, rng)

    fed = Federation(clients=clients, test=dataset.subset(test))
    fed.info = _describe(fed, cfg, seed) | extra
    return fed


def client_label_counts(fed: Federation) -> np.ndarray:
    """Per-client training label counts, shape (clients, 2): column 0 benign, column 1 malware.

    The common input of label-skew measures; unlabelled samples are not counted.
    """
    counts = np.zeros((fed.n_clients, 2), dtype=np.int64)
    for i, c in enumerate(fed.clients):
        counts[i] = [np.sum(c.train.y == BENIGN), np.sum(c.train.y == MALWARE)]
    return counts


def feature_masks(fed: Federation) -> np.ndarray:
    """Which features each client sees, shape (clients, features); all True unless the
    federation was built with ``feature-subset``."""
    masks = np.ones((fed.n_clients, fed.n_features), dtype=bool)
    visible = fed.info.get("visible_features")
    if visible is not None:
        masks[:] = False
        for i, cols in enumerate(visible):
            masks[i, cols] = True
    return masks


# --- metadata --------------------------------------------------------------------------------


def _needed_columns(cfg: PartitionConfig) -> list[str]:
    if cfg.kind == "family-dirichlet" or (cfg.kind == "label-quantity" and cfg.by == "family"):
        return ["family"]
    if cfg.kind == "temporal":
        return ["first_seen"]
    if cfg.kind == "natural":
        return [cfg.column]
    return []


def _check_metadata(dataset: Dataset, cfg: PartitionConfig) -> None:
    """Fail before any work when the partition needs metadata the dataset lacks."""
    for column in _needed_columns(cfg):
        if dataset.has_metadata(column):
            continue
        have = [] if dataset.metadata is None else list(dataset.metadata.columns)
        what = f"{cfg.kind} (by {cfg.by})" if cfg.kind == "label-quantity" else cfg.kind
        raise PartitionError(
            f"Partition '{what}' needs the metadata column '{column}', but dataset "
            f"'{dataset.name}' has {'columns ' + str(have) if have else 'no metadata'}.",
            "Load a dataset that carries it"
            + (" (the synthetic dataset does)" if column in ("family", "first_seen") else "")
            + ", keep it with dataset.metadata_columns, or choose another partition"
            + (" (by: label needs no metadata)." if what.endswith("(by family)") else "."),
        )


_FIXES = {
    "label-quantity": "Use fewer clients, a larger k, or a smaller min_client_size.",
    "natural": "Merge or drop the small groups, or use a smaller min_client_size.",
    "temporal": "Use fewer clients or a smaller min_client_size.",
}


def _assign(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Run the kind's assigner under the minimum-client-size guard."""
    assigner = ASSIGNERS[cfg.kind]
    draws = MAX_DRAWS if cfg.kind in REDRAWN else 1
    best = -1
    for draw in range(1, draws + 1):
        parts, extra = assigner(dataset, index, cfg, rng)
        sizes = np.array([p.size for p in parts])
        if sizes.min() >= cfg.min_client_size:
            return parts, extra | ({"draws": draw} if cfg.kind in REDRAWN else {})
        best = max(best, int(sizes.min()))
    if cfg.kind in REDRAWN:
        spread = (
            f"sigma={cfg.sigma}"
            if cfg.kind == "quantity" and cfg.quantity == "lognormal"
            else f"alpha={cfg.alpha}"
        )
        knob = "a smaller sigma" if spread.startswith("sigma") else "a larger alpha"
        raise PartitionError(
            f"Partition '{cfg.kind}' with {cfg.clients} clients and {spread} left a client "
            f"below min_client_size={cfg.min_client_size} in all {draws} draws (the best "
            f"draw's smallest client had {best} of {index.size} training samples).",
            f"Use fewer clients, {knob}, or a smaller min_client_size.",
        )
    small = int(np.argmin(sizes))
    names = extra.get("client_names")
    who = f"client {small}" + (f" ('{names[small]}')" if names else "")
    raise PartitionError(
        f"Partition '{cfg.kind}' gives {who} only {best} samples "
        f"(min_client_size={cfg.min_client_size}; {cfg.clients} clients over {index.size} "
        "training samples).",
        _FIXES.get(
            cfg.kind,
            f"Use at most {index.size // cfg.min_client_size} clients or a smaller "
            "min_client_size.",
        ),
    )


# --- feature skew ----------------------------------------------------------------------------


def _log_feature_std(X: np.ndarray, index: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Per-feature std of ``signed_log1p`` features over rows ``index``, in float64 chunks so a
    memory map stays on disk."""
    total = np.zeros(X.shape[1])
    for s in range(0, index.size, chunk):
        total += signed_log1p(X[index[s : s + chunk]].astype(np.float64)).sum(axis=0)
    mean = total / max(index.size, 1)
    sq = np.zeros(X.shape[1])
    for s in range(0, index.size, chunk):
        sq += ((signed_log1p(X[index[s : s + chunk]].astype(np.float64)) - mean) ** 2).sum(axis=0)
    return np.sqrt(sq / max(index.size, 1))


def _add_feature_noise(
    clients: list[ClientData],
    dataset: Dataset,
    rest: np.ndarray,
    noise: float,
    rng: Gen,
) -> list[float]:
    """Client i gets N(0, (noise * i/(C-1) * std_f)^2) per feature f (NIID-Bench feature skew).

    The noise is added on the signed-log scale (``sign(x)·log1p(|x|)``) and mapped back: PE
    features are heavy-tailed (sizes, addresses), and noise scaled by a raw standard deviation
    would swamp every typical value, so even ``noise=0.01`` would erase the signal.
    """
    std = _log_feature_std(dataset.X, rest)
    n = len(clients)
    scales = [noise * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    for c, scale in zip(clients, scales, strict=True):
        if scale == 0.0:
            continue
        sd = scale * std
        for part in (c.train, c.test):
            z = signed_log1p(part.X.astype(np.float64))
            z += rng.standard_normal(part.X.shape) * sd
            np.clip(z, -_MAX_LOG, _MAX_LOG, out=z)
            part.X[:] = np.sign(z) * np.expm1(np.abs(z))
    return scales


def _hide_features(clients: list[ClientData], fraction: float, rng: Gen) -> list[list[int]]:
    """Each client sees a random ``fraction`` of the features; the rest read 0 ("missing")."""
    d = clients[0].train.n_features
    keep = min(d, max(1, round_half_up(fraction * d)))
    visible = []
    for c in clients:
        cols = np.sort(rng.choice(d, size=keep, replace=False))
        hidden = np.setdiff1d(np.arange(d), cols)
        for part in (c.train, c.test):
            part.X[:, hidden] = 0.0
        visible.append(cols.tolist())
    return visible


# --- bookkeeping -----------------------------------------------------------------------------


_PARAMS = {
    "dirichlet": ("alpha", "dirichlet_over"),
    "label-quantity": ("k", "by"),
    "family-dirichlet": ("alpha", "dirichlet_over"),
    "quantity": ("quantity", "alpha", "sigma"),
    "feature-noise": ("noise",),
    "feature-subset": ("subset_fraction",),
    "natural": ("column",),
}


def _renamed(ds: Dataset, name: str) -> Dataset:
    ds.name = name
    return ds


def _describe(fed: Federation, cfg: PartitionConfig, seed: int) -> dict[str, Any]:
    params = {"clients": cfg.clients, **{p: getattr(cfg, p) for p in _PARAMS.get(cfg.kind, ())}}
    if cfg.feature_skew != "none":
        params["feature_skew"] = cfg.feature_skew
        params |= {p: getattr(cfg, p) for p in _PARAMS[f"feature-{cfg.feature_skew}"]}
    if cfg.kind == "quantity":
        params.pop("sigma" if cfg.quantity == "dirichlet" else "alpha")
    params |= {
        "min_client_size": cfg.min_client_size,
        "test_fraction": cfg.test_fraction,
        "client_test_fraction": cfg.client_test_fraction,
    }
    test_counts = fed.test.class_counts()
    return {
        "kind": cfg.kind,
        "params": params,
        "seed": int(seed),
        "sizes": fed.sizes().tolist(),
        "test_sizes": [c.test.n_samples for c in fed.clients],
        "label_counts": client_label_counts(fed).tolist(),
        "global_test_size": fed.test.n_samples,
        "global_test_label_counts": [test_counts["benign"], test_counts["malware"]],
    }
