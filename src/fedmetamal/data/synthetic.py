"""The built-in synthetic malware dataset: EMBER-like static PE features with families and drift.

Real malware corpora are large, licensed or both, so the library ships a generator that mimics
what makes them hard for federated learning: feature columns of different kinds (heavy-tailed
sizes, bounded entropies, sparse hashed import indicators, histogram blocks), malware families of
very unequal size, benign software categories, label noise and temporal drift (family
signatures move to other features over time, and some families only appear late).

Every sample belongs to one *group*: a malware family or a benign category. Its features come
from a latent shift per feature, which each feature kind turns into an observed value (``exp``
of a normal for counts and sizes, a scaled sigmoid for entropies and ratios, a Bernoulli draw
for indicators, a softmax across a histogram block). The shift has three parts:

* traits: a few behaviour dimensions (packing, networking, GUI, ...) each move a sparse set of
  features. Every group sits at a point of this trait space and its samples scatter around it.
  Each malware family sits at a fixed distance from a benign *partner* category (droppers look
  like installers), so the classes interleave in trait space: a non-linear model separates
  them better than a linear one;
* own signature: a sparse set of features only this group shifts (family-specific APIs), plus
  a weaker shift that all malware shares. Part of it fades along ``first_seen`` while
  replacement features take over;
* global drift: features that change for every sample over time (software evolves).

Groups also move through trait space over time, and some families appear only late, so
temporal partitions meet novel families. ``drift`` scales all of this; ``signal`` scales every
class-related shift. Generation is vectorised and seeded by ``np.random.SeedSequence``: the
same configuration and seed give byte-identical data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedmetamal.config import SyntheticConfig
from fedmetamal.data.dataset import BENIGN, MALWARE, Dataset
from fedmetamal.errors import DataError

#: Smallest number of samples any family or benign category may hold.
MIN_GROUP_SIZE = 10
#: Start and length of the ``first_seen`` timeline.
TIMELINE_START = pd.Timestamp("2022-01-01", tz="UTC")
TIMELINE_DAYS = 730
#: Late families start after this fraction of the timeline.
LATE_START = 0.6

_BENIGN_NAMES = (
    "system",
    "office",
    "browser",
    "devtools",
    "games",
    "media",
    "security",
    "drivers",
    "utilities",
    "communication",
)

# Geometry, in latent units. Continuous kinds have unit latent noise, so a shift of 0.3 moves a
# feature by about 0.3 of its spread; indicators multiply shifts by _BINARY_GAIN (logit units).
_N_TRAITS = 6  # dimensions of the behaviour space that families and categories live in
_TRAIT_FRACTION = 0.05  # share of features one trait moves
_TRAIT_SCALE = 0.5  # typical |shift| per unit of trait at signal = 1
_TRAIT_SPREAD = 0.3  # spread of samples around their group's position in trait space
_TRAIT_DRIFT = 0.5  # how far (trait units) a group moves over the timeline at drift = 1
_PARTNER_DISTANCE = 1.8  # distance (trait units) of a family from its benign partner
_OWN_FRACTION = 0.03  # share of features in a group's own signature
_OWN_SCALE = 0.3  # typical |shift| of the own signature at signal = 1
_BINARY_GAIN = 4.0  # logit shift per unit of shift on indicator features
_MALWARE_COMMON_FRACTION = 0.02  # features shifted for all malware (packed, unsigned, ...)
_GLOBAL_DRIFT_FRACTION = 0.1  # features that drift for every sample (software evolves)


@dataclass(frozen=True)
class _Group:
    """A block of feature columns of one kind, named ``prefix.name`` then ``prefix.stem<i>``."""

    prefix: str
    kind: str
    size: int  # columns at the default width (2568)
    names: tuple[str, ...] = ()
    stem: str = ""
    # count: range of log-scale location and the largest share of exact zeros;
    # binary: mean and spread of the base logit
    loc: tuple[float, float] = (1.0, 6.0)
    zeros: float = 0.3
    present: int = 0  # count: leading columns that are never zero (a file always has a size)

    def column_names(self, n: int) -> list[str]:
        named = list(self.names[:n])
        extra = [f"{self.stem}{i}" for i in range(n - len(named))]
        return [f"{self.prefix}.{s}" for s in named + extra]


_DATA_DIRECTORIES = (
    "export_table",
    "import_table",
    "resource_table",
    "exception_table",
    "certificate_table",
    "base_relocation_table",
    "debug",
    "architecture",
    "global_ptr",
    "tls_table",
    "load_config_table",
    "bound_import",
    "iat",
    "delay_import_descriptor",
    "clr_runtime_header",
)

_GROUPS: tuple[_Group, ...] = (
    _Group(
        "general",
        "count",
        8,
        ("size", "vsize", "imports", "exports", "symbols", "resources", "debug_size", "overlay"),
        "count_",
        loc=(3.0, 13.0),
        zeros=0.3,
        present=2,
    ),
    _Group(
        "general",
        "binary",
        6,
        ("has_debug", "has_relocations", "has_resources", "has_signature", "has_tls", "is_dll"),
        "flag_",
        loc=(0.0, 1.0),
    ),
    _Group(
        "general",
        "ratio",
        4,
        ("overlay_ratio", "code_ratio", "data_ratio", "resource_ratio"),
        "ratio_",
    ),
    _Group(
        "header",
        "count",
        22,
        (
            "sizeof_code",
            "sizeof_headers",
            "sizeof_image",
            "sizeof_init_data",
            "sizeof_uninit_data",
            "sizeof_heap_commit",
            "sizeof_heap_reserve",
            "sizeof_stack_commit",
            "sizeof_stack_reserve",
            "entry_point",
            "base_of_code",
            "image_base",
            "checksum",
            "major_linker_version",
            "minor_linker_version",
            "major_os_version",
            "minor_os_version",
            "major_image_version",
            "minor_image_version",
            "major_subsystem_version",
            "minor_subsystem_version",
            "n_rva_and_sizes",
        ),
        "field_",
        loc=(1.0, 12.0),
        zeros=0.2,
        present=3,
    ),
    _Group("header", "binary", 40, (), "characteristics_hash_", loc=(-2.0, 1.5)),
    _Group("byteentropy", "hist", 256),
    _Group("histogram", "hist", 256),
    _Group(
        "strings",
        "count",
        7,
        ("n", "avlength", "printables", "paths", "urls", "registry", "mz"),
        "count_",
        loc=(1.0, 9.0),
        zeros=0.4,
        present=3,
    ),
    _Group("strings", "entropy", 1, ("entropy",), "entropy_"),
    _Group("strings", "hist", 96, (), "printabledist_"),
    _Group(
        "section",
        "count",
        172,
        ("n", "n_zero_size", "n_empty_name", "n_rx", "n_w"),
        "size_hash_",
        loc=(1.0, 12.0),
        zeros=0.7,
        present=1,
    ),
    _Group(
        "section",
        "entropy",
        83,
        ("entropy_max", "entropy_mean", "entropy_min"),
        "entropy_hash_",
    ),
    _Group("imports", "binary", 1280, (), "hash_", loc=(-4.0, 1.5)),
    _Group("exports", "binary", 128, (), "hash_", loc=(-5.0, 1.0)),
    _Group(
        "datadirectories",
        "count",
        30,
        tuple(f"{d}_{part}" for d in _DATA_DIRECTORIES for part in ("size", "rva")),
        "entry_",
        loc=(4.0, 12.0),
        zeros=0.5,
    ),
    _Group("richheader", "count", 179, (), "comp_", loc=(0.5, 4.0), zeros=0.85),
)

DEFAULT_WIDTH = sum(g.size for g in _GROUPS)  # 2568, the EMBER feature-version-3 width


def group_sizes(n_features: int) -> list[int]:
    """Columns per feature group at width ``n_features``: one each, the rest proportionally.

    At the default width this gives the listed sizes exactly (largest-remainder rounding).
    """
    k = len(_GROUPS)
    if n_features < k:
        raise DataError(
            f"The synthetic generator needs at least {k} features (one per feature group), "
            f"got {n_features}.",
            f"Set dataset.synthetic.n_features to {k} or more.",
        )
    weights = np.array([g.size - 1 for g in _GROUPS], dtype=np.float64)
    extra = n_features - k
    quota = weights / weights.sum() * extra
    sizes = np.floor(quota).astype(np.int64)
    left = extra - int(sizes.sum())
    order = np.argsort(-(quota - sizes), kind="stable")
    sizes[order[:left]] += 1
    return [int(s) + 1 for s in sizes]


def feature_names(n_features: int) -> list[str]:
    """Names of the generated columns at width ``n_features`` (``general.size``, ...)."""
    names: list[str] = []
    for g, n in zip(_GROUPS, group_sizes(n_features), strict=True):
        names.extend(g.column_names(n))
    return names


def _check(cfg: SyntheticConfig) -> tuple[int, int]:
    """Malware and benign counts, or a DataError naming the setting to change."""
    n_mal = round(cfg.n_samples * cfg.malware_fraction)
    n_ben = cfg.n_samples - n_mal
    need_mal = cfg.n_families * MIN_GROUP_SIZE
    need_ben = cfg.n_benign_categories * MIN_GROUP_SIZE
    if n_mal < need_mal or n_ben < need_ben:
        need = max(
            int(np.ceil(need_mal / cfg.malware_fraction)),
            int(np.ceil(need_ben / (1.0 - cfg.malware_fraction))),
        )
        raise DataError(
            f"{cfg.n_samples} synthetic samples cannot hold {cfg.n_families} malware families "
            f"and {cfg.n_benign_categories} benign categories with at least {MIN_GROUP_SIZE} "
            f"samples each ({n_mal} malware, {n_ben} benign at malware_fraction "
            f"{cfg.malware_fraction}).",
            f"Raise dataset.synthetic.n_samples to at least {need + 1}, or lower n_families / "
            "n_benign_categories.",
        )
    group_sizes(cfg.n_features)
    return n_mal, n_ben


def _split_sizes(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split by ``weights`` with at least MIN_GROUP_SIZE each (largest remainder)."""
    free = total - MIN_GROUP_SIZE * len(weights)
    quota = weights / weights.sum() * free
    sizes = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - sizes), kind="stable")
    sizes[order[: free - int(sizes.sum())]] += 1
    return sizes + MIN_GROUP_SIZE


