"""Section table summary, hashed per-section sizes, entropies and flags, and the overlay.

Section bytes are never copied: entropies are computed over ranges of the one file buffer.
Ratios keep the reference's definitions (``vsize_ratio`` is raw size over virtual size).
"""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.entropy import Searchable, byte_counts, shannon_entropy
from fedmetamal.features.ember.hashing import hash_names, hash_pairs

_EXECUTE = 0x20000000
_FLAG_NAMES = tuple(name for name, _ in pefile.section_characteristics)


def _name(section: pefile.SectionStructure) -> str:
    return section.Name.strip(b"\x00").decode(errors="ignore").lower()


def _range_entropy(data: Searchable, start: int, end: int) -> float:
    start, end = max(0, min(start, len(data))), max(0, min(end, len(data)))
    if end <= start:
        return 0.0
    return shannon_entropy(data, byte_counts(data, start, end), start, end)


def _section_entropy(data: Searchable, section: pefile.SectionStructure) -> float:
    """Entropy of the bytes pefile's ``get_data()`` returns for the section."""
    offset = section.get_PointerToRawData_adj()
    end = offset + section.SizeOfRawData
    end = min(end, section.PointerToRawData + section.SizeOfRawData)
    return _range_entropy(data, offset, end)


def _entry_section(pe: pefile.PE) -> str:
    """Name of the (last) section holding the entry point, else the first executable one."""
    entry = ""
    for section in pe.sections:
        if section.contains_rva(pe.OPTIONAL_HEADER.AddressOfEntryPoint):
            entry = _name(section)
    for section in pe.sections:
        if entry != "":
            break
        if section.Characteristics & _EXECUTE > 0:
            entry = _name(section)
    return entry


def section_features(data: Searchable, pe: pefile.PE) -> np.ndarray:
    """The 224 section columns of a parsed PE file held in ``data``."""
    size = len(data)
    rows = []
    for section in pe.sections:
        flags = [name[10:] for name in _FLAG_NAMES if getattr(section, name, False)]
        rows.append(
            (
                _name(section),
                section.SizeOfRawData,
                _section_entropy(data, section),
                section.Misc_VirtualSize,
                section.SizeOfRawData / size,
                section.SizeOfRawData / max(section.Misc_VirtualSize, 1),
                flags,
            )
        )
    overlay_start = pe.get_overlay_data_start_offset()
    overlay = (0, 0, 0)
    if overlay_start is not None:
        overlay_size = size - overlay_start
        overlay = (overlay_size, overlay_size / size, _range_entropy(data, overlay_start, size))
    entropies = [r[2] for r in rows] + [overlay[2], 0]
    size_ratios = [r[4] for r in rows] + [overlay[1], 0]
    vsize_ratios = [r[5] for r in rows] + [0]
    general = [
        len(rows),
        sum(1 for r in rows if r[1] == 0),
        sum(1 for r in rows if r[0] == ""),
        sum(1 for r in rows if "MEM_READ" in r[6] and "MEM_EXECUTE" in r[6]),
        sum(1 for r in rows if "MEM_WRITE" in r[6]),
        max(entropies),
        min(entropies),
        max(size_ratios),
        min(size_ratios),
        max(vsize_ratios),
        min(vsize_ratios),
    ]
    return np.hstack(
        [
            general,
            hash_pairs(((r[0], r[1]) for r in rows), 50),
            hash_pairs(((r[0], r[3]) for r in rows), 50),
            hash_pairs(((r[0], r[2]) for r in rows), 50),
            hash_names((f"{r[0]}:{flag}" for r in rows for flag in r[6]), 50),
            hash_names([_entry_section(pe)], 10),
            *overlay,
        ]
    ).astype(np.float32)
