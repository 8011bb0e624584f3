"""Compares our ember-v3 vectors with the EMBER2024 reference extractor, group by group.

The reference runs in its own virtual environment (``.cache/ember-ref``) through
:mod:`reference_worker`, so its dependencies never enter ours. A group matches on a file when
every column is equal, or equal within :data:`RTOL` (relative, float32 rounding of values
summed in a different order); everything else is listed column by column with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedmetamal.features.ember.extractor import extract_path
from fedmetamal.features.ember.layout import GROUPS, WIDTH

#: Relative tolerance for "within float tolerance": a few float32 ulps.
RTOL = 1e-6
#: Groups the reference cannot compute in ember-cdd-wdis 1.2.1, and why.
NOT_COMPUTABLE = {
    "pefilewarnings": "ember-cdd-wdis 1.2.1 does not ship pefile_warnings.txt, so its "
    "warning patterns are empty and the group is always 0",
}
DEFAULT_REFERENCE_PYTHON = Path(".cache/ember-ref/bin/python")
_WORKER = Path(__file__).with_name("reference_worker.py")


@dataclass(frozen=True)
class Reference:
    """The reference's vectors (NaN rows where it raised), errors, seconds and columns."""

    vectors: np.ndarray
    errors: list[str]
    seconds: list[float]
    columns: list[str]


def run_reference(paths: list[Path], python: Path = DEFAULT_REFERENCE_PYTHON) -> Reference:
    """Run the reference extractor on ``paths`` in its own interpreter."""
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        subprocess.run(
            [str(python), str(_WORKER), out],
            input="".join(f"{p}\n" for p in paths),
            text=True,
            check=True,
            env=env,
            capture_output=True,
        )
        meta = json.loads((Path(out) / "meta.json").read_text())
        vectors = np.load(Path(out) / "vectors.npy", allow_pickle=False)
    return Reference(vectors, meta["errors"], meta["seconds"], meta["columns"])


def run_ours(paths: list[Path]) -> tuple[np.ndarray, list[str], list[float]]:
    """Our vectors (NaN rows for files we refuse), the refusal reasons, and seconds per file."""
    vectors = np.full((len(paths), WIDTH), np.nan, dtype=np.float32)
    reasons, seconds = [], []
    for i, path in enumerate(paths):
        start = time.perf_counter()
        vector = extract_path(path)
        seconds.append(time.perf_counter() - start)
        if vector is None:
            reasons.append("empty file: zero bytes")
        else:
            vectors[i] = vector.values
            reasons.append("")
    return vectors, reasons, seconds


@dataclass
class GroupResult:
    """How one group compares over the files both sides produced a vector for."""

    name: str
    files: int = 0
    exact: int = 0
    within_tolerance: int = 0
    differences: list[dict[str, object]] = field(default_factory=list)
    computable: bool = True

    @property
    def differing_files(self) -> int:
        return self.files - self.exact - self.within_tolerance

    @property
    def share(self) -> float:
        """Share of files matching exactly or within tolerance."""
        return (self.exact + self.within_tolerance) / self.files if self.files else 1.0


def explain(group: str, column: str, ours: float, reference: float) -> str:
    """The known reason for a difference, or 'unexplained' (to be investigated)."""
    if group in NOT_COMPUTABLE:
        return NOT_COMPUTABLE[group]
    return "unexplained"


def compare(
    paths: list[Path], ours: np.ndarray, reference: Reference
) -> tuple[list[GroupResult], list[dict[str, object]]]:
    """Per-group results, and the files only one side could extract (with both reasons)."""
    results = [GroupResult(g.name, computable=g.name not in NOT_COMPUTABLE) for g in GROUPS]
    one_sided = []
    for i, path in enumerate(paths):
        ref_ok = not np.isnan(reference.vectors[i]).any()
        our_ok = not np.isnan(ours[i]).any()
        if not (ref_ok and our_ok):
            one_sided.append(
                {"file": str(path), "reference": reference.errors[i] or "ok", "ours_ok": our_ok}
            )
            continue
        for group, result in zip(GROUPS, results, strict=True):
            a = ours[i, group.start : group.stop]
            b = reference.vectors[i, group.start : group.stop]
            result.files += 1
            if np.array_equal(a, b):
                result.exact += 1
            elif np.allclose(a, b, rtol=RTOL, atol=0):
                result.within_tolerance += 1
            else:
                for j in np.flatnonzero(~np.isclose(a, b, rtol=RTOL, atol=0)):
                    column = group.columns[j]
                    result.differences.append(
                        {
                            "file": str(path),
                            "column": column,
                            "ours": float(a[j]),
                            "reference": float(b[j]),
                            "reason": explain(group.name, column, float(a[j]), float(b[j])),
                        }
                    )
    return results, one_sided


def report_markdown(
    results: list[GroupResult], one_sided: list[dict[str, object]], n_files: int
) -> str:
    """The parity report: the per-group table, then every difference with its reason."""
    lines = [
        f"# ember-v3 parity with the EMBER2024 reference ({n_files} files)",
        "",
        f"Tolerance: relative {RTOL:g} (float32 rounding); all other differences listed below.",
        "",
        "| group | files | exact | within tolerance | differ | match share |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        share = f"{100 * r.share:.1f}%" if r.computable else "not computable by the reference"
        lines.append(
            f"| {r.name} | {r.files} | {r.exact} | {r.within_tolerance} | "
            f"{r.differing_files} | {share} |"
        )
    lines += ["", "## Files only one side extracted", ""]
    sided = [f"- `{o['file']}`: reference {o['reference']}, ours {o['ours_ok']}" for o in one_sided]
    lines += sided or ["none"]
    lines += ["", "## Differences", ""]
    for r in results:
        if not r.computable:
            lines.append(f"- {r.name}: not compared ({NOT_COMPUTABLE[r.name]})")
            continue
        for d in r.differences:
            lines.append(
                f"- {r.name} `{d['column']}` in `{d['file']}`: ours {d['ours']!r}, "
                f"reference {d['reference']!r} ({d['reason']})"
            )
    return "\n".join(lines) + "\n"
