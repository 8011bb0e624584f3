"""Which federations the non-IID validation study trains, and how each one is named.

A measure of heterogeneity is only useful if it predicts how much FedAvg suffers, so the study
needs federations that span every kind of skew (label, family, quantity, feature, and mixes) from
almost IID to extreme. The ``full`` preset is that list; ``quick`` keeps ~8 federations that still
span the range, for tests and smoke checks. Names come from the resolved partition config, so the
same federation always gets the same file name and the same resumable id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fedmetamal.config import PartitionConfig
from fedmetamal.errors import ConfigError
from fedmetamal.experiments.naming import stable_hash

Preset = Literal["full", "quick"]
PRESETS: tuple[str, ...] = ("full", "quick")

#: Dirichlet concentrations of the label-skew sweep (from one class per client to IID-like).
DIRICHLET_ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)
#: Class-wise Dirichlet draws (label skew coupled with quantity skew).
CLASSWISE_ALPHAS = (0.1, 0.3, 1.0, 3.0)


@dataclass
class StudyEntry:
    """One federation of the study: a partial ``partition`` config and the run seed."""

    partition: dict[str, Any]
    seed: int = 0
    needs_family: bool = field(default=False, compare=False)


def _e(seed: int = 0, **partition: Any) -> StudyEntry:
    needs = partition.get("kind") == "family-dirichlet" or partition.get("by") == "family"
    return StudyEntry(partition=partition, seed=seed, needs_family=needs)


def _full() -> list[StudyEntry]:
    """48 federations (52 with family metadata).

    The label-skew sweep uses the client-wise Dirichlet draw (equal client sizes, each client's
    class mix from Dir(alpha·p)), which stays buildable down to alpha 0.01 with two classes and
    keeps label skew apart from quantity skew; four class-wise draws add the coupled label and
    quantity skew that draw produces.
    """
    sweep = {"kind": "dirichlet", "dirichlet_over": "clients"}
    out = [_e(s, **sweep, alpha=a) for a in DIRICHLET_ALPHAS for s in (0, 1)]
    out += [_e(kind="dirichlet", alpha=a) for a in CLASSWISE_ALPHAS]
    out += [_e(s, kind="label-quantity", k=1) for s in (0, 1)]
    out += [_e(s, kind="label-quantity", k=2, by="family") for s in (0, 1)]
    out += [_e(kind="quantity", quantity="dirichlet", alpha=a) for a in (0.1, 0.5)]
    out += [_e(kind="quantity", quantity="lognormal", sigma=s) for s in (1.0, 2.0)]
    out += [_e(kind="feature-noise", noise=n) for n in (0.25, 0.5, 1.0, 2.0)]
    out += [_e(kind="feature-subset", subset_fraction=f) for f in (0.3, 0.5, 0.7)]
    out += [
        _e(s, **sweep, alpha=a, feature_skew="noise", noise=n)
        for s in (0, 1)
        for a in (0.1, 1.0)
        for n in (0.5, 1.0)
    ]
    out.append(_e(**sweep, alpha=0.5, feature_skew="subset", subset_fraction=0.5))
    out += [_e(kind="family-dirichlet", alpha=a) for a in (0.1, 1.0)]
    return out


def _quick() -> list[StudyEntry]:
    """A subset of ``full`` (so a full study in the same folder reuses its results)."""
    sweep = {"kind": "dirichlet", "dirichlet_over": "clients"}
    return [
        *(_e(**sweep, alpha=a) for a in (0.1, 0.2, 1.0, 100.0)),
        _e(kind="label-quantity", k=1),
        _e(kind="quantity", quantity="lognormal", sigma=2.0),
        _e(kind="feature-noise", noise=1.0),
        _e(**sweep, alpha=0.1, feature_skew="noise", noise=1.0),
        _e(kind="family-dirichlet", alpha=0.1),
    ]


def study_entries(preset: str | Sequence[StudyEntry], has_family: bool) -> list[StudyEntry]:
    """The preset's federations, without those that need family metadata the data lacks.

    ``preset`` may also be an explicit list of entries (custom studies, tests).
    """
    if not isinstance(preset, str):
        entries = list(preset)
    elif preset == "full":
        entries = _full()
    elif preset == "quick":
        entries = _quick()
    else:
        raise ConfigError(f"Unknown preset '{preset}'.", f"Use one of: {', '.join(PRESETS)}.")
    return [e for e in entries if has_family or not e.needs_family]


# --- names -----------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:g}"


def _kind_params(p: PartitionConfig) -> list[tuple[str, str]]:
    """(slug part, label part) pairs naming the parameters that matter for ``p.kind``."""
    if p.kind in ("dirichlet", "family-dirichlet"):
        alpha = [(f"a{_num(p.alpha)}", f"α={_num(p.alpha)}")]
        return [*alpha, ("cw", "client-wise")] if p.dirichlet_over == "clients" else alpha
    if p.kind == "label-quantity":
        by = [("family", "families")] if p.by == "family" else []
        return [(f"k{p.k}", f"k={p.k}"), *by]
    if p.kind == "quantity":
        if p.quantity == "lognormal":
            return [("lognormal", "log-normal"), (f"sg{_num(p.sigma)}", f"σ={_num(p.sigma)}")]
        return [("dirichlet", "Dirichlet"), (f"a{_num(p.alpha)}", f"α={_num(p.alpha)}")]
    if p.kind == "feature-noise":
        return [(f"n{_num(p.noise)}", f"noise={_num(p.noise)}")]
    if p.kind == "feature-subset":
        return [(f"f{_num(p.subset_fraction)}", f"fraction={_num(p.subset_fraction)}")]
    if p.kind == "natural":
        return [(p.column, f"by {p.column}")]
    return []


def _skew_params(p: PartitionConfig) -> list[tuple[str, str]]:
    if p.feature_skew == "noise":
        return [(f"noise{_num(p.noise)}", f"+ feature noise {_num(p.noise)}")]
    if p.feature_skew == "subset":
        frac = _num(p.subset_fraction)
        return [(f"subset{frac}", f"+ feature subset {frac}")]
    return []


def partition_slug(p: PartitionConfig, seed: int) -> str:
    """A file-name-safe name, e.g. ``dirichlet-a0.3-c10-s0``."""
    parts = [p.kind, *(s for s, _ in _kind_params(p)), *(s for s, _ in _skew_params(p))]
    return "-".join([*parts, f"c{p.clients}", f"s{seed}"])


def partition_label(p: PartitionConfig) -> str:
    """A readable description, e.g. ``dirichlet α=0.1 + feature noise 0.5``."""
    return " ".join([p.kind, *(t for _, t in _kind_params(p)), *(t for _, t in _skew_params(p))])


def federation_id(p: PartitionConfig, seed: int, training_hash: str) -> str:
    """The resumable id: readable slug plus a hash of the full partition, seed and training."""
    partition = p.model_dump(mode="json", exclude_defaults=True)
    key = {"partition": partition, "seed": seed, "training": training_hash}
    return f"{partition_slug(p, seed)}-{stable_hash(key, 8)}"
