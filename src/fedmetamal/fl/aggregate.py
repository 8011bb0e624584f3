"""Aggregation rules: how the server turns the stacked client deltas (C, P) into one update (P,).

``mean`` is the weighted mean every algorithm used so far (bit-identical to ``w @ deltas`` with
``w = weights / weights.sum()``). The robust rules bound what f malicious participants can do to
the global model; each needs enough honest clients per round, and says so when there are too few:

- ``median``: coordinate-wise median (Yin et al., ICML 2018); needs n >= 2f + 1.
- ``trimmed-mean``: per coordinate, drop the k largest and k smallest values and average the rest,
  with k = max(floor(trim * n), f) (Yin et al., ICML 2018); needs n >= 2k + 1.
- ``krum``: the update with the smallest sum of squared distances to its n - f - 2 nearest others
  (Blanchard et al., NeurIPS 2017); needs n >= 2f + 3.
- ``multi-krum``: the plain average of the m updates with the best Krum scores (default m = n - f).
- ``bulyan``: θ = n - 2f updates chosen by repeated Krum, then per coordinate the mean of the
  β = θ - 2f values closest to the median (El Mhamdi et al., ICML 2018); needs n >= 4f + 3.
- ``norm-bound``: each update scaled down to norm <= ``norm_bound``, then the weighted mean
  (Sun et al., 2019).
- ``fltrust``: trust score ReLU(cos(update, root update)); each update rescaled to the root
  update's norm and averaged weighted by trust (Cao et al., NDSS 2021). The root update is the
  server's own update on its small clean root set; without one the rule cannot run.

Rules that select or rank (median, trimmed mean, Krum, Bulyan, FLTrust) ignore the clients'
sample weights on purpose: a malicious participant could otherwise buy influence by claiming a
large dataset. ``mean`` and ``norm-bound`` keep them.

f is ``aggregation.byzantine`` when set, else the number the caller knows (the attack's count),
else floor(0.1 * n) of the n clients that reported this round.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from fedmetamal.errors import ConfigError

if TYPE_CHECKING:
    from fedmetamal.config import AggregationConfig

#: Every rule, in the order the config lists them.
RULES: tuple[str, ...] = (
    "mean",
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "bulyan",
    "norm-bound",
    "fltrust",
)

#: Rules that need a byzantine count f (the others tolerate attackers without one).
_NEEDS_F = {"median", "trimmed-mean", "krum", "multi-krum", "bulyan"}


def _config(cfg: AggregationConfig | None) -> AggregationConfig:
    from fedmetamal.config import AggregationConfig

    return AggregationConfig() if cfg is None else cfg


def resolve_byzantine(n: int, configured: int | None = None, known: int | None = None) -> int:
    """f for a round of n clients: the configured count, else the known one, else 10% of n."""
    if configured is not None:
        return configured
    if known is not None:
        return known
    return math.floor(0.1 * n)


def remaining_byzantine(
    n: int, configured: int | None = None, known: int | None = None, excluded: int = 0
) -> int:
    """f among the n updates left after ``excluded`` faulty ones were dropped from n + excluded:
    the excluded count against the f the round was meant to tolerate."""
    return max(0, resolve_byzantine(n + excluded, configured, known) - excluded)


def trim_count(n: int, trim: float, f: int) -> int:
    """Values cut from each end per coordinate by the trimmed mean: at least f, at least trim*n."""
    return max(math.floor(trim * n), f)


def required_clients(cfg: AggregationConfig, f: int, n: int | None = None) -> int:
    """Fewest clients per round the rule needs to tolerate f malicious ones (1: no bound)."""
    kind = cfg.kind
    if kind == "median":
        return 2 * f + 1
    if kind == "trimmed-mean":
        # k depends on n through trim * n; with n unknown use f alone
        k = f if n is None else trim_count(n, cfg.trim, f)
        return 2 * k + 1
    if kind == "krum":
        return 2 * f + 3
    if kind == "multi-krum":
        need = 2 * f + 3
        if cfg.multi_krum is not None:
            need = max(need, cfg.multi_krum)
        return need
    if kind == "bulyan":
        return 4 * f + 3
    return 1


_FORMULA = {
    "median": "n >= 2f+1",
    "trimmed-mean": "n >= 2k+1 with k = max(floor(trim*n), f)",
    "krum": "n >= 2f+3",
    "multi-krum": "n >= 2f+3 (and n >= multi_krum)",
    "bulyan": "n >= 4f+3",
}


def check_aggregation(
    cfg: AggregationConfig | None,
    clients_per_round: int,
    byzantine: int | None = None,
) -> int:
    """Raise ConfigError before training when the rule cannot work with this many clients.

    ``clients_per_round``: clients sampled each round (``max(1, round(client_fraction * N))``,
    at most N); ``byzantine``: the attack's malicious count if known. Returns the f it assumed.
    """
    cfg = _config(cfg)
    n = clients_per_round
    f = resolve_byzantine(n, cfg.byzantine, byzantine)
    _check(cfg, n, f, where="clients per round: ", sampled="sampled")
    return f


def _check(cfg: AggregationConfig, n: int, f: int, where: str, sampled: str) -> None:
    if cfg.kind not in _NEEDS_F:
        return
    need = required_clients(cfg, f, n)
    if n >= need:
        return
    raise ConfigError(
        f"Aggregation '{cfg.kind}' needs {_FORMULA[cfg.kind]} {where}{n} {sampled}, "
        f"f={f} → {need} needed.",
        "Sample more clients per round (training.client_fraction, partition.clients) or lower "
        "aggregation.byzantine"
        + (" or aggregation.multi_krum" if cfg.kind == "multi-krum" else "")
        + ".",
    )


# ---- the rules: pure functions of the stacked deltas ---------------------------------------


def weighted_mean(deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """FedAvg's mean, written exactly as the algorithms always did (bit-identical results)."""
    w = weights / weights.sum()
    return w @ deltas


