"""Where the labels of extracted files come from: a labels CSV or the folder layout.

Folder layout under the scanned folder: ``benign/...`` -> 0, ``malware/<family>/...`` -> 1 with
that family (``malware/file.exe`` -> 1 without a family); files elsewhere are unlabelled (-1).
A labels CSV has a ``label`` column (benign / malware / 0 / 1), a key column ``sha256`` or
``path`` (relative to the scanned folder, or absolute), and optional ``family`` and
``first_seen`` columns; files it does not list are unlabelled. Anything else in the label column
is an error naming the values, because a silently wrong label poisons every model trained on it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fedmetamal.errors import DataError

MALWARE, BENIGN, UNLABELLED = 1, 0, -1
_VALUES = {"malware": MALWARE, "1": MALWARE, "benign": BENIGN, "0": BENIGN}


@dataclass(frozen=True)
class Label:
    """A file's label (1 / 0 / -1) and the optional family and first-seen date."""

    value: int
    family: str | None = None
    first_seen: str | None = None


UNKNOWN = Label(UNLABELLED)


class FolderLabels:
    """Labels from ``benign/`` and ``malware/<family>/`` folders."""

    has_first_seen = False
    describe = "folder names (benign/, malware/<family>/)"

    def lookup(self, rel_path: str, sha256: str | None) -> Label:
        del sha256
        parts = PurePosixPath(rel_path).parts
        top = parts[0].lower() if len(parts) > 1 else ""
        if top == "benign":
            return Label(BENIGN)
        if top == "malware":
            return Label(MALWARE, parts[1] if len(parts) > 2 else None)
        return UNKNOWN


class CsvLabels:
    """Labels from a CSV keyed by sha256 or by path."""

    def __init__(self, by_key: dict[str, Label], key: str, has_first_seen: bool, source: Path):
        self.by_key = by_key
        self.key = key
        self.has_first_seen = has_first_seen
        self.describe = f"'{source}' (by {key})"

    def lookup(self, rel_path: str, sha256: str | None) -> Label:
        if self.key == "sha256":
            return self.by_key.get((sha256 or "").lower(), UNKNOWN)
        return self.by_key.get(rel_path, UNKNOWN)

    @classmethod
    def read(cls, path: Path, root: Path) -> CsvLabels:
        """Read and check a labels CSV; every problem is a DataError naming the file."""
        fix = "Give a CSV with columns label and sha256 (or path), optionally family, first_seen."
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
                header = [h.strip().lower() for h in (rows[0].keys() if rows else [])]
        except FileNotFoundError:
            raise DataError(f"Labels file '{path}' does not exist.", "Check the path.") from None
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"Labels file '{path}' cannot be read ({err}).", fix) from None
        if not rows:
            raise DataError(f"Labels file '{path}' has no data rows.", fix)
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
        key = "sha256" if "sha256" in header else "path" if "path" in header else None
        if "label" not in header or key is None:
            raise DataError(
                f"Labels file '{path}' needs a 'label' column and a 'sha256' or 'path' column; "
                f"it has: {', '.join(header)}.",
                fix,
            )
        bad = {r["label"] for r in rows if r["label"].lower() not in _VALUES}
        if bad:
            first = next(i for i, r in enumerate(rows) if r["label"] in bad) + 2
            shown = ", ".join(repr(v) for v in sorted(bad)[:5])
            raise DataError(
                f"Labels file '{path}' has label values other than benign/malware/0/1: {shown} "
                f"(first on line {first}).",
                "Use benign, malware, 0 or 1 (family names go in a 'family' column).",
            )
        by_key: dict[str, Label] = {}
        for r in rows:
            k = r[key].lower() if key == "sha256" else _relative(r[key], root)
            by_key[k] = Label(
                _VALUES[r["label"].lower()], r.get("family") or None, r.get("first_seen") or None
            )
        return cls(by_key, key, "first_seen" in header, path)


def _relative(text: str, root: Path) -> str:
    """A path from the CSV as the posix path relative to ``root`` the extractor records."""
    candidate = Path(text)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return candidate.as_posix()
    return PurePosixPath(candidate.as_posix()).as_posix().removeprefix("./")


LabelSource = FolderLabels | CsvLabels
