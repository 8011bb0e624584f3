"""How non-IID a federation is: label, family, quantity and feature skew, and one index.

Every number is computed from :class:`~fedmetamal.data.heterogeneity_stats.ClientSummary`
reports (counts, per-class feature sums and histograms) that a participant could share, never
from raw samples pooled across clients; :func:`measure_federation` runs the client steps on
each simulated client and then :func:`measure_summaries`, the server's side.

Federation-level label and family measures are the mean of the client values weighted by each
client's number of labelled training samples (clients without labelled samples are left out).
The feature measures are averaged the same way but before their clip at 0 (``feature_shift``:
the root of the weighted mean of the clients' bias-corrected squared shifts), so an IID
federation of many small clients still measures about 0. Quantity skew is measured over
training sizes. The label and family measures are the textbook ones, including the sampling
noise a finite IID client shows; the combined index (:func:`combined_index`) removes that noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.data.federation import Federation
from fedmetamal.data.heterogeneity_stats import (
    ClientSummary,
    coefficient_of_variation,
    distribution_distances,
    expected_tv,
    feature_range,
    feature_skew,
    gini,
    shared_edges,
    summarise_client,
)

__all__ = [
    "CLIENT_MEASURES",
    "FEATURE_JS_SCALE",
    "FEDERATION_MEASURES",
    "INDEX_WEIGHTS",
    "ClientSummary",
    "HeterogeneityReport",
    "combined_index",
    "feature_range",
    "measure_federation",
    "measure_summaries",
    "shared_edges",
    "summarise_client",
]

_DISTANCES = {
    "emd": "EMD (Zhao et al. 2018): L1 distance of {what} distributions, client vs pooled "
    "(= 2 TV), in [0, 2]",
    "js": "Jensen–Shannon divergence (bits) of {what} distributions, client vs pooled, in [0, 1]",
    "hellinger": "Hellinger distance of {what} distributions, client vs pooled, in [0, 1]",
    "tv": "total variation distance of {what} distributions, client vs pooled, in [0, 1]",
}

#: The per-client measures (each also in every :attr:`HeterogeneityReport.clients` row).
CLIENT_MEASURES: dict[str, str] = {
    **{f"label_{k}": v.format(what="label") for k, v in _DISTANCES.items()},
    **{
        f"family_{k}": v.format(what="malware-family / benign-category")
        + " (NaN without family metadata)"
        for k, v in _DISTANCES.items()
    },
    "feature_shift": (
        "class-conditional standardised mean shift (signed-log features), IID-bias-corrected"
    ),
    "feature_js": (
        "class-conditional per-feature histogram JS divergence (bits), IID-bias-corrected"
    ),
}

#: Federation-level measures, in display order.
FEDERATION_MEASURES: dict[str, str] = {
    **{
        k: v + "; size-weighted mean over clients"
        for k, v in CLIENT_MEASURES.items()
        if not k.startswith("feature_")
    },
    "quantity_gini": "Gini coefficient of client training sizes (0 = equal)",
    "quantity_cv": "coefficient of variation (std / mean) of client training sizes",
    "feature_shift": CLIENT_MEASURES["feature_shift"]
    + "; root of the size-weighted mean of the clients' corrected squared shifts",
    "feature_js": CLIENT_MEASURES["feature_js"]
    + "; size-weighted mean of the clients' corrected values",
    "index": "combined non-IID index in [0, 1] (0 = IID) from label, family, feature and "
    "quantity skew",
}

#: Weights ``w_k`` of the index components (see :func:`combined_index`).
INDEX_WEIGHTS: dict[str, float] = {"label": 1.0, "family": 1.0, "feature": 1.0, "quantity": 0.25}

#: Scale ``s`` (bits) of the feature component ``1 - exp(-feature_js / s)``. Calibrated on the
#: synthetic validation study (``docs/noniid.md``: 52 federations, 256 features; of s in 0.01 ...
#: 0.15, 0.03 ranked FedAvg's AUC drop best, Spearman 0.925 against 0.837 for the first guess
#: 0.15); pe-headers played no part in the choice. Feature noise 1.0 over 10 clients then gives
#: a component of about 0.8 on pe-headers (feature_js ~0.045).
FEATURE_JS_SCALE = 0.03


@dataclass
class HeterogeneityReport:
    """Per-client rows, federation-level measures and the counts they come from.

    ``clients``: one row per client with ``client``, ``size`` (training samples),
    ``size_share``, ``malware_share`` (of labelled), ``top_families`` (up to 3
    ``[name, count]`` malware families by count, ``[]`` without metadata) and each
    :data:`CLIENT_MEASURES` key. ``federation``: each :data:`FEDERATION_MEASURES` key.
    ``label_counts``: (clients, 2) benign, malware. ``family_counts``: clients × family /
    category names (``benign:<category>`` for benign groups), ``None`` without metadata.
    ``components``: the index's components ``m_k`` (NaN where not applicable).
    """

    clients: list[dict[str, Any]]
    federation: dict[str, float]
    label_counts: np.ndarray
    family_counts: pd.DataFrame | None
    components: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain Python numbers, NaN as ``None``."""
        families = None
        if self.family_counts is not None:
            families = {
                "clients": [_plain(c) for c in self.family_counts.index],
                "names": [str(c) for c in self.family_counts.columns],
                "counts": _plain(self.family_counts.to_numpy()),
            }
        return {
            "federation": _plain(self.federation),
            "components": _plain(self.components),
            "index_weights": dict(INDEX_WEIGHTS),
            "feature_js_scale": FEATURE_JS_SCALE,
            "clients": _plain(self.clients),
            "label_counts": _plain(self.label_counts),
            "family_counts": families,
        }


