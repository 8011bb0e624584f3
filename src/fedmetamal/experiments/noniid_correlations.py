"""Turn the validation study's records into its tables, correlations, verdict and figures.

A measure predicts FedAvg's damage when federations it ranks as more heterogeneous lose more
test AUC; rank correlations (Spearman ρ, Kendall τ) test exactly that without assuming the
relation is linear. The IID baseline's seed-to-seed spread is reported beside them: a drop below
that spread is noise, not damage.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fedmetamal.data.heterogeneity import FEDERATION_MEASURES
from fedmetamal.errors import PartitionError

#: The measure the study is about, the Spearman target it must reach, and its rival.
TARGET_MEASURE, TARGET_RHO, RIVAL_MEASURE = "index", 0.8, "label_emd"
DROPS = {"auc": "auc_drop", "accuracy": "accuracy_drop"}


@dataclass
class StudyOutputs:
    federations: pd.DataFrame
    correlations: pd.DataFrame
    summary: dict[str, Any]
    files: list[Path]


def baseline_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of the IID runs (sample std, 0 for a single seed)."""
    runs = [r for r in records if r["role"] == "baseline" and r["status"] == "finished"]
    if not runs:
        reasons = {r.get("reason") for r in records if r["role"] == "baseline"}
        raise PartitionError(
            f"The IID baseline could not be built: {'; '.join(map(str, reasons))}",
            "Use fewer clients or a smaller min_client_size.",
        )
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
    for name in ("roc_auc", "accuracy"):
        vals = np.array([_num(r["metrics"].get(name)) for r in runs])
        out[f"{name}_mean"] = float(np.mean(vals))
        out[f"{name}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        out[f"{name}_values"] = vals.tolist()
    out["index_mean"] = float(np.nanmean([_num(r["measures"].get("index")) for r in runs]))
    return out


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def federation_table(records: list[dict[str, Any]], baseline: dict[str, Any]) -> pd.DataFrame:
    """One row per trained non-IID federation: measures, final metrics and drops."""
    rows = []
    for r in records:
        if r["role"] != "federation" or r["status"] != "finished":
            continue
        row = {k: r[k] for k in ("id", "kind", "description", "seed")}
        row |= {m: _num(r["measures"].get(m)) for m in FEDERATION_MEASURES}
        row["roc_auc"] = _num(r["metrics"].get("roc_auc"))
        row["accuracy"] = _num(r["metrics"].get("accuracy"))
        row["auc_drop"] = baseline["roc_auc_mean"] - row["roc_auc"]
        row["accuracy_drop"] = baseline["accuracy_mean"] - row["accuracy"]
        rows.append(row)
    cols = ["id", "kind", "description", "seed", *FEDERATION_MEASURES]
    return pd.DataFrame(rows, columns=[*cols, "roc_auc", "accuracy", "auc_drop", "accuracy_drop"])


def _rank_corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (math.nan,) * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, rho_p = stats.spearmanr(x, y)
        tau, tau_p = stats.kendalltau(x, y)
    return float(rho), float(rho_p), float(tau), float(tau_p)


def correlation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall of each measure against each drop, over the federations where the
    measure is defined; ``note`` says ``n/a`` where it is defined nowhere."""
    rows = []
    for m in FEDERATION_MEASURES:
        row: dict[str, Any] = {"measure": m}
        x = frame[m].to_numpy(dtype=float)
        for short, col in DROPS.items():
            y = frame[col].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            row["n"] = int(ok.sum())
            rho, rho_p, tau, tau_p = _rank_corr(x[ok], y[ok])
            row |= {f"spearman_{short}": rho, f"spearman_{short}_p": rho_p}
            row |= {f"kendall_{short}": tau, f"kendall_{short}_p": tau_p}
        if row["n"] == 0:
            row["note"] = "n/a"
        elif math.isnan(row["spearman_auc"]):
            row["note"] = "undefined (constant or < 3 federations)"
        else:
            row["note"] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def target_verdict(corr: pd.DataFrame) -> dict[str, Any]:
    by = corr.set_index("measure")
    rho = float(by.loc[TARGET_MEASURE, "spearman_auc"])
    rival = float(by.loc[RIVAL_MEASURE, "spearman_auc"])
    return {
        "measure": TARGET_MEASURE,
        "threshold": TARGET_RHO,
        "spearman_auc": None if math.isnan(rho) else rho,
        "reached": bool(rho >= TARGET_RHO),
        "rival": RIVAL_MEASURE,
        "rival_spearman_auc": None if math.isnan(rival) else rival,
        "beats_rival": bool(rho > rival) if not math.isnan(rival) else not math.isnan(rho),
    }


def verdict_text(target: dict[str, Any]) -> str:
    """One honest line, e.g. ``index Spearman 0.83 ≥ 0.8, beats label_emd (0.71)``."""
    rho, rival = target["spearman_auc"], target["rival_spearman_auc"]
    name, thr, rname = target["measure"], target["threshold"], target["rival"]
    if rho is None:
        return f"{name}: Spearman undefined (too few federations or no variation)"
    head = f"{name} Spearman {rho:.2f} {'≥' if target['reached'] else '<'} {thr:g}"
    head += "" if target["reached"] else " (target missed)"
    rv = "n/a" if rival is None else f"{rival:.2f}"
    return f"{head}, {'beats' if target['beats_rival'] else 'does not beat'} {rname} ({rv})"


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def correlations_markdown(corr: pd.DataFrame, baseline: dict[str, Any], verdict: str) -> str:
    head = (
        "| measure | n | Spearman ρ (AUC drop) | p | Kendall τ (AUC drop) | p "
        "| Spearman ρ (acc. drop) | p | Kendall τ (acc. drop) | p |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in corr.to_dict("records"):
        vals = [
            r[f"{s}_{d}{p}"] for d in DROPS for s in ("spearman", "kendall") for p in ("", "_p")
        ]
        cells = ["n/a"] * 8 if r["note"] == "n/a" else [_fmt(v) for v in vals]
        lines.append(f"| {r['measure']} | {r['n']} | " + " | ".join(cells) + " |")
    base = (
        f"IID baseline over {len(baseline['seeds'])} seeds: ROC AUC "
        f"{baseline['roc_auc_mean']:.4f} ± {baseline['roc_auc_std']:.4f}, accuracy "
        f"{baseline['accuracy_mean']:.4f} ± {baseline['accuracy_std']:.4f} (mean ± std; drops "
        "below the std are within seed noise)."
    )
    return (
        f"# Heterogeneity measures vs FedAvg's drop\n\n{head}"
        + "\n".join(lines)
        + (f"\n\n{base}\n\nTarget: {verdict}\n")
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_study_outputs(
    out: Path, records: list[dict[str, Any]], dataset: str, figures: bool = True
) -> StudyOutputs:
    """federations.csv, correlations.csv/.md, summary.json and (with ``figures``) the scatter
    plots."""
    from fedmetamal.experiments.noniid_scatter import plot_scatters

    baseline = baseline_stats(records)
    frame = federation_table(records, baseline)
    corr = correlation_table(frame)
    target = target_verdict(corr)
    verdict = verdict_text(target)
    files = [out / "federations.csv", out / "correlations.csv", out / "correlations.md"]
    frame.to_csv(files[0], index=False)
    corr.to_csv(files[1], index=False)
    files[2].write_text(correlations_markdown(corr, baseline, verdict), encoding="utf-8")
    if figures:
        files += plot_scatters(frame, corr, out, baseline)
    skipped = [
        {k: r.get(k) for k in ("id", "description", "seed", "status", "reason")}
        for r in records
        if r["status"] != "finished"
    ]
    summary = {
        "dataset": dataset,
        "n_federations": len(frame),
        "n_skipped": len(skipped),
        "baseline": baseline,
        "correlations": {
            r["measure"]: {k: _jsonable(v) for k, v in r.items() if k != "measure"}
            for r in corr.to_dict("records")
        },
        "target": target,
        "verdict": verdict,
        "skipped": skipped,
    }
    files.append(out / "summary.json")
    summary["files"] = [str(f) for f in files]
    files[-1].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return StudyOutputs(frame, corr, summary, files)