@dataclass
class _Structure:
    """Latent shift of sample i in group g at time t (rows: groups, columns: features):

    ``(centre[g] + t * velocity[g] + spread) @ loadings + own[g] + t * own_drift[g]
    + (t - 1/2) * global_drift``.
    """

    loadings: np.ndarray  # (traits, d)
    centre: np.ndarray  # (groups, traits)
    velocity: np.ndarray  # (groups, traits)
    own: np.ndarray  # (groups, d)
    own_drift: np.ndarray  # (groups, d)
    global_drift: np.ndarray  # (d,)


def _structure(
    rng: np.random.Generator, cfg: SyntheticConfig, kinds: np.ndarray, partner: np.ndarray
) -> _Structure:
    """Trait loadings, group positions and signatures; groups ``< n_families`` are malware."""
    d = cfg.n_features
    nf = cfg.n_families
    n_groups = nf + cfg.n_benign_categories
    is_binary = kinds == "binary"
    gain = np.where(is_binary, _BINARY_GAIN, 1.0)

    def shifts(cols: np.ndarray, scale: float) -> np.ndarray:
        mag = cfg.signal * scale * rng.uniform(0.5, 1.5, cols.size)
        # indicators are mostly switched on (family-specific APIs), rarely off
        p_up = np.where(is_binary[cols], 0.85, 0.5)
        sign = np.where(rng.random(cols.size) < p_up, 1.0, -1.0)
        return (mag * sign * gain[cols]).astype(np.float32)

    def pick(fraction: float) -> np.ndarray:
        return rng.choice(d, size=min(d, max(2, round(fraction * d))), replace=False)

    loadings = np.zeros((_N_TRAITS, d), np.float32)
    for r in range(_N_TRAITS):
        cols = pick(_TRAIT_FRACTION)
        loadings[r, cols] = shifts(cols, _TRAIT_SCALE)
    centre = rng.normal(0.0, 1.0, (n_groups, _N_TRAITS))
    # a family sits near its benign partner (droppers look like installers): class is not a
    # half-space of the trait space, so linear models fall behind non-linear ones
    away = rng.normal(0.0, 1.0, (nf, _N_TRAITS))
    away /= np.linalg.norm(away, axis=1, keepdims=True)
    centre[:nf] = centre[partner] + _PARTNER_DISTANCE * away
    velocity = rng.normal(0.0, _TRAIT_DRIFT * cfg.drift, (n_groups, _N_TRAITS))

    own = np.zeros((n_groups, d), np.float32)
    own_drift = np.zeros((n_groups, d), np.float32)
    move_share = min(1.0, 0.5 * cfg.drift)
    for g in range(n_groups):
        cols = pick(_OWN_FRACTION)
        own[g, cols] = shifts(cols, _OWN_SCALE)
        # part of the signature fades along the timeline while other features take over
        n_move = round(move_share * cols.size)
        if n_move:
            dest = rng.choice(d, size=n_move, replace=False)
            own_drift[g, cols[:n_move]] -= own[g, cols[:n_move]]
            own_drift[g, dest] += shifts(dest, _OWN_SCALE)
    # what most malware shares (packing, no signature, ...), weaker than family signatures
    common = pick(_MALWARE_COMMON_FRACTION)
    own[:nf, common] += 0.5 * shifts(common, _OWN_SCALE)
    glob = pick(_GLOBAL_DRIFT_FRACTION)
    global_drift = np.zeros(d, np.float32)
    global_drift[glob] = (cfg.drift * rng.normal(0.0, 0.8, glob.size) * gain[glob]).astype(
        np.float32
    )
    return _Structure(loadings, centre, velocity, own, own_drift, global_drift)


