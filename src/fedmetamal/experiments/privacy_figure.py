"""The privacy-utility curve of a suite: final metric against epsilon, one line per DP level.

Applies to a suite with a ``privacy`` grid axis whose values set ``mode`` and ``target_epsilon``
(examples/privacy.yaml): x is the target epsilon on a log scale, each DP mode (participant,
sample) and combination of the other settings is a line with ± std error bars over seeds, and
the runs without DP are drawn at a point marked ∞ right of the largest epsilon, joined to each
line by a dotted segment, so the cost of privacy reads straight off the plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from fedmetamal.experiments.figures import FigureFile, _new_figure, _save_final
from fedmetamal.experiments.results import SEED_AXIS, SuiteResults
from fedmetamal.experiments.style import RC, metric_label, style_of

_AXIS = "privacy"


def _privacy_values(res: SuiteResults) -> dict[str, dict[str, Any]] | None:
    """Label -> privacy mapping of the suite's ``privacy`` axis, read from the manifest's runs
    (None without such an axis)."""
    if not any(a.key == _AXIS for a in res.axes):
        return None
    out: dict[str, dict[str, Any]] = {}
    for run in res.manifest.get("runs", []):
        label = run.get("settings", {}).get(_AXIS)
        value = run.get("values", {}).get(_AXIS)
        if label is not None and isinstance(value, dict):
            out.setdefault(str(label), value)
    return out or None


def privacy_figures(res: SuiteResults, folder: Path, metrics: list[str]) -> list[FigureFile]:
    """One privacy-utility figure per metric in ``metrics`` (none when the suite has no
    ``privacy`` axis with target epsilons)."""
    values = _privacy_values(res)
    if values is None:
        return []
    eps = {lab: v.get("target_epsilon") for lab, v in values.items()}
    finite = sorted({float(e) for e in eps.values() if e is not None})
    if not finite:
        return []
    column = "method" if res.method_axis == _AXIS else _AXIS
    others = [a.key for a in res.axes if a.key not in (_AXIS, res.method_axis, SEED_AXIS)]
    if res.method_axis != _AXIS and res.has_method_axis:
        others.append("method")
    x_inf = finite[-1] * 2
    deltas = {float(v.get("delta", 1e-5)) for v in values.values() if v.get("mode") != "none"}
    delta = deltas.pop() if len(deltas) == 1 else float("nan")
    out = []
    for metric in metrics:
        f = res.final
        if metric not in f or column not in f:
            continue
        f = f[f["status"] == "finished"].copy()
        f[metric] = pd.to_numeric(f[metric], errors="coerce").astype(float)
        f = f[np.isfinite(f[metric])]
        f["_mode"] = [str(values.get(lab, {}).get("mode", "none")) for lab in f[column]]
        f["_eps"] = [eps.get(lab) for lab in f[column]]
        f["_setting"] = [
            ", ".join(_setting_text(k, r[k], res) for k in others) for _, r in f.iterrows()
        ]
        out.append(_draw(f, folder, metric, finite, x_inf, others, delta))
    return [fig for fig in out if fig is not None]


def _setting_text(key: str, label: object, res: SuiteResults) -> str:
    """``clients=10`` for a plain value; a mapping axis's label (``DP-SGD training``) as is."""
    mapped = any(
        isinstance(run.get("values", {}).get(key), dict) for run in res.manifest.get("runs", [])
    )
    return str(label) if mapped or key == "method" else f"{key.rsplit('.', 1)[-1]}={label}"


def _draw(
    f: pd.DataFrame,
    folder: Path,
    metric: str,
    finite: list[float],
    x_inf: float,
    others: list[str],
    delta: float,
) -> FigureFile | None:
    modes = [m for m in dict.fromkeys(f["_mode"]) if m != "none"]
    settings = list(dict.fromkeys(f["_setting"]))
    if not modes:
        return None
    with matplotlib.rc_context(RC):
        fig, ax = _new_figure()
        n_series = 0
        star_labelled = False
        for si, setting in enumerate(settings):
            rows = f[f["_setting"] == setting]
            base = rows[rows["_mode"] == "none"][metric]
            for mi, mode in enumerate(modes):
                g = rows[(rows["_mode"] == mode) & rows["_eps"].notna()]
                if g.empty:
                    continue
                stats = g.groupby(g["_eps"].astype(float))[metric].agg(["mean", "std"])
                st = style_of(mi)
                label = f"{mode}-level DP" + (f", {setting}" if setting else "")
                ls = ["-", "--", "-.", ":"][si % 4]
                ax.errorbar(
                    stats.index.to_numpy(dtype=float),
                    stats["mean"].to_numpy(),
                    yerr=stats["std"].fillna(0.0).to_numpy(),
                    label=label,
                    color=st["color"],
                    marker=st["marker"],
                    linestyle=ls,
                    capsize=3,
                )
                n_series += 1
                if not base.empty:
                    ax.plot(
                        [stats.index[-1], x_inf],
                        [stats["mean"].iloc[-1], base.mean()],
                        color=st["color"],
                        linestyle=":",
                        linewidth=1,
                    )
            if not base.empty:
                drawn = [m for m in modes if not rows[rows["_mode"] == m].empty]
                colour = style_of(modes.index(drawn[0]))["color"] if drawn else "black"
                ax.errorbar(
                    [x_inf],
                    [base.mean()],
                    yerr=[0.0 if len(base) < 2 else base.std()],
                    color=colour,
                    marker="*",
                    markersize=10,
                    markeredgecolor="black",
                    linestyle="none",
                    capsize=3,
                    label=None if star_labelled else "no DP (ε = ∞), same settings",
                )
                star_labelled = True
                n_series += 1
        ax.set_xscale("log")
        ticks = [*finite, x_inf]
        ax.set_xticks(ticks, [f"{x:g}" for x in finite] + ["∞"])
        ax.minorticks_off()
        ax.set_xlabel(f"ε (δ = {delta:g})")
        caption = (
            f"Final {metric_label(metric)} against the privacy budget ε, by DP level"
            + (f" and {', '.join(others)}" if others else "")
            + "; mean over seeds, error bars ± one standard deviation; ∞: no DP."
        )
        return _save_final(fig, ax, folder, metric, "epsilon", n_series, caption)
