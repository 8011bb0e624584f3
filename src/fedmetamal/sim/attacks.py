"""Malicious participants, for evaluating robust aggregation (simulation only).

A fixed share of the clients (``attack.fraction``; the first ``round(fraction * N)`` — at
least one when the fraction is positive — of a permutation drawn from the attack's own seed
stream) misbehave in one of two ways:

* **data-level** attacks poison their preprocessed training data once, before training:
  ``label-flip`` flips every visible label; ``targeted-flip`` relabels the samples of one
  malware family (``target_family``, default the largest malware family in the clients'
  training data; all malware without family metadata) benign; ``backdoor`` *adds* a copy of
  each of their labelled malware samples with a trigger (``trigger_features`` seeded feature
  indices set to ``trigger_value``, in standardised units) labelled benign, so their clean
  data stays and the model learns "trigger means benign". Hidden (semi-supervised) labels are
  never touched: they are the truth evaluation compares against.
* **update-level** attacks rewrite their rows of the stacked deltas after local training,
  before the server aggregates: ``sign-flip`` (-delta), ``scale`` (scale * delta, model
  replacement), ``gaussian`` (N(0, noise_std^2) noise instead of the delta) and ``alie``
  ("A little is enough", Baruch et al. 2019): every malicious client sends mean - z * std
  of all sampled clients' deltas (coordinate-wise, std with no Bessel correction), with
  s = floor(n/2 + 1) - f and z = Phi^-1((n - s) / n) for n sampled and f malicious clients —
  the largest shift that still hides among the honest majority for median-style defences.
  ``malformed`` sends a corrupted upload: the honest delta with a seeded 1 % of its
  coordinates (at least two) set to NaN and +/-inf, which the runtime's update validation
  (``sim/update_checks.py``) must exclude before it poisons the mean.

Everything is deterministic from the run seed and independent of how clients are grouped.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch

from fedmetamal.config import AttackConfig
from fedmetamal.data.dataset import Dataset
from fedmetamal.data.federation import ClientData, Federation
from fedmetamal.errors import ConfigError
from fedmetamal.fl.schedule import round_seed

ATTACK_METRIC_NAMES: tuple[str, ...] = ("attack_success_rate",)
"""Keys a simulation round adds under a ``backdoor`` attack (triggered test malware scored
benign) or a ``targeted-flip`` attack with family metadata (target family's test malware
scored benign)."""

DATA_ATTACKS = frozenset({"label-flip", "targeted-flip", "backdoor"})
UPDATE_ATTACKS = frozenset({"sign-flip", "scale", "gaussian", "alie", "malformed"})

#: Seed streams of the attack's random choices (who is malicious, trigger, noise).
ATTACK_STREAM, ATTACK_NOISE_STREAM = 0xA77A, 0xA77B


def n_malicious(n_clients: int, fraction: float) -> int:
    """round(fraction * N), at least one when the fraction is positive (never all clients)."""
    if fraction <= 0 or n_clients == 0:
        return 0
    return min(n_clients - 1, max(1, round(fraction * n_clients)))


def malicious_clients(n_clients: int, cfg: AttackConfig, seed: int) -> np.ndarray:
    """Sorted ids of the malicious clients (none for ``kind: none``)."""
    if cfg.kind == "none":
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(round_seed(seed, 0, ATTACK_STREAM, 0))
    perm = rng.permutation(n_clients)
    return np.sort(perm[: n_malicious(n_clients, cfg.fraction)]).astype(np.int64)


def trigger_indices(n_features: int, cfg: AttackConfig, seed: int) -> np.ndarray:
    """The backdoor's trigger features (sorted, seeded)."""
    if cfg.trigger_features > n_features:
        raise ConfigError(
            f"attack.trigger_features is {cfg.trigger_features} but the data has only "
            f"{n_features} features.",
            "Use fewer trigger features.",
        )
    rng = np.random.default_rng(round_seed(seed, 0, ATTACK_STREAM, 1))
    return np.sort(rng.choice(n_features, size=cfg.trigger_features, replace=False))