def _timeline(
    rng: np.random.Generator, cfg: SyntheticConfig, n_groups: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Activity window ``[start, end]`` (fractions of the timeline) per group; late families."""
    start = np.zeros(n_groups)
    end = np.ones(n_groups)
    nf = cfg.n_families
    n_late = min(nf - 1, round(nf * min(0.25 * cfg.drift, 0.5)))
    late = sorted(int(i) for i in rng.choice(nf, size=n_late, replace=False))
    start[:nf] = rng.uniform(0.0, 0.25, nf)
    end[:nf] = rng.uniform(0.75, 1.0, nf)
    start[late] = rng.uniform(LATE_START, 0.8, n_late)
    end[late] = 1.0
    return start, end, late


def _observe(
    rng_params: np.random.Generator,
    rng_noise: np.random.Generator,
    group: _Group,
    latent_shift: np.ndarray,
) -> np.ndarray:
    """Observed columns of one feature group from per-sample latent shifts (n x width).

    Per-feature parameters come from ``rng_params`` and are drawn before any noise, so they do
    not depend on the number of samples.
    """
    n, w = latent_shift.shape
    if group.kind == "binary":
        base = rng_params.normal(group.loc[0], group.loc[1], w).astype(np.float32)
        u = rng_noise.random((n, w), dtype=np.float32)
        # u < sigmoid(base + shift), without dividing
        return (u * (1.0 + np.exp(-(base + latent_shift))) < 1.0).astype(np.float32)
    if group.kind == "count":
        loc = rng_params.uniform(group.loc[0], group.loc[1], w).astype(np.float32)
        scale = rng_params.uniform(0.4, 1.4, w).astype(np.float32)
        p_zero = rng_params.uniform(0.0, group.zeros, w).astype(np.float32)
        p_zero[: group.present] = 0.0
        noise = rng_noise.standard_normal((n, w), dtype=np.float32)
        log_value = np.minimum(loc + scale * (noise + latent_shift), 30.0)
        value = np.floor(np.exp(log_value))
        value[rng_noise.random((n, w), dtype=np.float32) < p_zero] = 0.0  # absent: exactly 0
        value[:, : group.present] = np.maximum(value[:, : group.present], 1.0)
        return value
    if group.kind in ("entropy", "ratio"):
        centre = rng_params.normal(0.0, 1.0, w).astype(np.float32)
        top = np.float32(8.0 if group.kind == "entropy" else 1.0)
        noise = rng_noise.standard_normal((n, w), dtype=np.float32)
        return top / (1.0 + np.exp(-(centre + 0.8 * noise + latent_shift)))
    # hist: softmax of log-weights across the block, so each row sums to 1
    base = rng_params.normal(0.0, 1.0, w).astype(np.float32)
    noise = rng_noise.standard_normal((n, w), dtype=np.float32)
    logw = base + 0.6 * noise + latent_shift
    logw -= logw.max(axis=1, keepdims=True)
    weight = np.exp(logw)
    return weight / weight.sum(axis=1, keepdims=True)


def _sha256(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` fake SHA-256 hex digests, vectorised: bytes -> ASCII hex via a lookup table."""
    raw = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 64), np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 15]
    return hexed.view("S64").ravel().astype(str).astype(object)


