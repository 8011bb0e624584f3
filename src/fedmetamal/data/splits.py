"""How samples are split: exact rounding, stratified draws, and one assigner per partition kind.

Everything here works on integer index arrays into one :class:`Dataset` and draws only from the
``numpy.random.Generator`` it is given, so a partition is reproducible from its seed alone.
:mod:`fedmetamal.data.partition` combines these into a federation and enforces the size guard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fedmetamal.config import PartitionConfig
from fedmetamal.data.dataset import MALWARE, UNLABELLED, Dataset
from fedmetamal.errors import PartitionError

#: Metadata column whose values split benign samples in ``family-dirichlet``.
BENIGN_CATEGORY_COLUMN = "category"

Parts = list[np.ndarray]
Extra = dict[str, Any]
Gen = np.random.Generator


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (Python's ``round`` rounds halves to even)."""
    return int(np.floor(x + 0.5))


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` that add up to ``total`` exactly.

    Plain rounding of each share can lose or invent a sample; the largest-remainder method
    floors every share and hands the leftover units to the largest fractional parts.
    """
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return np.zeros(w.shape, dtype=np.int64)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable sort: equal remainders go to the earlier entry, so the result is deterministic.
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def stratified_sample(
    index: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` entries of ``index`` drawn at random with each label's share kept (sorted)."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = largest_remainder(counts, n)
    picked = [
        rng.choice(index[labels == c], size=q, replace=False)
        for c, q in zip(classes, quotas, strict=True)
        if q > 0
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def holdout_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The global held-out test set: a label-stratified share of the labelled samples.

    Unlabelled samples cannot be scored, so they always stay on the training side. Returns
    ``(rest, test)`` as sorted indices into ``y``.
    """
    everything = np.arange(y.shape[0], dtype=np.int64)
    labelled = everything[y != UNLABELLED]
    n_test = round_half_up(fraction * labelled.size)
    if n_test == 0 or n_test >= labelled.size:
        raise PartitionError(
            f"A test_fraction of {fraction} of {labelled.size} labelled samples gives a "
            f"global test set of {n_test} samples, leaving "
            f"{labelled.size - n_test} labelled samples for training.",
            "Use a dataset with more labelled samples or a test_fraction between 0 and 1 "
            "that leaves samples on both sides.",
        )
    test = stratified_sample(labelled, y[labelled], n_test, rng)
    rest = np.setdiff1d(everything, test, assume_unique=True)
    return rest, test


def client_split(
    index: np.ndarray,
    y: np.ndarray,
    fraction: float,
    min_train: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's samples ``index`` (into ``y``) into local train and test parts.

    The test part is a label-stratified share of the client's labelled samples, capped so that
    at least ``min_train`` samples stay for training: a tiny client gives up its local test set
    before it gives up the training data the size guard promised it.
    """
    index = np.sort(np.asarray(index, dtype=np.int64))
    labelled = index[y[index] != UNLABELLED]
    n_test = min(round_half_up(fraction * labelled.size), index.size - min_train)
    if n_test <= 0:
        return index, np.empty(0, dtype=np.int64)
    test = stratified_sample(labelled, y[labelled], n_test, rng)
    return np.setdiff1d(index, test, assume_unique=True), test


def even_sizes(n: int, parts: int) -> np.ndarray:
    """The sizes ``np.array_split`` cuts ``n`` items into: equal, the first ``n % parts`` +1."""
    return n // parts + (np.arange(parts) < n % parts).astype(np.int64)


def split_by_proportions(index: np.ndarray, proportions: np.ndarray) -> list[np.ndarray]:
    """Cut (already shuffled) ``index`` into consecutive pieces sized by ``proportions``."""
    counts = largest_remainder(proportions, index.size)
    return np.split(index, np.cumsum(counts)[:-1])


def dirichlet_proportions(alpha: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Proportions ~ Dir(alpha, ..., alpha) over ``n`` parts.

    For very small ``alpha`` every gamma draw can underflow to zero; the limit of that case is
    one part taking everything, so that is what a degenerate draw becomes.
    """
    p = rng.dirichlet(np.full(n, alpha))
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        p = np.zeros(n)
        p[rng.integers(n)] = 1.0
    return p


# --- class keys ----------------------------------------------------------------------------


def _label_keys(y: np.ndarray) -> np.ndarray:
    """One class name per sample for label skew: ``malware`` or ``benign``."""
    return np.where(y == MALWARE, "malware", "benign").astype(object)


def _family_keys(dataset: Dataset, index: np.ndarray, benign_categories: bool) -> np.ndarray:
    """One class name per sample: its malware family, or ``benign`` / ``benign:<category>``.

    Metadata names the sample's true group, so it wins over a (possibly noisy) label: a sample
    with a family is that family, one with a benign category is benign. Only without either does
    the label decide: ``unknown`` for malware without a family, ``benign`` otherwise.
    """
    y = dataset.y[index]
    family = _names(dataset, "family", index)
    category = _names(dataset, BENIGN_CATEGORY_COLUMN, index)
    benign = np.full(index.size, "benign", dtype=object)
    if benign_categories:
        benign = np.where(category != "", "benign:" + category, benign)
    by_label = np.where((y == MALWARE) & (category == ""), "unknown", benign)
    return np.where(family != "", family, by_label)


def _names(dataset: Dataset, column: str, index: np.ndarray) -> np.ndarray:
    """A metadata column as stripped strings, ``""`` where it is missing or absent."""
    if not dataset.has_metadata(column):
        return np.full(index.size, "", dtype=object)
    values = pd.Series(dataset.meta(column)[index])
    names = values.astype(str).str.strip().where(values.notna(), "")
    return names.to_numpy(dtype=object)


# --- assignment of samples to clients, one function per partition kind -----------------------


def _spread(index: np.ndarray, parts: list[list[np.ndarray]], rng: Gen) -> None:
    """Deal ``index`` out uniformly at random over all clients (appends to ``parts``)."""
    for i, piece in enumerate(np.array_split(rng.permutation(index), len(parts))):
        parts[i].append(piece)


def _joined(parts: list[list[np.ndarray]]) -> Parts:
    return [np.concatenate([np.empty(0, dtype=np.int64), *p]).astype(np.int64) for p in parts]


def _dirichlet_by_class(
    index: np.ndarray,
    keys: np.ndarray,
    labelled: np.ndarray,
    cfg: PartitionConfig,
    rng: Gen,
) -> Parts:
    """Class-wise Dirichlet: each class's samples split over clients by its own Dir(alpha) draw.

    The label-distribution skew of NIID-Bench (Li et al. 2022, after Yurochkin et al. 2019);
    client sizes follow the draws, so small ``alpha`` can leave clients (nearly) empty.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(cfg.clients)]
    for c in np.unique(keys[labelled]):
        members = rng.permutation(index[labelled & (keys == c)])
        p = dirichlet_proportions(cfg.alpha, cfg.clients, rng)
        for i, piece in enumerate(split_by_proportions(members, p)):
            parts[i].append(piece)
    _spread(index[~labelled], parts, rng)
    return _joined(parts)


def class_mix(alpha: float, prior: np.ndarray, rng: Gen) -> np.ndarray:
    """One client's class mix q ~ Dir(alpha * prior) (Hsu, Qi & Brown 2019).

    Should a draw come back degenerate (gamma-based draws can underflow to all zeros for tiny
    ``alpha * prior``), it becomes the limit of that case: a one-hot mix on class k with
    probability ``prior[k]``.
    """
    prior = np.asarray(prior, dtype=np.float64)
    q = rng.dirichlet(alpha * prior)
    if not np.all(np.isfinite(q)) or q.sum() <= 0:
        q = np.zeros(prior.size)
        q[rng.choice(prior.size, p=prior / prior.sum())] = 1.0
    return q


def mix_quotas(mix: np.ndarray, left: np.ndarray, need: int) -> np.ndarray:
    """How many samples of each class a client of size ``need`` takes from ``left``.

    Shares follow ``mix`` (exactly, by largest remainder); a class that runs out passes the
    client's remaining draws to the classes that still have samples, in proportion to ``mix``
    restricted to them (or, where the mix puts no weight on any of them, to what is left).
    Deterministic; requires ``need <= left.sum()``.
    """
    left = np.asarray(left, dtype=np.int64).copy()
    take = np.zeros(left.size, dtype=np.int64)
    need = int(need)
    while need > 0:
        w = np.where(left > 0, mix, 0.0)
        if w.sum() <= 0:
            w = left.astype(np.float64)
        got = np.minimum(largest_remainder(w, need), left)
        take += got
        left -= got
        need -= int(got.sum())
    return take


def _dirichlet_by_client(
    index: np.ndarray,
    keys: np.ndarray,
    labelled: np.ndarray,
    cfg: PartitionConfig,
    rng: Gen,
) -> Parts:
    """Client-wise Dirichlet: equal client sizes, each client's class mix from Dir(alpha * p).

    The variant of Hsu, Qi & Brown (2019), also used by pfl-research: ``p`` is the pooled class
    distribution of the labelled training samples. Clients take their samples without
    replacement, in a seeded random order so the last ones are not always left with whatever
    remains. Every client gets an equal share of all training samples (sizes differ by at most
    one); unlabelled samples are dealt out uniformly and the labelled ones fill each client up.
    """
    members_index = index[labelled]
    classes, codes = np.unique(keys[labelled], return_inverse=True)
    pools = [rng.permutation(members_index[codes == c]) for c in range(classes.size)]
    left = np.array([pool.size for pool in pools], dtype=np.int64)
    prior = left / left.sum()
    # _spread below deals the unlabelled samples out in even_sizes too, so the totals stay even;
    # every need is >= 0, as both cuts give their extras to the first clients.
    needs = even_sizes(index.size, cfg.clients) - even_sizes(int((~labelled).sum()), cfg.clients)
    mixes = [class_mix(cfg.alpha, prior, rng) for _ in range(cfg.clients)]
    used = np.zeros(classes.size, dtype=np.int64)
    parts: list[list[np.ndarray]] = [[] for _ in range(cfg.clients)]
    for i in rng.permutation(cfg.clients):
        take = mix_quotas(mixes[i], left, needs[i])
        for c in np.flatnonzero(take):
            parts[i].append(pools[c][used[c] : used[c] + take[c]])
        used += take
        left -= take
    _spread(index[~labelled], parts, rng)
    return _joined(parts)


def _label_skew(
    index: np.ndarray,
    keys: np.ndarray,
    labelled: np.ndarray,
    cfg: PartitionConfig,
    rng: Gen,
) -> Parts:
    """The Dirichlet label skew ``cfg.dirichlet_over`` names: over ``classes`` or ``clients``."""
    if cfg.dirichlet_over == "clients":
        return _dirichlet_by_client(index, keys, labelled, cfg, rng)
    return _dirichlet_by_class(index, keys, labelled, cfg, rng)


def _iid(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Shuffled and cut into equal parts (sizes differ by at most one)."""
    return list(np.array_split(rng.permutation(index), cfg.clients)), {}


def _dirichlet(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Label skew over malware and benign, class-wise or client-wise (``dirichlet_over``)."""
    y = dataset.y[index]
    return _label_skew(index, _label_keys(y), y != UNLABELLED, cfg, rng), {}


def _family_dirichlet(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Family skew over malware families and benign categories, class-wise or client-wise."""
    keys = _family_keys(dataset, index, benign_categories=True)
    labelled = dataset.y[index] != UNLABELLED
    return _label_skew(index, keys, labelled, cfg, rng), {
        "classes": sorted(set(keys[labelled].tolist()))
    }


def _quantity(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Quantity skew: IID content, client sizes from Dir(alpha) or LogNormal(0, sigma) shares.

    Each client first gets ``min_client_size`` samples and the skewed shares split the rest, so
    federations of many clients satisfy the size guard without endless redraws.
    """
    if cfg.quantity == "dirichlet":
        p = dirichlet_proportions(cfg.alpha, cfg.clients, rng)
    else:
        p = rng.lognormal(0.0, cfg.sigma, cfg.clients)
    reserve = min(cfg.min_client_size, index.size // cfg.clients)
    counts = reserve + largest_remainder(p, index.size - reserve * cfg.clients)
    return np.split(rng.permutation(index), np.cumsum(counts)[:-1]), {}


def _owners(classes: list[str], cfg: PartitionConfig, rng: Gen) -> list[list[str]]:
    """``k`` distinct classes per client; every class gets an owner while there are slots."""
    order = [classes[j] for j in rng.permutation(len(classes))]
    held = [[order[i % len(order)]] for i in range(cfg.clients)]
    unowned = set(classes) - {h[0] for h in held}
    for mine in held:
        for _ in range(cfg.k - 1):
            free = [c for c in classes if c not in mine]
            preferred = [c for c in free if c in unowned]
            pool = preferred or free
            pick = pool[int(rng.integers(len(pool)))]
            mine.append(pick)
            unowned.discard(pick)
    return held


def _label_quantity(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Each client holds exactly ``k`` classes (NIID-Bench's #C=k); owners share a class evenly."""
    y = dataset.y[index]
    labelled = y != UNLABELLED
    keys = _label_keys(y) if cfg.by == "label" else _family_keys(dataset, index, False)
    classes = sorted(set(keys[labelled].tolist()))
    if cfg.k > len(classes):
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise PartitionError(
            f"Partition 'label-quantity' asks for k={cfg.k} classes per client, but the "
            f"training data has only {len(classes)} {cfg.by} classes ({shown}).",
            f"Use k <= {len(classes)}"
            + (", or by: family to count malware families." if cfg.by == "label" else "."),
        )
    held = _owners(classes, cfg, rng)
    parts: list[list[np.ndarray]] = [[] for _ in range(cfg.clients)]
    dropped = 0
    for c in classes:
        members = rng.permutation(index[labelled & (keys == c)])
        owners = [i for i, mine in enumerate(held) if c in mine]
        if not owners:
            dropped += members.size
        for i, piece in zip(owners, np.array_split(members, max(len(owners), 1)), strict=False):
            parts[i].append(piece)
    _spread(index[~labelled], parts, rng)
    owned = {c for mine in held for c in mine}
    return _joined(parts), {
        "client_classes": [sorted(mine) for mine in held],
        "unowned_classes": [c for c in classes if c not in owned],
        "dropped_samples": dropped,
    }


def _time_keys(values: np.ndarray) -> np.ndarray:
    """``first_seen`` as sortable numbers: numeric values as they are, anything else as dates."""
    s = pd.Series(values)
    missing = int(s.isna().sum())
    if missing:
        raise PartitionError(
            f"Partition 'temporal' found {missing} training samples without a first_seen value.",
            "Drop those samples or choose another partition.",
        )
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64)
    try:
        return pd.to_datetime(s, utc=True, format="mixed").astype("int64").to_numpy()
    except (ValueError, TypeError) as err:
        raise PartitionError(
            f"Partition 'temporal' cannot read first_seen values as dates or numbers "
            f"(e.g. {s.iloc[0]!r}): {err}",
            "Store first_seen as dates (e.g. 2021-03-01) or as numbers such as Unix times.",
        ) from None


def _temporal(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """Consecutive, equal-sized windows of first_seen: client 0 oldest, the last newest."""
    raw = dataset.meta("first_seen")[index]
    order = np.argsort(_time_keys(raw), kind="stable")
    windows = np.array_split(order, cfg.clients)
    return [index[w] for w in windows], {
        "windows": [[str(raw[w[0]]), str(raw[w[-1]])] if w.size else [] for w in windows]
    }


def _natural(
    dataset: Dataset, index: np.ndarray, cfg: PartitionConfig, rng: Gen
) -> tuple[Parts, Extra]:
    """One client per distinct value of a metadata column (e.g. each collection source)."""
    column = pd.Series(dataset.meta(cfg.column))
    if column.isna().any():
        raise PartitionError(
            f"Partition 'natural' by '{cfg.column}': {int(column.isna().sum())} samples have "
            "no value, so they belong to no client.",
            f"Fill or drop the missing '{cfg.column}' values, or choose another column.",
        )
    names, codes = np.unique(column.astype(str).to_numpy(), return_inverse=True)
    if cfg.clients != names.size:
        shown = ", ".join(names[:12].tolist()) + (", ..." if names.size > 12 else "")
        raise PartitionError(
            f"Partition 'natural' by '{cfg.column}' makes one client per value: "
            f"{names.size} clients ({shown}), but clients = {cfg.clients}.",
            f"Set clients: {names.size}.",
        )
    codes = codes[index]
    return [index[codes == i] for i in range(names.size)], {"client_names": names.tolist()}


Assigner = Callable[[Dataset, np.ndarray, PartitionConfig, Gen], tuple[Parts, Extra]]

ASSIGNERS: dict[str, Assigner] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
    "label-quantity": _label_quantity,
    "family-dirichlet": _family_dirichlet,
    "quantity": _quantity,
    "feature-noise": _iid,
    "feature-subset": _iid,
    "temporal": _temporal,
    "natural": _natural,
}
#: Partitions whose sizes come from random draws: redrawn until the size guard holds. (With
#: ``dirichlet_over: clients`` the sizes are equal, so the first draw always passes.)
REDRAWN = frozenset({"dirichlet", "family-dirichlet", "quantity"})
