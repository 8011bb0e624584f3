"""Runs the EMBER2024 reference extractor; executed by the reference's own Python, not ours.

Usage (inside the reference environment): ``python reference_worker.py OUT_DIR < paths``.
Reads one path per line on stdin and writes, for each, the reference's 2568-value vector (NaN
when it raised) plus the error text and the time it took, so our code never imports the
reference and the reference never imports ours. Only the standard library, numpy and the
reference package are used here.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path


def _work_around_oscrypto() -> None:
    """oscrypto 1.3.0 cannot parse OpenSSL versions like 3.0.19; let it see 3.0.1x as 3.0.1.

    The reference imports signify, which imports oscrypto at import time and fails there. We
    widen the version pattern for the duration of that one import.
    """
    original = re.search

    def search(pattern, string, *args, **kwargs):  # type: ignore[no-untyped-def]
        if pattern == "\\b(\\d\\.\\d\\.\\d[a-z]*)\\b":
            pattern = "\\b(\\d\\.\\d\\.\\d+[a-z]*)\\b"
        return original(pattern, string, *args, **kwargs)

    re.search = search  # type: ignore[assignment]
    try:
        import oscrypto.asymmetric  # noqa: F401
    except Exception:  # the reference import below reports the real problem
        pass
    finally:
        re.search = original


def main(out_path: str) -> None:
    _work_around_oscrypto()
    import numpy as np
    from ember.features import PEFeatureExtractor

    extractor = PEFeatureExtractor()
    paths = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    vectors = np.full((len(paths), extractor.dim), np.nan, dtype=np.float32)
    errors, seconds = [], []
    for i, path in enumerate(paths):
        data = Path(path).read_bytes()
        start = time.perf_counter()
        try:
            # The reference prints one line per pefile warning it cannot classify.
            with contextlib.redirect_stdout(io.StringIO()):
                vectors[i] = extractor.feature_vector(data)
            errors.append("")
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
        seconds.append(time.perf_counter() - start)
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", vectors)  # plain float32: loads without pickle
    meta = {"errors": errors, "seconds": seconds, "columns": extractor.column_names()}
    (out / "meta.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main(sys.argv[1])
