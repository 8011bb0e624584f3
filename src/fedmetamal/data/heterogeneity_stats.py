"""What a participant shares for non-IID measurement, and the statistics the server computes.

Heterogeneity is measured the federated way: no raw sample ever leaves its client. The protocol
has two client steps and two server steps, so the network runtime can run the client steps on
each participant:

1. client: :func:`feature_range` — per-feature minimum and maximum of its training features;
2. server: :func:`shared_edges` — one set of histogram bin edges per feature from all ranges;
3. client: :func:`summarise_client` — a :class:`ClientSummary` (counts, per-class feature sums
   and per-class histograms over the shared edges);
4. server: label, family, quantity and feature statistics from the summaries alone.

Features are compared on the signed-log scale ``sign(x) * log1p(|x|)``, so heavy-tailed counts
(sizes, addresses) spread over the uniform bins instead of piling into the first one.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaln, xlogy

from fedmetamal.data.dataset import BENIGN, MALWARE, Dataset
from fedmetamal.data.preprocess import signed_log1p
from fedmetamal.data.splits import BENIGN_CATEGORY_COLUMN

#: Feature values (signed-log scale) summarised per block: bounds memory on wide datasets.
_BLOCK_VALUES = 1 << 22
#: Client blocks on the server side are sized so one float64 histogram block stays this small.
_SERVER_BLOCK_VALUES = 1 << 22
#: A class-conditional feature whose pooled std (signed-log scale) is below this is constant.
_CONSTANT_STD = 1e-9


@dataclass
class ClientSummary:
    """Everything one participant shares for heterogeneity measurement; no raw rows.

    ``label_counts`` is (benign, malware) over labelled training samples; ``family_counts``
    maps malware family / benign category names to counts (empty without family metadata).
    ``feature_sum`` and ``feature_sumsq`` are (2, d) per class (row 0 benign, row 1 malware) on
    the signed-log scale; ``histogram`` is (2, d, bins) counts over the shared edges.
    """

    n: int
    label_counts: np.ndarray
    has_families: bool
    family_counts: dict[str, int] = field(default_factory=dict)
    feature_sum: np.ndarray = field(default_factory=lambda: np.zeros((2, 0)))
    feature_sumsq: np.ndarray = field(default_factory=lambda: np.zeros((2, 0)))
    histogram: np.ndarray = field(default_factory=lambda: np.zeros((2, 0, 1), np.int64))

    @property
    def n_labelled(self) -> int:
        return int(self.label_counts.sum())


# --- the client's side ---------------------------------------------------------------------


def feature_range(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (min, max) of a client's training features on the signed-log scale.

    The signed log is monotone, so the raw extremes are transformed; an empty client returns
    (+inf, -inf), which :func:`shared_edges` ignores.
    """
    d = ds.n_features
    if ds.n_samples == 0:
        return np.full(d, np.inf), np.full(d, -np.inf)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    rows = max(1, _BLOCK_VALUES // max(d, 1))
    for start in range(0, ds.n_samples, rows):
        block = np.asarray(ds.X[start : start + rows])
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
    return signed_log1p(lo), signed_log1p(hi)


def summarise_client(ds: Dataset, edges: np.ndarray) -> ClientSummary:
    """One participant's :class:`ClientSummary` of its training data ``ds``.

    ``edges`` is (d, bins + 1) from :func:`shared_edges` (uniform bins per feature); values
    outside the edges fall into the first or last bin. Unlabelled samples count towards ``n``
    only.
    """
    d = ds.n_features
    bins = edges.shape[1] - 1
    lo, hi = edges[:, 0], edges[:, -1]
    width = (hi - lo) / bins
    inv = np.divide(1.0, width, out=np.zeros(d), where=width > 0).astype(np.float32)
    lo32 = lo.astype(np.float32)
    offsets = np.arange(d, dtype=np.int64) * bins
    hist = np.zeros((2, d * bins), dtype=np.int64)
    total = np.zeros((2, d))
    total_sq = np.zeros((2, d))
    rows_per_block = max(1, _BLOCK_VALUES // max(d, 1))
    for cls in (BENIGN, MALWARE):
        rows = np.flatnonzero(ds.y == cls)
        for start in range(0, rows.size, rows_per_block):
            block = signed_log1p(np.asarray(ds.X[rows[start : start + rows_per_block]]))
            block64 = block.astype(np.float64)
            total[cls] += block64.sum(axis=0)
            total_sq[cls] += np.einsum("ij,ij->j", block64, block64)
            index = ((block - lo32) * inv).astype(np.int64)
            np.clip(index, 0, bins - 1, out=index)
            index += offsets
            hist[cls] += np.bincount(index.ravel(), minlength=d * bins)
    label_counts = np.array([np.sum(ds.y == BENIGN), np.sum(ds.y == MALWARE)], dtype=np.int64)
    has_families = ds.has_metadata("family")
    return ClientSummary(
        n=ds.n_samples,
        label_counts=label_counts,
        has_families=has_families,
        family_counts=group_counts(ds) if has_families else {},
        feature_sum=total,
        feature_sumsq=total_sq,
        histogram=hist.reshape(2, d, bins),
    )


def group_counts(ds: Dataset) -> dict[str, int]:
    """Labelled samples per group: malware family, ``benign:<category>``, ``benign`` or
    ``unknown`` (malware with neither), named exactly as the ``family-dirichlet`` partition
    names them (metadata wins over a possibly noisy label). Empty without family metadata.
    """
    if not ds.has_metadata("family"):
        return {}
    labelled = ds.labelled_mask
    family = _present(ds.meta("family")[labelled])
    if ds.has_metadata(BENIGN_CATEGORY_COLUMN):
        category = _present(ds.meta(BENIGN_CATEGORY_COLUMN)[labelled])
    else:
        category = np.full(family.size, None, dtype=object)
    labels = ds.y[labelled].tolist()
    triples = Counter(zip(family.tolist(), category.tolist(), labels, strict=True))
    counts: Counter[str] = Counter()
    for (fam, cat, label), count in triples.items():
        counts[_group_name(fam, cat, label)] += count
    return dict(counts)


def _present(values: np.ndarray) -> np.ndarray:
    """Object array with missing values (None, NaN, NaT) as None."""
    out = np.asarray(values, dtype=object).copy()
    out[pd.isna(out)] = None
    return out


def _group_name(family: object, category: object, label: int) -> str:
    fam = "" if family is None else str(family).strip()
    if fam:
        return fam
    cat = "" if category is None else str(category).strip()
    if label == MALWARE and not cat:
        return "unknown"
    return f"benign:{cat}" if cat else "benign"


# --- the server's side ---------------------------------------------------------------------


def shared_edges(
    mins: Sequence[np.ndarray] | np.ndarray, maxs: Sequence[np.ndarray] | np.ndarray, bins: int
) -> np.ndarray:
    """Uniform bin edges, shape (d, bins + 1), spanning every client's range per feature.

    ``mins`` / ``maxs`` are the clients' :func:`feature_range` results, stacked (clients, d) or
    one (d,) range. A feature no client has data for gets edges at 0.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    lo = np.atleast_2d(np.asarray(mins, dtype=np.float64)).min(axis=0)
    hi = np.atleast_2d(np.asarray(maxs, dtype=np.float64)).max(axis=0)
    empty = ~np.isfinite(lo) | ~np.isfinite(hi) | (hi < lo)
    lo = np.where(empty, 0.0, lo)
    hi = np.where(empty, 0.0, hi)
    return lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, bins + 1)[None, :]


def distribution_distances(p: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """EMD, Jensen–Shannon, Hellinger and total variation between rows of ``p`` and ``q``.

    Rows are probability vectors over the same categories (``q`` broadcasts). EMD follows
    Zhao et al. 2018 (Federated Learning with Non-IID Data): the sum of absolute differences of
    class probabilities (L1); for categorical labels (all classes a distance 1 apart) it equals
    2 × total variation, so it lies in [0, 2]. JS is in bits (base 2, in [0, 1]); Hellinger is
    ``sqrt(1 - sum(sqrt(p q)))`` in [0, 1]; TV is half the L1 distance, in [0, 1].
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), p.shape)
    l1 = np.abs(p - q).sum(axis=-1)
    bc = np.sqrt(p * q).sum(axis=-1)
    return {
        "emd": l1,
        "js": js_bits(p, q),
        "hellinger": np.sqrt(np.clip(1.0 - bc, 0.0, 1.0)),
        "tv": 0.5 * l1,
    }