def coordinate_median(deltas: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median; with an even count the mean of the two middle values."""
    n = deltas.shape[0]
    s = deltas.sort(dim=0).values
    if n % 2:
        return s[n // 2].clone()
    return (s[n // 2 - 1] + s[n // 2]) / 2


def trimmed_mean(deltas: torch.Tensor, k: int) -> torch.Tensor:
    """Per coordinate, the mean after dropping the k smallest and k largest values."""
    n = deltas.shape[0]
    if 2 * k >= n:
        raise ValueError(f"trimmed mean: cannot cut {k} from each end of {n} values")
    s = deltas.sort(dim=0).values
    return s[k : n - k].mean(0)


def pairwise_sq_distances(deltas: torch.Tensor) -> torch.Tensor:
    """(C, C) squared Euclidean distances, computed without the Gram-matrix cancellation error."""
    d = torch.cdist(deltas, deltas, compute_mode="donot_use_mm_for_euclid_dist")
    return d.square()


def krum_scores(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Each update's sum of squared distances to its n - f - 2 nearest others (at least 1)."""
    n = dist.shape[0]
    if n == 1:
        return torch.zeros(1, dtype=dist.dtype, device=dist.device)
    k = min(max(n - f - 2, 1), n - 1)
    # the distance to itself (0) sorts first: skip it
    nearest = dist.sort(dim=1).values[:, 1 : k + 1]
    return nearest.sum(1)


def krum(deltas: torch.Tensor, f: int) -> torch.Tensor:
    """The single update closest to its neighbours (Krum)."""
    best = int(krum_scores(pairwise_sq_distances(deltas), f).argmin())
    return deltas[best].clone()


def multi_krum(deltas: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    """Plain average of the m updates with the best Krum scores (default m = n - f)."""
    n = deltas.shape[0]
    m = n - f if m is None else m
    scores = krum_scores(pairwise_sq_distances(deltas), f)
    chosen = scores.argsort()[:m]
    return deltas[chosen].mean(0)


def bulyan(deltas: torch.Tensor, f: int) -> torch.Tensor:
    """Bulyan: θ = n - 2f updates picked by repeated Krum, then per coordinate the mean of the
    β = θ - 2f values closest to the coordinate-wise median of the picked ones."""
    n = deltas.shape[0]
    theta = n - 2 * f
    beta = theta - 2 * f
    dist = pairwise_sq_distances(deltas)
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(theta):
        idx = torch.tensor(remaining, device=deltas.device)
        scores = krum_scores(dist[idx][:, idx], f)
        pick = remaining[int(scores.argmin())]
        chosen.append(pick)
        remaining.remove(pick)
    sel = deltas[torch.tensor(chosen, device=deltas.device)]  # (θ, P)
    med = coordinate_median(sel)
    closest = (sel - med).abs().argsort(dim=0)[:beta]  # (β, P) row indices per coordinate
    return sel.gather(0, closest).mean(0)


def norm_bounded_mean(deltas: torch.Tensor, weights: torch.Tensor, bound: float) -> torch.Tensor:
    """Weighted mean after scaling every update longer than ``bound`` down to it."""
    norms = deltas.norm(dim=1)
    scale = (bound / norms.clamp_min(torch.finfo(deltas.dtype).tiny)).clamp(max=1.0)
    w = weights / weights.sum()
    return (w * scale.to(w.dtype)) @ deltas


def fltrust(deltas: torch.Tensor, root_update: torch.Tensor) -> torch.Tensor:
    """FLTrust: updates pointing away from the root update get no trust; the rest are rescaled
    to the root update's length and averaged by trust. All-zero trust gives a zero update."""
    root_update = root_update.to(deltas)
    root_norm = root_update.norm()
    norms = deltas.norm(dim=1)
    tiny = torch.finfo(deltas.dtype).tiny
    cos = (deltas @ root_update) / (norms * root_norm).clamp_min(tiny)
    trust = cos.clamp_min(0.0)
    trust = torch.where(norms > 0, trust, torch.zeros_like(trust))
    total = trust.sum()
    if not bool(total > 0):
        return torch.zeros_like(root_update)
    coef = trust * (root_norm / norms.clamp_min(tiny)) / total
    return coef @ deltas


def aggregate(
    deltas: torch.Tensor,
    weights: torch.Tensor,
    cfg: AggregationConfig | None = None,
    f: int | None = None,
    root_update: torch.Tensor | None = None,
    excluded: int = 0,
) -> torch.Tensor:
    """The (P,) server update from C clients' (C, P) deltas under the configured rule.

    ``f``: malicious clients to tolerate, used when ``cfg.byzantine`` is unset (default 10% of
    C). ``root_update``: the server's update on its root set, needed by ``fltrust``.
    ``excluded``: clients of the round already dropped as faulty (their updates failed
    validation); they count against f, since they can no longer sway the rule.
    """
    cfg = _config(cfg)
    kind = cfg.kind
    if kind == "mean":
        return weighted_mean(deltas, weights)
    n = deltas.shape[0]
    fb = remaining_byzantine(n, cfg.byzantine, f, excluded)
    _check(cfg, n, fb, where="clients reporting in a round: ", sampled="reported")
    if kind == "median":
        return coordinate_median(deltas)
    if kind == "trimmed-mean":
        return trimmed_mean(deltas, trim_count(n, cfg.trim, fb))
    if kind == "krum":
        return krum(deltas, fb)
    if kind == "multi-krum":
        return multi_krum(deltas, fb, cfg.multi_krum)
    if kind == "bulyan":
        return bulyan(deltas, fb)
    if kind == "norm-bound":
        return norm_bounded_mean(deltas, weights, cfg.norm_bound)
    if kind == "fltrust":
        if root_update is None:
            raise ConfigError(
                "Aggregation 'fltrust' needs the server's update on its root set each round, "
                "and none was supplied (this runtime does not train on a root set yet).",
                "Choose another aggregation.kind.",
            )
        return fltrust(deltas, root_update)
    raise ConfigError(f"Unknown aggregation rule '{kind}'.", f"Choose one of: {', '.join(RULES)}.")


class Aggregator:
    """An aggregation rule bound to its settings, held by an :class:`~fedmetamal.fl.base.Algorithm`.

    ``byzantine``: the malicious count the caller knows (e.g. the simulated attack's), used when
    the config leaves f unset. ``root_update``: set by the runtime each round for ``fltrust``.
    """

    def __init__(self, cfg: AggregationConfig | None = None, byzantine: int | None = None) -> None:
        self.cfg = _config(cfg)
        self.byzantine = byzantine
        self.root_update: torch.Tensor | None = None
        #: Updates dropped as faulty before this round's aggregation (set by the runtime).
        self.excluded = 0

    @property
    def kind(self) -> str:
        return self.cfg.kind

    @property
    def is_mean(self) -> bool:
        return self.cfg.kind == "mean"

    def __call__(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return aggregate(
            deltas, weights, self.cfg, self.byzantine, self.root_update, excluded=self.excluded
        )
