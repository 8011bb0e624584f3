"""How non-IID a network run's federation is, measured the way the simulation measures it
(``data/heterogeneity.py``), from what participants share: their feature ranges (with the
dataset summary), then per-class feature sums and histograms over bins the server fixes from
all ranges. The report is stored with the run and announced as an event."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fedmetamal.data.heterogeneity import measure_summaries
from fedmetamal.data.heterogeneity_stats import ClientSummary, shared_edges
from fedmetamal.service.run_state import feature_range_from_blob

if TYPE_CHECKING:
    from fedmetamal.service.run_engine import RunEngine

#: Histogram bins per feature (the simulation's default).
HIST_BINS = 16
REPORT_FILE = "heterogeneity.json"


async def measure_run(engine: RunEngine) -> dict[str, Any] | None:
    """Ask every participant for its summary over shared bins; store and announce the report.
    Participants that do not answer are left out (and named); None when none answers."""
    core = engine.core
    recs = [core.registry.get(pid) for pid in engine.slots]
    ranges = [feature_range_from_blob(r.feature_sums) for r in recs if r and r.feature_sums]
    if len(ranges) != len(recs):
        return None
    edges = shared_edges([lo for lo, _ in ranges], [hi for _, hi in ranges], HIST_BINS)
    d = edges.shape[0]
    expected = {
        "feature_sum": ("float64", (2, d)),
        "feature_sumsq": ("float64", (2, d)),
        "histogram": ("int64", (2, d, HIST_BINS)),
        "label_counts": ("int64", (2,)),
    }
    got = await engine.dispatch(0, "summarise", list(range(len(recs))), {"edges": edges}, expected)
    if not got.results:
        core.bus.publish(
            "log",
            "no participant sent its heterogeneity summary",
            run_id=engine.run_id,
            level="warning",
        )
        return None
    summaries, slots = [], []
    for slot, res in got.results:
        summary = recs[slot].summary or {}  # type: ignore[union-attr]
        families = {str(k): int(v) for k, v in (summary.get("family_counts") or {}).items()}
        t = res.tensors
        summaries.append(
            ClientSummary(
                n=int(summary.get("n_train", 0)) + int(summary.get("n_unlabelled", 0)),
                label_counts=t["label_counts"],
                has_families=bool(families),
                family_counts=families,
                feature_sum=t["feature_sum"],
                feature_sumsq=t["feature_sumsq"],
                histogram=t["histogram"],
            )
        )
        slots.append(slot)
    report = measure_summaries(summaries, slots).to_dict()
    report["participants"] = [engine.slots[s] for s in slots]
    missing = [engine.slots[s] for s in range(len(recs)) if s not in slots]
    report["missing"] = missing
    path = core.data_dir / "runs" / engine.run_id / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(path)
    fed = {
        k: float(v) for k, v in report["federation"].items() if v is not None and math.isfinite(v)
    }
    core.bus.publish(
        "heterogeneity",
        f"non-IID index {fed.get('index', float('nan')):.3f} over {len(slots)} participant(s)"
        + (f"; missing {', '.join(missing)}" if missing else ""),
        run_id=engine.run_id,
        metrics=fed,
    )
    return report


def stored_report(data_dir: Any, run_id: str) -> str:
    """The run's report as JSON text ("" before it is measured)."""
    path = data_dir / "runs" / run_id / REPORT_FILE
    return path.read_text() if path.is_file() else ""


def summarise_for(train: Any, edges: np.ndarray) -> dict[str, np.ndarray]:
    """A participant's answer to a summarise task (its side of the protocol)."""
    from fedmetamal.data.heterogeneity_stats import summarise_client

    s = summarise_client(train, np.asarray(edges, dtype=np.float64))
    return {
        "feature_sum": np.ascontiguousarray(s.feature_sum, dtype=np.float64),
        "feature_sumsq": np.ascontiguousarray(s.feature_sumsq, dtype=np.float64),
        "histogram": np.ascontiguousarray(s.histogram, dtype=np.int64),
        "label_counts": np.ascontiguousarray(s.label_counts, dtype=np.int64),
    }