def js_bits(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence in bits over the last axis: ``H(m) - (H(p) + H(q)) / 2``."""
    m = 0.5 * (p + q)
    js = _entropy(m) - 0.5 * (_entropy(p) + _entropy(q))
    return np.clip(js / np.log(2.0), 0.0, 1.0)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -xlogy(p, p).sum(axis=-1)


def gini(values: np.ndarray) -> float:
    """Gini coefficient ``sum_ij |x_i - x_j| / (2 n^2 mean)``: 0 for equal values, at most
    ``(n - 1) / n`` when one value holds everything."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return 0.0
    # sum_ij |x_i - x_j| = 2 sum_i (2i - n + 1) x_(i) for ascending x (0-based i)
    weights = 2.0 * np.arange(n) - n + 1
    return float(2.0 * (weights * x).sum() / (2.0 * n * n * x.mean()))


def coefficient_of_variation(values: np.ndarray) -> float:
    """Population standard deviation over mean (0 for equal values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or x.mean() <= 0:
        return 0.0
    return float(x.std() / x.mean())


def expected_tv(n: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Expected total variation between an IID client's category distribution and the pool.

    ``n`` holds the clients' sample counts, ``pooled`` the pooled category counts (the clients
    together). A client draws its ``n`` of the ``N`` pooled samples at random; each category
    count is binomial, whose mean absolute deviation de Moivre gave in closed form, shrunk by
    the finite-population factor ``sqrt((N - n) / (N - 1))``; TV is half the sum over
    categories. This is the sampling noise raw TV shows even without any skew.
    """
    n = np.asarray(n, dtype=np.float64)[:, None]
    big_n = float(np.sum(pooled))
    if big_n <= 1:
        return np.zeros(n.shape[0])
    p = np.asarray(pooled, dtype=np.float64)[None, :] / big_n
    m = np.floor(n * p)
    inner = (p > 0) & (p < 1) & (n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mad = (
            np.log(2.0)
            + (n - m) * np.log1p(-p)
            + (m + 1) * np.log(p)
            + np.log(m + 1)
            + gammaln(n + 1)
            - gammaln(m + 2)
            - gammaln(np.maximum(n - m, 1.0))
        )
        mad = np.where(inner, np.exp(np.where(inner, log_mad, 0.0)), 0.0)
        share = np.where(n > 0, mad / n, 0.0)
    fpc = np.sqrt(np.clip((big_n - n[:, 0]) / (big_n - 1.0), 0.0, 1.0))
    return 0.5 * share.sum(axis=1) * fpc


# --- feature skew --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _poisson_js_table() -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(X / lam)]`` for ``X ~ Poisson(lam)`` on a log grid of ``lam`` (bits), where
    ``q * phi(p / q)`` is one bin's term of JS(p, q). Large ``lam`` tends to ``1 / (8 lam ln 2)``.
    """
    lams = np.logspace(-4, 4, 321)
    table = np.empty_like(lams)
    for i, lam in enumerate(lams):
        x = np.arange(0, int(lam + 15 * np.sqrt(lam) + 40))
        pmf = np.exp(x * np.log(lam) - lam - gammaln(x + 1))
        r = x / lam
        phi = 0.5 * (xlogy(r, 2 * r / (r + 1)) + np.log(2 / (r + 1))) / np.log(2.0)
        table[i] = float((pmf * phi).sum())
    return np.log(lams), table


def expected_js_terms(q: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """Expected per-bin JS terms (bits) of an ``n_eff``-sample empirical histogram against its
    source ``q``, summed over the last (bin) axis.

    Each bin count is approximated by a Poisson variable with the binomial's relative variance
    (``lam = n_eff q / (1 - q)``); for ``lam >> 1`` a bin adds ``(1 - q) / (8 n_eff ln 2)``, so
    the total tends to the classic ``(B_eff - 1) / (8 n ln 2)``; sparse bins (``n q`` small) add
    less, which keeps small clients from being over-corrected.
    """
    log_lams, table = _poisson_js_table()
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = n_eff * q / (1.0 - q)
        log_lam = np.log(lam)
    big = lam > np.exp(log_lams[-1])
    h = np.interp(np.nan_to_num(log_lam, nan=log_lams[0], neginf=log_lams[0]), log_lams, table)
    h = np.where(big, 1.0 / (8.0 * np.where(big, lam, 1.0) * np.log(2.0)), h)
    h = np.where(q > 0, h, 0.0)
    h = np.where(np.isinf(lam), 0.0, h)
    return (q * h).sum(axis=-1)


def feature_skew(summaries: Sequence[ClientSummary]) -> tuple[np.ndarray, np.ndarray]:
    """Per-client bias-corrected (squared mean shift, histogram JS), not yet clipped at 0.

    Both compare a client's class-conditional feature distribution p(x | y) with the pooled
    one, per feature on the signed-log scale, so label skew (a shift of p(y)) is not counted
    again. Features constant within a class across the whole federation are ignored for it.
    Clients without labelled samples get NaN.

    * squared shift: per feature and class, ``d = (mean_client - mean_pooled) / std_pooled``;
      ``d^2`` minus its expectation under IID sampling of the client's ``n`` of the class's
      ``N`` samples, ``(N - n) / (n (N - 1))``; averaged over features, then over classes
      weighted by the client's class shares.
    * JS: per feature and class, the JS divergence (bits) between the client's and the pooled
      histogram minus its expectation under IID sampling (:func:`expected_js_terms`, with the
      finite-population size ``n (N - 1) / (N - n)``); averaged over features, then over
      classes by class share.

    Both are unbiased around 0 for IID clients, so they may be slightly negative; callers clip
    at 0 only after averaging (clipping each feature or client first would leave a positive
    bias of the order of the sampling noise).
    """
    n_clients = len(summaries)
    if n_clients == 0:
        return np.zeros(0), np.zeros(0)
    d, bins = summaries[0].histogram.shape[1:]
    counts = np.stack([s.label_counts for s in summaries]).astype(np.float64)  # (C, 2)
    big_n = counts.sum(axis=0)  # (2,)
    pooled_sum = sum(s.feature_sum for s in summaries)
    pooled_sq = sum(s.feature_sumsq for s in summaries)
    pooled_hist = sum(s.histogram.astype(np.float64) for s in summaries)
    safe_n = np.maximum(big_n, 1.0)[:, None]
    mean = pooled_sum / safe_n
    std = np.sqrt(np.maximum(pooled_sq / safe_n - mean * mean, 0.0))
    valid = (std > _CONSTANT_STD * (1.0 + np.abs(mean))) & (big_n[:, None] > 0)  # (2, d)
    valid &= (pooled_hist > 0).sum(axis=-1) >= 2
    n_valid = np.maximum(valid.sum(axis=1), 1)  # (2,)
    q = pooled_hist / np.maximum(big_n, 1.0)[:, None, None]  # (2, d, B)

    shift = np.full(n_clients, np.nan)
    js = np.full(n_clients, np.nan)
    step = max(1, _SERVER_BLOCK_VALUES // max(2 * d * bins, 1))
    for start in range(0, n_clients, step):
        part = summaries[start : start + step]
        n = counts[start : start + step]  # (c, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.nan_to_num(n / n.sum(axis=1, keepdims=True))
            client_mean = np.stack([s.feature_sum for s in part]) / n[:, :, None]
            delta = (client_mean - mean) / np.where(valid, std, 1.0)
            expected = (big_n - n) / (n * np.maximum(big_n - 1.0, 1.0))  # (c, 2)
            sq = np.where(valid, delta * delta - expected[:, :, None], 0.0)
            p = np.stack([s.histogram for s in part]).astype(np.float64) / n[:, :, None, None]
            n_eff = np.where(big_n > n, n * (big_n - 1.0) / (big_n - n), np.inf)
        raw_js = js_bits(np.nan_to_num(p), q)  # (c, 2, d)
        bias = expected_js_terms(q[None], n_eff[:, :, None, None])
        gap = np.where(valid, raw_js - bias, 0.0)
        has = n > 0
        per_class_sq = np.where(has, np.nan_to_num(sq).sum(axis=2) / n_valid, 0.0)
        per_class_js = np.where(has, gap.sum(axis=2) / n_valid, 0.0)
        labelled = n.sum(axis=1) > 0
        shift[start : start + step] = np.where(labelled, (share * per_class_sq).sum(axis=1), np.nan)
        js[start : start + step] = np.where(labelled, (share * per_class_js).sum(axis=1), np.nan)
    return shift, js