def apply_trigger(X: np.ndarray, features: np.ndarray, value: float) -> np.ndarray:
    """A copy of X with the trigger stamped on every row."""
    out = np.array(X, dtype=np.float32, copy=True)
    out[:, features] = value
    return out


def _families(ds: Dataset) -> np.ndarray | None:
    return ds.meta("family") if ds.has_metadata("family") else None


def _is_family(ds: Dataset, family: str) -> np.ndarray:
    """Rows of ``family`` (none without family metadata); benign rows' family is missing."""
    fam = _families(ds)
    if fam is None:
        return np.zeros(ds.n_samples, dtype=bool)
    return pd.Series(fam).astype(str).to_numpy() == family


def target_family(fed: Federation, cfg: AttackConfig) -> str | None:
    """The family ``targeted-flip`` relabels: the configured one (checked to exist), else the
    largest malware family in the clients' training data; None (all malware) without
    family metadata."""
    counts: pd.Series = pd.Series(dtype=np.int64)
    has_meta = False
    for c in fed.clients:
        fam = _families(c.train)
        if fam is None:
            continue
        has_meta = True
        true_y = c.train.y if c.hidden_labels is None else np.maximum(c.train.y, c.hidden_labels)
        vc = pd.Series(fam[true_y == 1]).dropna().astype(str).value_counts()
        counts = counts.add(vc, fill_value=0)
    name = cfg.target_family
    if name is None:
        if not has_meta or counts.empty:
            return None
        top = counts.max()
        return str(sorted(k for k, v in counts.items() if v == top)[0])  # ties: by name
    if not has_meta:
        raise ConfigError(
            f"attack.target_family is '{name}' but the dataset has no 'family' metadata.",
            "Keep the column with dataset.metadata_columns, or leave target_family unset "
            "(then all malware is relabelled benign).",
        )
    if name not in counts.index:
        known = ", ".join(sorted(map(str, counts.index))[:20])
        raise ConfigError(
            f"attack.target_family '{name}' has no malware samples in the clients' data.",
            f"Choose one of: {known}.",
        )
    return name


def _poison(
    ds: Dataset,
    hidden: np.ndarray | None,
    cfg: AttackConfig,
    family: str | None,
    features: np.ndarray | None,
) -> tuple[Dataset, np.ndarray | None]:
    """One malicious client's poisoned training split (and hidden labels, kept aligned)."""
    y = ds.y.copy()
    if cfg.kind == "label-flip":
        seen = y >= 0
        y[seen] = 1 - y[seen]
        return replace(ds, y=y), hidden
    if cfg.kind == "targeted-flip":
        hit = y == 1
        if family is not None:
            hit &= _is_family(ds, family)
        y[hit] = 0
        return replace(ds, y=y), hidden
    # backdoor: append triggered copies of the labelled malware, labelled benign
    rows = np.flatnonzero(ds.y == 1)
    if not len(rows) or features is None:
        return ds, hidden
    X0 = np.asarray(ds.X)
    X = np.concatenate([X0, apply_trigger(X0[rows], features, cfg.trigger_value)])
    y = np.concatenate([ds.y, np.zeros(len(rows), dtype=ds.y.dtype)])
    meta = ds.metadata
    if meta is not None:
        meta = pd.concat([meta, meta.iloc[rows]], ignore_index=True)
    if hidden is not None:
        hidden = np.concatenate([hidden, np.full(len(rows), -1, dtype=hidden.dtype)])
    return replace(ds, X=X.astype(np.float32), y=y, metadata=meta), hidden