def measure_federation(fed: Federation, bins: int = 16) -> HeterogeneityReport:
    """Measure ``fed``'s heterogeneity from per-client summaries of the training data.

    Runs the protocol of :mod:`fedmetamal.data.heterogeneity_stats`: each client shares its
    feature ranges, the server fixes ``bins`` uniform bins per feature, each client shares its
    :class:`ClientSummary`, the server computes the measures.
    """
    ranges = [feature_range(c.train) for c in fed.clients]
    edges = shared_edges([r[0] for r in ranges], [r[1] for r in ranges], bins)
    summaries = [summarise_client(c.train, edges) for c in fed.clients]
    return measure_summaries(summaries, [c.client_id for c in fed.clients])


def measure_summaries(
    summaries: Sequence[ClientSummary], client_ids: Sequence[int] | None = None
) -> HeterogeneityReport:
    """The server's side: every measure from the clients' summaries alone."""
    ids = list(client_ids) if client_ids is not None else list(range(len(summaries)))
    sizes = np.array([s.n for s in summaries], dtype=np.float64)
    label_counts = np.stack([s.label_counts for s in summaries]).astype(np.int64)
    labelled = label_counts.sum(axis=1).astype(np.float64)

    label = _distances(label_counts.astype(np.float64))
    family_counts = _family_table(summaries, ids)
    if family_counts is not None:
        family = _distances(family_counts.to_numpy(dtype=np.float64))
    else:
        family = {k: np.full(len(summaries), np.nan) for k in _DISTANCES}
    shift_sq, js_gap = feature_skew(summaries)

    per_client = {
        **{f"label_{k}": v for k, v in label.items()},
        **{f"family_{k}": v for k, v in family.items()},
        "feature_shift": np.sqrt(np.maximum(shift_sq, 0.0)),
        "feature_js": np.maximum(js_gap, 0.0),
    }
    federation = {k: _weighted_mean(v, labelled) for k, v in per_client.items()}
    # feature measures: average the unclipped, bias-corrected values, then clip (unbiased for
    # IID federations of many small clients; a mean of clipped values would not be)
    federation["feature_shift"] = math.sqrt(max(_weighted_mean(shift_sq, labelled), 0.0))
    federation["feature_js"] = max(_weighted_mean(js_gap, labelled), 0.0)
    federation["quantity_gini"] = gini(sizes)
    federation["quantity_cv"] = coefficient_of_variation(sizes)
    components = {
        "label": _skew_component(label_counts, label["tv"]),
        "family": (
            _skew_component(family_counts.to_numpy(), family["tv"])
            if family_counts is not None
            else math.nan
        ),
        "feature": (
            1.0 - math.exp(-federation["feature_js"] / FEATURE_JS_SCALE)
            if math.isfinite(federation["feature_js"])
            else math.nan
        ),
        "quantity": federation["quantity_gini"],
    }
    federation["index"] = combined_index(components)
    federation = {k: federation[k] for k in FEDERATION_MEASURES}

    total = max(sizes.sum(), 1.0)
    rows = []
    for i, s in enumerate(summaries):
        n_lab = labelled[i]
        rows.append(
            {
                "client": ids[i],
                "size": int(s.n),
                "size_share": float(s.n / total),
                "malware_share": float(label_counts[i, 1] / n_lab) if n_lab else math.nan,
                "top_families": _top_families(s),
                **{k: float(v[i]) for k, v in per_client.items()},
            }
        )
    return HeterogeneityReport(rows, federation, label_counts, family_counts, components)