def generate(cfg: SyntheticConfig, seed: int) -> Dataset:
    """A synthetic EMBER-like dataset; identical bytes for identical ``cfg`` and ``seed``.

    Metadata: ``family`` (malware family, ``None`` for benign rows), ``category`` (benign
    category, ``None`` for malware), ``first_seen`` (UTC timestamps over two years) and
    ``sha256``. Labels carry ``label_noise``; ``family`` / ``category`` tell the true class.
    """
    n_mal, n_ben = _check(cfg)
    nf, nb = cfg.n_families, cfg.n_benign_categories
    n_groups = nf + nb
    n, d = cfg.n_samples, cfg.n_features
    rng_struct, rng_samples, rng_features, rng_meta = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    # --- structure: feature kinds, group sizes, signatures, activity windows
    widths = group_sizes(d)
    kinds = np.repeat([g.kind for g in _GROUPS], widths)
    partner = nf + rng_struct.permutation(np.arange(nf) % nb)  # benign partners, balanced
    st = _structure(rng_struct, cfg, kinds, partner)
    start, end, late = _timeline(rng_struct, cfg, n_groups)
    fam_weight = 1.0 / np.arange(1, nf + 1) ** 1.1  # Zipf-like family sizes
    fam_sizes = _split_sizes(n_mal, rng_struct.permutation(fam_weight))
    ben_sizes = _split_sizes(n_ben, 1.0 / np.arange(1, nb + 1) ** 0.5)

    # --- samples: group, time, position in trait space; rows in random order
    group = rng_samples.permutation(np.repeat(np.arange(n_groups), np.r_[fam_sizes, ben_sizes]))
    t = start[group] + (end[group] - start[group]) * rng_samples.random(n)
    traits = st.centre[group] + t[:, None] * st.velocity[group]
    traits += _TRAIT_SPREAD * rng_samples.standard_normal((n, _N_TRAITS))
    traits = traits.astype(np.float32)
    malware = group < nf
    y_true = np.where(malware, MALWARE, BENIGN).astype(np.int8)
    n_flip = round(cfg.label_noise * n)
    flipped = rng_samples.choice(n, size=n_flip, replace=False)
    y = y_true.copy()
    y[flipped] = 1 - y[flipped]

    # --- features, one group of columns at a time to bound memory. Every part of the latent
    # shift is linear in (traits, group, t * group, t - 1/2), so one product gives all of it.
    design = np.zeros((n, _N_TRAITS + 2 * n_groups + 1), np.float32)
    design[:, :_N_TRAITS] = traits
    rows = np.arange(n)
    design[rows, _N_TRAITS + group] = 1.0
    design[rows, _N_TRAITS + n_groups + group] = t
    design[:, -1] = t - 0.5
    weights = np.vstack([st.loadings, st.own, st.own_drift, st.global_drift[None, :]])
    X = np.empty((n, d), np.float32)
    col = 0
    for spec, w in zip(_GROUPS, widths, strict=True):
        cols = slice(col, col + w)
        X[:, cols] = _observe(rng_struct, rng_features, spec, design @ weights[:, cols])
        col += w

    # --- metadata
    fam_names = [f"family_{i:02d}" for i in range(nf)]
    cat_names = [
        _BENIGN_NAMES[i] if i < len(_BENIGN_NAMES) else f"category_{i:02d}" for i in range(nb)
    ]
    family = np.array([*fam_names, *([None] * nb)], dtype=object)[group]
    category = np.array([*([None] * nf), *cat_names], dtype=object)[group]
    seconds = np.round(t * TIMELINE_DAYS * 86400).astype("int64")
    first_seen = TIMELINE_START + pd.to_timedelta(seconds, unit="s")
    metadata = pd.DataFrame(
        {
            "family": pd.Series(family, dtype=object),
            "category": pd.Series(category, dtype=object),
            "first_seen": first_seen,
            "sha256": pd.Series(_sha256(rng_meta, n), dtype=object),
        }
    )
    info = {
        "source": "synthetic",
        "seed": int(seed),
        "config": cfg.model_dump(),
        "late_families": [fam_names[i] for i in late],
        "label_flips": int(n_flip),
        "feature_groups": {f"{g.prefix}:{g.kind}": w for g, w in zip(_GROUPS, widths, strict=True)},
    }
    return Dataset(
        X=X, y=y, feature_names=feature_names(d), metadata=metadata, name="synthetic", info=info
    )
