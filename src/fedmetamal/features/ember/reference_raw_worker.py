"""Runs the EMBER2024 reference's raw-feature step; executed by the reference's own Python.

Usage (inside the reference environment):
``python reference_raw_worker.py OUT_DIR [WARNING_PATTERNS_FILE] < paths``.
For each path on stdin it writes one line of ``raw.jsonl`` (the reference's raw JSON object,
as EMBER2024's ``.jsonl`` files hold them, or ``null`` when the reference raised) and the
reference's own vectorization of that line after a JSON round trip (``vectors.npy``, NaN rows
where it raised), so the raw-JSON vectorizer can be compared with the reference on the very
text a dataset would hold. ember-cdd-wdis 1.2.1 ships no ``pefile_warnings.txt``; a patterns
file given here stands in for it so the warnings group is computed too. Only the standard
library, numpy and the reference package are used (see :mod:`reference_worker`).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from reference_worker import _work_around_oscrypto  # type: ignore[import-not-found]


def main(out_path: str, patterns: str | None) -> None:
    _work_around_oscrypto()
    import numpy as np
    from ember.features import PEFeatureExtractor, PEFormatWarnings

    extractor = PEFeatureExtractor()
    if patterns is not None:
        index = [fe.name for fe in extractor.features].index("pefilewarnings")
        extractor.features[index] = PEFormatWarnings(Path(patterns))
    paths = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    vectors = np.full((len(paths), extractor.dim), np.nan, dtype=np.float32)
    lines, errors = [], []
    for i, path in enumerate(paths):
        try:
            # The reference prints one line per pefile warning it cannot classify.
            with contextlib.redirect_stdout(io.StringIO()):
                line = json.dumps(extractor.raw_features(Path(path).read_bytes()))
                vectors[i] = extractor.process_raw_features(json.loads(line))
            lines.append(line)
            errors.append("")
        except Exception as err:
            lines.append("null")
            errors.append(f"{type(err).__name__}: {err}")
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.jsonl").write_text("".join(f"{line}\n" for line in lines))
    np.save(out / "vectors.npy", vectors)
    (out / "meta.json").write_text(json.dumps({"errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