def combined_index(components: dict[str, float]) -> float:
    """``index = 1 - prod_k (1 - w_k * m_k)`` over the components ``m_k`` in [0, 1]:

    * ``label``: ``clip((T - E) / (T_max - E), 0, 1)`` where ``T`` is the size-weighted mean
      label TV, ``E`` its expectation for IID clients of the same sizes (sampling noise,
      :func:`~fedmetamal.data.heterogeneity_stats.expected_tv`) and ``T_max = 1 - sum_y P_y^2``
      its largest attainable value given the pooled distribution ``P`` (TV is convex, so the
      weighted mean under the constraint that the clients mix to ``P`` peaks when every client
      holds one class: a fully one-class federation reaches exactly 1);
    * ``family``: the same over malware families / benign categories (left out without
      metadata);
    * ``feature``: ``1 - exp(-feature_js / FEATURE_JS_SCALE)``;
    * ``quantity``: the Gini coefficient of client training sizes.

    ``w_k`` are :data:`INDEX_WEIGHTS`; a NaN or missing component is left out. With all
    weights in [0, 1] the index lies in [0, 1], and it is 0 only when every component is.
    """
    keep = 1.0
    for name, weight in INDEX_WEIGHTS.items():
        m = components.get(name, math.nan)
        if m is None or not math.isfinite(m):
            continue
        keep *= 1.0 - weight * min(max(m, 0.0), 1.0)
    return float(min(max(1.0 - keep, 0.0), 1.0))


# --- helpers -------------------------------------------------------------------------------


def _distances(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Client-vs-pooled distances over rows of ``counts`` (clients × categories)."""
    totals = counts.sum(axis=1, keepdims=True)
    pooled = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / totals
        q = pooled / max(pooled.sum(), 1.0)
    out = distribution_distances(np.nan_to_num(p), q)
    empty = totals[:, 0] == 0
    return {k: np.where(empty, np.nan, v) for k, v in out.items()}


def _family_table(summaries: Sequence[ClientSummary], ids: list[int]) -> pd.DataFrame | None:
    if not summaries or not all(s.has_families for s in summaries):
        return None
    table = pd.DataFrame([s.family_counts for s in summaries], index=ids).fillna(0)
    table = table.astype(np.int64)
    order = table.sum(axis=0).sort_values(ascending=False, kind="stable").index
    return table[order]


def _top_families(s: ClientSummary, top: int = 3) -> list[list[Any]]:
    """Up to ``top`` malware families by count (benign groups are not families)."""
    items = [
        (name, count)
        for name, count in s.family_counts.items()
        if name != "benign" and not name.startswith("benign:") and count > 0
    ]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return [[name, int(count)] for name, count in items[:top]]


def _skew_component(counts: np.ndarray, tv: np.ndarray) -> float:
    """``clip((T - E) / (T_max - E), 0, 1)`` for clients' category ``counts`` and their TV.

    ``T`` is the size-weighted mean TV, ``E`` what IID clients of the same sizes would show
    (:func:`expected_tv`), ``T_max = 1 - sum_k P_k^2`` the largest attainable ``T`` given the
    pooled distribution ``P`` (reached when every client holds one category). NaN when no
    client has labelled samples.
    """
    n = counts.sum(axis=1).astype(np.float64)
    pooled = counts.sum(axis=0).astype(np.float64)
    big_n = pooled.sum()
    if big_n <= 0:
        return math.nan
    p = pooled / big_n
    top = 1.0 - float((p * p).sum())
    observed = _weighted_mean(tv, n)
    expected = _weighted_mean(expected_tv(n, pooled), n)
    if not math.isfinite(observed) or top - expected <= 1e-12:
        return 0.0
    return min(max((observed - expected) / (top - expected), 0.0), 1.0)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return math.nan
    return float(np.average(values[ok], weights=weights[ok]))


def _plain(value: Any) -> Any:
    """Numpy and NaN to JSON-ready Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
