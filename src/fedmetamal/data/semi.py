"""Semi-supervised scenarios: which training labels a federation may use.

:func:`apply_semi` runs after :func:`~fedmetamal.data.partition.partition` and decides, per
``cfg.semi.scenario``, which training labels stay visible:

* ``none``: the federation is returned as it is (the very same object).
* ``labels-at-clients``: each client keeps ``round(r * n)`` of its ``n`` labelled training rows
  (``r`` its ``label_ratio``); the rest become unlabelled (-1). With ``stratified`` the kept
  rows follow the client's own malware share, with at least one row of every class the client
  has whenever ``round(r * n)`` allows it.
* ``labels-at-server``: a ``server_labels`` share of all clients' training rows becomes the
  server's labelled set (stratified by label, drawn from labelled rows only, removed from the
  clients so no sample is in both places); every label left at a client is then hidden.

Choices worth knowing:

* The partition never changes: which rows a client holds (and the global and local test sets,
  which keep their labels for evaluation) is the same as with ``none``. Only ``labels-at-server``
  moves rows, and only from client training data to the server.
* Randomness comes from its own generators, ``default_rng([seed, 0x5E41, 1, client_id])`` per
  client and ``default_rng([seed, 0x5E41, 2])`` for the server set, never from the partition's
  stream, so enabling semi does not change the partition and one client's ratio does not change
  another client's draw. Rows are kept in the order of a per-class (or, unstratified, one)
  random permutation, so under the same seed a smaller ratio keeps a subset of a larger one's
  labels (up to the one-per-class rule on tiny clients): label-ratio sweeps are nested.
* Rows the dataset itself leaves unlabelled stay unlabelled and do not count in ``n``.
* Hidden labels are kept in ``ClientData.hidden_labels`` (true label, -1 elsewhere) for
  evaluation only, e.g. pseudo-label accuracy.
* ``Federation.info["semi"]`` records the outcome (JSON-ready); the partition's own keys
  (``sizes``, ``label_counts``) keep describing the partition before the scenario.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.config import SemiConfig
from fedmetamal.data.dataset import BENIGN, MALWARE, UNLABELLED, Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.data.splits import largest_remainder, round_half_up
from fedmetamal.errors import ConfigError

__all__ = ["CLIENT_LABEL_METHODS", "SEMI_STREAM", "apply_semi", "client_ratios", "reveal_labels"]

#: Tag mixed into the seed so the scenario's draws never share the partition's stream.
SEMI_STREAM = 0x5E41
_CLIENT_TAG = 1
_SERVER_TAG = 2
#: Methods that train each client on its own labels under ``labels-at-clients``.
CLIENT_LABEL_METHODS = frozenset({"supervised", "pseudo-label", "fixmatch", "fedmatch"})
_CLASSES = (BENIGN, MALWARE)


def apply_semi(fed: Federation, cfg: SemiConfig, seed: int) -> Federation:
    """The federation ``cfg.scenario`` describes, reproducibly from ``seed`` (see module doc).

    Raises :class:`ConfigError` before any training when the scenario cannot work: a ratio list
    of the wrong length, a client left without labels when the method needs them, a server set
    that is empty or would empty a client, or ``semifl`` without a server set.
    """
    if cfg.method == "semifl" and cfg.scenario != "labels-at-server":
        raise ConfigError(
            f"Method 'semifl' fine-tunes the global model on the server's labelled set, but "
            f"semi.scenario is '{cfg.scenario}' (no server set).",
            "Use scenario labels-at-server with server_labels > 0, or another method "
            "(pseudo-label, fixmatch, fedmatch).",
        )
    if cfg.scenario == "none":
        return fed
    if cfg.scenario == "labels-at-clients":
        return _labels_at_clients(fed, cfg, seed)
    return _labels_at_server(fed, cfg, seed)


def client_ratios(cfg: SemiConfig, n_clients: int) -> list[float]:
    """One label ratio per client; a list must have exactly one entry per client."""
    if not isinstance(cfg.label_ratio, list):
        return [float(cfg.label_ratio)] * n_clients
    if len(cfg.label_ratio) != n_clients:
        raise ConfigError(
            f"semi.label_ratio lists {len(cfg.label_ratio)} ratios but the federation has "
            f"{n_clients} clients.",
            f"Give exactly one ratio per client ({n_clients} values), or a single ratio for "
            "all clients.",
        )
    return [float(r) for r in cfg.label_ratio]


def reveal_labels(fed: Federation) -> Federation:
    """``fed`` with every client's hidden labels put back (the server set stays apart).

    For reports only, such as heterogeneity measures, which describe the clients' data and
    would otherwise see no labels under ``labels-at-server``. Returns ``fed`` itself when no
    labels are hidden.
    """
    if all(c.hidden_labels is None for c in fed.clients):
        return fed
    clients = []
    for c in fed.clients:
        if c.hidden_labels is None:
            clients.append(c)
            continue
        y = np.where(c.hidden_labels != UNLABELLED, c.hidden_labels, c.train.y).astype(np.int8)
        clients.append(ClientData(c.client_id, replace(c.train, y=y), c.test))
    return Federation(clients, fed.test, dict(fed.info), server=fed.server)


# --- labels at the clients -------------------------------------------------------------------


def _labels_at_clients(fed: Federation, cfg: SemiConfig, seed: int) -> Federation:
    ratios = client_ratios(cfg, fed.n_clients)
    clients = []
    for c, ratio in zip(fed.clients, ratios, strict=True):
        rng = np.random.default_rng([seed, SEMI_STREAM, _CLIENT_TAG, c.client_id])
        y = c.train.y
        n_labelled = int(np.sum(y != UNLABELLED))
        kept = _kept_rows(y, round_half_up(ratio * n_labelled), cfg.stratified, rng)
        if kept.size == 0 and cfg.method in CLIENT_LABEL_METHODS:
            raise _no_labels_error(c, n_labelled, ratio, cfg.method)
        clients.append(_hide(c, c.train, np.setdiff1d(np.flatnonzero(y != UNLABELLED), kept)))
    out = Federation(clients, fed.test, dict(fed.info), server=fed.server)
    out.info["semi"] = _describe(out, cfg, {"label_ratio": ratios})
    return out


def _kept_rows(y: np.ndarray, keep: int, stratified: bool, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of the ``keep`` labelled rows of ``y`` that stay labelled.

    Each class (or, unstratified, all labelled rows) is permuted once and its prefix taken, so a
    smaller ``keep`` under the same generator state picks a subset.
    """
    if not stratified:
        order = rng.permutation(np.flatnonzero(y != UNLABELLED))
        return np.sort(order[:keep]).astype(np.int64)
    pools = [rng.permutation(np.flatnonzero(y == k)) for k in _CLASSES]
    quotas = _quotas(np.array([p.size for p in pools]), keep)
    picked = [p[:q] for p, q in zip(pools, quotas, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class shares of ``total`` proportional to ``counts``, at least 1 for every present
    class when ``total`` allows (a rare class must not vanish from a small labelled set)."""
    quotas = largest_remainder(counts, total)
    present = counts > 0
    if total >= int(present.sum()):
        for k in np.flatnonzero(present & (quotas == 0)):
            quotas[int(np.argmax(quotas))] -= 1
            quotas[k] += 1
    return quotas


def _no_labels_error(c: ClientData, n_labelled: int, ratio: float, method: str) -> ConfigError:
    n = c.n_train
    if n_labelled == 0:
        problem = (
            f"Client {c.client_id} has no labelled training samples ({n} samples, all "
            f"unlabelled in the dataset), but method '{method}' trains every client on its "
            "own labels."
        )
        fix = (
            "Use a partition that gives every client labelled samples, or scenario "
            "labels-at-server with method semifl, fixmatch or pseudo-label."
        )
    else:
        problem = (
            f"semi.label_ratio={ratio:g} leaves client {c.client_id} with no labelled samples: "
            f"it has {n_labelled} labelled training samples ({n} in all) and "
            f"round({ratio:g} x {n_labelled}) = 0, but method '{method}' trains every client on "
            "its own labels."
        )
        fix = (
            f"Use a ratio of at least 1/{n_labelled} = {1.0 / n_labelled:.3g} for this client, "
            "fewer (hence larger) clients, or scenario labels-at-server."
        )
    return ConfigError(problem, fix)


# --- labels at the server --------------------------------------------------------------------


def _labels_at_server(fed: Federation, cfg: SemiConfig, seed: int) -> Federation:
    rng = np.random.default_rng([seed, SEMI_STREAM, _SERVER_TAG])
    total = int(fed.sizes().sum())
    size = round_half_up(cfg.server_labels * total)
    owner = np.concatenate(
        [np.full(c.n_train, i, dtype=np.int64) for i, c in enumerate(fed.clients)]
    )
    row = np.concatenate([np.arange(c.n_train, dtype=np.int64) for c in fed.clients])
    y = np.concatenate([c.train.y for c in fed.clients])
    n_labelled = int(np.sum(y != UNLABELLED))
    if size < 2 or size > n_labelled:
        raise ConfigError(
            f"semi.server_labels={cfg.server_labels:g} of {total} training samples gives a "
            f"server set of {size} samples; it needs at least 2 (one per class) and at most "
            f"the {n_labelled} labelled training samples.",
            f"Use a server_labels between {2 / total:.3g} and {n_labelled / total:.3g}, or a "
            "larger dataset.",
        )
    chosen = _kept_rows(y, size, cfg.stratified, rng)
    at_server = np.zeros(y.size, dtype=bool)
    at_server[chosen] = True

    clients, server_parts = [], []
    for i, c in enumerate(fed.clients):
        moved = row[(owner == i) & at_server]
        if moved.size == c.n_train:
            raise ConfigError(
                f"semi.server_labels={cfg.server_labels:g} moves all {c.n_train} training "
                f"samples of client {c.client_id} to the server.",
                "Use a smaller server_labels, fewer clients, or a larger min_client_size.",
            )
        server_parts.append(c.train.subset(moved))
        train = c.train.subset(np.setdiff1d(np.arange(c.n_train), moved))
        clients.append(_hide(c, train, np.flatnonzero(train.y != UNLABELLED)))
    server = _concat(server_parts, f"{fed.test.name}/server")
    out = Federation(clients, fed.test, dict(fed.info), server=server)
    out.info["semi"] = _describe(out, cfg, {"server_labels": cfg.server_labels})
    return out


def _concat(parts: list[Dataset], name: str) -> Dataset:
    """Row-wise union of datasets with the same features; metadata kept when all carry it."""
    metas = [p.metadata for p in parts]
    meta = None
    if all(m is not None for m in metas):
        meta = pd.concat(metas, ignore_index=True)
    return Dataset(
        X=np.concatenate([p.X for p in parts]).astype(np.float32, copy=False),
        y=np.concatenate([p.y for p in parts]),
        feature_names=list(parts[0].feature_names),
        metadata=meta,
        name=name,
        info=dict(parts[0].info),
    )


# --- shared ----------------------------------------------------------------------------------


def _hide(c: ClientData, train: Dataset, hide: np.ndarray) -> ClientData:
    """``c`` with ``train`` whose rows ``hide`` lose their label (kept in ``hidden_labels``)."""
    hidden = np.full(train.n_samples, UNLABELLED, dtype=np.int8)
    hidden[hide] = train.y[hide]
    y = train.y.copy()
    y[hide] = UNLABELLED
    return ClientData(c.client_id, replace(train, y=y), c.test, hidden_labels=hidden)


def _describe(fed: Federation, cfg: SemiConfig, extra: dict[str, Any]) -> dict[str, Any]:
    counts = [c.train.class_counts() for c in fed.clients]
    server = fed.server.class_counts() if fed.server is not None else None
    return {
        "scenario": cfg.scenario,
        "method": cfg.method,
        "stratified": cfg.stratified,
        **extra,
        "train_sizes": fed.sizes().tolist(),
        "labelled": [k["benign"] + k["malware"] for k in counts],
        "unlabelled": [k["unlabelled"] for k in counts],
        "hidden": [
            int(np.sum(c.hidden_labels != UNLABELLED)) if c.hidden_labels is not None else 0
            for c in fed.clients
        ],
        "labelled_counts": [[k["benign"], k["malware"]] for k in counts],
        "server_size": fed.server.n_samples if fed.server is not None else 0,
        "server_label_counts": [server["benign"], server["malware"]] if server else [0, 0],
    }