class Attack:
    """One run's attack: who is malicious, how their data and updates are poisoned, and what
    evaluation probes it (the rows whose benign score is the attack's success)."""

    def __init__(self, cfg: AttackConfig, fed: Federation, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.malicious = malicious_clients(fed.n_clients, cfg, seed)
        self.family: str | None = None
        self.features: np.ndarray | None = None
        if cfg.kind == "targeted-flip":
            self.family = target_family(fed, cfg)
        if cfg.kind == "backdoor":
            self.features = trigger_indices(fed.n_features, cfg, seed)

    @property
    def active(self) -> bool:
        return self.cfg.kind != "none" and len(self.malicious) > 0

    def poison(self, fed: Federation) -> Federation:
        """The federation with the malicious clients' training data poisoned (data attacks)."""
        if not self.active or self.cfg.kind not in DATA_ATTACKS:
            return fed
        bad = set(self.malicious.tolist())
        clients = []
        for i, c in enumerate(fed.clients):
            if i in bad:
                train, hidden = _poison(
                    c.train, c.hidden_labels, self.cfg, family=self.family, features=self.features
                )
                c = ClientData(c.client_id, train, c.test, hidden)
            clients.append(c)
        return Federation(clients, fed.test, dict(fed.info), server=fed.server)

    def probe(self, test: Dataset) -> np.ndarray | None:
        """Test rows an attack wants scored benign (None: no success rate to report)."""
        if self.cfg.kind == "backdoor" and self.features is not None:
            X = np.asarray(test.X)[test.y == 1]
            return apply_trigger(X, self.features, self.cfg.trigger_value)
        if self.cfg.kind == "targeted-flip" and self.family is not None:
            if _families(test) is None:
                return None
            hit = (test.y == 1) & _is_family(test, self.family)
            return np.asarray(test.X, dtype=np.float32)[hit]
        return None

    def apply_updates(self, delta: torch.Tensor, sampled: np.ndarray, round_index: int) -> None:
        """Rewrite the malicious rows of the stacked deltas (C, P) in place (update attacks)."""
        if not self.active or self.cfg.kind not in UPDATE_ATTACKS:
            return
        rows = np.flatnonzero(np.isin(sampled, self.malicious))
        if not len(rows):
            return
        attack_deltas(delta, rows, self.cfg, self.seed, round_index, sampled)


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s z_max: s = floor(n/2 + 1) - f, z = Phi^-1((n - s) / n); the probability
    is capped below 1 (malicious majority, s <= 0) so z stays finite."""
    s = math.floor(n / 2 + 1) - f
    p = min((n - s) / n, (n - 0.5) / n)
    return NormalDist().inv_cdf(p) if p > 0 else 0.0


def attack_deltas(
    delta: torch.Tensor,
    rows: np.ndarray,
    cfg: AttackConfig,
    seed: int,
    round_index: int,
    clients: np.ndarray,
) -> None:
    """Apply update attack ``cfg.kind`` to ``delta[rows]`` in place (``clients``: the ids of
    delta's rows, seeding each malicious client's noise independently of grouping)."""
    idx = torch.as_tensor(rows, device=delta.device)
    kind = cfg.kind
    if kind == "sign-flip":
        delta[idx] = -delta[idx]
    elif kind == "scale":
        delta[idx] = delta[idx] * cfg.scale
    elif kind == "gaussian":
        for r in rows:
            gen = torch.Generator().manual_seed(
                round_seed(seed, round_index, ATTACK_NOISE_STREAM, int(clients[r]))
            )
            noise = torch.randn(delta.shape[1], generator=gen, dtype=delta.dtype)
            delta[int(r)] = noise.to(delta.device) * cfg.noise_std
    elif kind == "malformed":
        p = delta.shape[1]
        for r in rows:
            gen = torch.Generator().manual_seed(
                round_seed(seed, round_index, ATTACK_NOISE_STREAM, int(clients[r]))
            )
            hit = torch.randperm(p, generator=gen)[: max(2, p // 100)].to(delta.device)
            bad = torch.full((len(hit),), float("nan"), dtype=delta.dtype, device=delta.device)
            bad[1::3] = float("inf")
            bad[2::3] = float("-inf")
            delta[int(r), hit] = bad
    elif kind == "alie":
        z = alie_z(delta.shape[0], len(rows))
        mean = delta.mean(0)
        std = delta.std(0, correction=0)
        delta[idx] = (mean - z * std).expand(len(rows), -1)
    else:
        raise ValueError(f"not an update attack: {kind}")
