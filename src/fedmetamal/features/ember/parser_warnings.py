"""pefile parser warnings as 87 pattern flags plus the number of distinct patterns seen.

Each pefile warning is reduced to the known pattern it starts with (``Prefix...``) or ends with
(``...suffix``); suffixes are tried first, as in EMBER2024. Where several patterns fit, the
longest wins, which makes the choice deterministic (the reference picks whichever its ``set``
yields first). Unknown warnings are not counted. The pattern order is the column order of
EMBER2024's ``pefile_warnings.txt``; see docs/features.md for where it comes from.

pefile's "Byte 0x.. makes up ..% of the file" warning comes from a full pass over the file that
we skip (``fast_load``); :func:`byte_share_warnings` rebuilds it from the byte histogram.
"""

from __future__ import annotations

import numpy as np

from fedmetamal.features.ember.layout import WARNING_PATTERN_COUNT

PATTERNS = (
    "AddressOfEntryPoint lies outside the sections' boundaries...",
    "Bad RVA in relocation data...",
    "Byte 0x...",
    "Corrupt header...",
    "Damaged Import Table information...",
    "Don't know how to parse LOAD_CONFIG information for non-PE32...",
    "Error, too many imported symbols...",
    "Error parsing a resource directory data entry...",
    "Error parsing export directory at RVA...",
    "Error parsing resource of type RT_STRING at...",
    "Error parsing StringFileInfo/VarFileInfo struct...",
    "Error parsing the Delay import directory...",
    "Error parsing the Delay import directory at RVA...",
    "Error parsing the import directory at RVA...",
    "Error parsing the import directory. Invalid Import data at RVA...",
    "Error parsing the import table. Entries go beyond bounds...",
    "Error parsing the import table. AddressOfData overlaps with THUNK_DATA for THUNK at RVA...",
    "Error parsing the import table. Invalid data at RVA...",
    "Error parsing the resources directory. Excessively nested table depth...",
    "Error parsing the resources directory. The directory contains...",
    "Error parsing the resources directory. The file contains at least...",
    "Error parsing the resources directory. Entry...",
    "Error parsing the resources directory, attempting to read entry name. Entry names overlap...",
    "Error parsing the resources directory, attempting to read entry name. Can't read unicode "
    "string at offset...",
    "Error parsing the version information, attempting to read OffsetToData with RVA...",
    "Error parsing the version information, attempting to read VS_VERSION_INFO string...",
    "Error parsing the version information, attempting to read VarFileInfo Var string...",
    "Error parsing the version information, attempting to read StringFileInfo string...",
    "Error parsing the version information, attempting to read StringTable string...",
    "Error parsing the version information, attempting to read StringTable Key string...",
    "Error parsing the version information, to read StringTable Value string...",
    "Excessive number of imports...",
    "Export directory contains more than 10 repeated entries...",
    "Failed parsing FunctionEntry of UNWIND_INFO at...",
    "Failed rendering pascal string, attempting to read from RVA 0x...",
    "Failed rendering unicode string, attempting to read from RVA 0x...",
    "Failed to process directory...",
    "FunctionEntry of UNWIND_INFO at...",
    "If SectionAlignment...",
    "If FileAlignment > 0x200 it should be a power of 2. Value...",
    "Imported symbols contain entries typical of packed executables...",
    "Invalid bdd dynamic relocation...",
    "Invalid bdd info...",
    "Invalid debug information...",
    "Invalid function override header...",
    "Invalid function override info...",
    "Invalid IMAGE_DYNAMIC_RELOCATION_TABLE information...",
    "Invalid LOAD_CONFIG information...",
    "Invalid relocation information. Can't read...",
    "Invalid relocation information. SizeOfBlock too large...",
    "Invalid relocation information. VirtualAddress outside...",
    "Invalid resources directory. Can't read...",
    "Invalid resources directory. Can't parse directory data at RVA...",
    "Invalid TLS information. Can't read...",
    "Invalid type 0x...",
    "Invalid VS_VERSION_INFO block...",
    "No parsing available for IMAGE_DYNAMIC_RELOCATION_TABLE...",
    "Overlapping offsets in relocation data...",
    "Possibly corrupt file. AddressOfEntryPoint lies outside the file...",
    "Relocating image but PE does not have (or pefile cannot parse) a DIRECTORY_ENTRY_BASERELOC...",
    "Resource size...",
    "Rich Header is malformed...",
    "Rich Header is not in Microsoft format, possibly malformed...",
    "RVA AddressOfFunctions in the export directory points to an invalid...",
    "RVA AddressOfNames in the export directory points to an invalid...",
    "RVA of IMAGE_BOUND_IMPORT_DESCRIPTOR points...",
    "SizeOfHeaders is smaller than AddressOfEntryPoint...",
    "Suspicious flags set for section...",
    "Suspicious NumberOfRvaAndSizes in the Optional Header...",
    "Suspicious value found parsing section...",
    "The Bound Imports directory exists but can't be parsed...",
    "Too many warnings parsing section. Aborting...",
    "Too many errors parsing the Delay import directory...",
    "Too many errors parsing the import directory...",
    "Too many sections...",
    "Unknown UNWIND_CODE at...",
    "Unsupported version of UNWIND_INFO...",
    "...Contents are null-bytes.",
    "...No data in the file (is this corkami's virtsectblXP?).",
    "...PointerToRawData points beyond the end of the file.",
    "...PointerToRawData should normally be a multiple of FileAlignment, this might imply the "
    "file is trying to confuse tools which parse this incorrectly.",
    "...SizeOfRawData is larger than file.",
    "...VirtualSize is extremely large > 256MiB",
    "...VirtualAddress is beyond 0x10000000",
    "...symbol entries. Assuming corrupt.",
    "...ordinal entries. Assuming corrupt.",
    "...Assuming corrupt.",
)
if len(PATTERNS) != WARNING_PATTERN_COUNT:  # pragma: no cover
    raise ImportError("ember parser warnings: pattern table and column layout disagree")

_SUFFIXES = sorted(
    ((p[3:], i) for i, p in enumerate(PATTERNS) if p.startswith("...")), key=lambda s: -len(s[0])
)
_PREFIXES = sorted(
    ((p[:-3], i) for i, p in enumerate(PATTERNS) if not p.startswith("...")),
    key=lambda s: -len(s[0]),
)


def pattern_of(warning: str) -> int | None:
    """Index of the known pattern ``warning`` fits, or None for an unknown warning."""
    for suffix, index in _SUFFIXES:
        if warning.endswith(suffix):
            return index
    for prefix, index in _PREFIXES:
        if warning.startswith(prefix):
            return index
    return None


def byte_share_warnings(counts: np.ndarray, size: int) -> list[str]:
    """pefile's warnings for a byte value that makes up most of the file (>50% zero, >15% other)."""
    warnings = []
    for value in np.flatnonzero(counts):
        share = int(counts[value]) / size
        if (value == 0 and share > 0.5) or (value != 0 and share > 0.15):
            warnings.append(
                f"Byte 0x{int(value):02x} makes up {100.0 * share:.4f}% of the file's contents."
                " This may indicate truncation / malformation."
            )
    return warnings


def warning_features(warnings: list[str]) -> np.ndarray:
    """The 88 warning columns: one flag per pattern seen, then how many patterns were seen."""
    out = np.zeros(WARNING_PATTERN_COUNT + 1, dtype=np.float32)
    seen = {pattern_of(w) for w in set(warnings)} - {None}
    for index in seen:
        out[index] = 1.0
    out[-1] = len(seen)
    return out
