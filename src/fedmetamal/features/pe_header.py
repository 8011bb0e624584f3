"""The ``pe-header`` schema: the 50 raw DOS, file and optional header fields of a PE file.

Column names and order are those of public PE-header datasets (``dataset_malwares.csv`` in
../shared/data/pe-headers): the values are what pefile reports for the same fields, so a model
trained on such a table scores a new file. Only the headers are read (a few hundred bytes, plus
the section table, at most 80 KB), so a 200 MB file costs the same as a 2 KB one. Acceptance
follows pefile's checks (DOS magic, e_lfanew inside the file, the ``PE\\0\\0`` signature, a file
header, at least 69 bytes of optional header zero-padded like pefile does); a section table cut
off by the end of the file gives a warning; see docs/features.md.
"""

from __future__ import annotations

import struct

from fedmetamal.features.outcome import Failure, Outcome, Row
from fedmetamal.features.schema import FeatureSchema, ReadAt, register

DOS_COLUMNS = (
    "e_magic",
    "e_cblp",
    "e_cp",
    "e_crlc",
    "e_cparhdr",
    "e_minalloc",
    "e_maxalloc",
    "e_ss",
    "e_sp",
    "e_csum",
    "e_ip",
    "e_cs",
    "e_lfarlc",
    "e_ovno",
    "e_oemid",
    "e_oeminfo",
    "e_lfanew",
)
FILE_COLUMNS = (
    "NumberOfSections",
    "PointerToSymbolTable",
    "NumberOfSymbols",
    "SizeOfOptionalHeader",
    "Characteristics",
)
OPTIONAL_COLUMNS = (
    "Magic",
    "MajorLinkerVersion",
    "MinorLinkerVersion",
    "SizeOfCode",
    "SizeOfInitializedData",
    "SizeOfUninitializedData",
    "AddressOfEntryPoint",
    "BaseOfCode",
    "ImageBase",
    "SectionAlignment",
    "FileAlignment",
    "MajorOperatingSystemVersion",
    "MinorOperatingSystemVersion",
    "MajorImageVersion",
    "MinorImageVersion",
    "MajorSubsystemVersion",
    "MinorSubsystemVersion",
    "SizeOfHeaders",
    "CheckSum",
    "SizeOfImage",
    "Subsystem",
    "DllCharacteristics",
    "SizeOfStackReserve",
    "SizeOfStackCommit",
    "SizeOfHeapReserve",
    "SizeOfHeapCommit",
    "LoaderFlags",
    "NumberOfRvaAndSizes",
)
COLUMNS = DOS_COLUMNS + FILE_COLUMNS + OPTIONAL_COLUMNS

# Structure layouts as pefile declares them (little-endian; ``_`` fields are skipped).
_DOS = struct.Struct("<14H8s2H20sI")
_DOS_NAMES = (*DOS_COLUMNS[:14], "_res", "e_oemid", "e_oeminfo", "_res2", "e_lfanew")
_FILE = struct.Struct("<2H3I2H")
_FILE_NAMES = ("_Machine", "NumberOfSections", "_TimeDateStamp", *FILE_COLUMNS[1:])
_OPT32 = struct.Struct("<H2B9I6H4I2H6I")
_OPT32_NAMES = (
    *OPTIONAL_COLUMNS[:8],
    "_BaseOfData",
    *OPTIONAL_COLUMNS[8:17],
    "_Reserved1",
    "SizeOfImage",
    "SizeOfHeaders",
    "CheckSum",
    "Subsystem",
    "DllCharacteristics",
    *OPTIONAL_COLUMNS[22:],
)
_OPT64 = struct.Struct("<H2B5IQ2I6H4I2H4Q2I")
_OPT64_NAMES = tuple(n for n in _OPT32_NAMES if n != "_BaseOfData")

MZ = 0x5A4D
ZM = 0x4D5A
PE_SIGNATURE = 0x00004550
PE32 = 0x10B
PE32_PLUS = 0x20B
#: pefile accepts an optional header cut short if at least this many bytes are present (PE32;
#: four more for PE32+), zero-padding the rest.
MIN_OPTIONAL_BYTES = {PE32: 69, PE32_PLUS: 73}
#: Bytes of optional header pefile looks at (256 for the PE32 pass, 0x200 for PE32+).
_OPT_WINDOW = {PE32: 256, PE32_PLUS: 0x200}
_OTHER_FORMATS = {0x454E: "NE", 0x454C: "LE", 0x584C: "LX", 0x5A56: "TE"}
#: The most sections the Windows loader accepts; more is reported as a warning, not an error.
MAX_SECTIONS = 96
#: pefile looks at no more section headers than this.
PEFILE_MAX_SECTIONS = 0x800
SECTION_HEADER_SIZE = 40


def _named(layout: struct.Struct, names: tuple[str, ...], data: bytes) -> dict[str, int]:
    return {n: v for n, v in zip(names, layout.unpack(data), strict=True) if n[0] != "_"}


def _optional_header(read_at: ReadAt, offset: int, fields: dict[str, int]) -> Failure | list[str]:
    """Fill ``fields`` from the optional header the way pefile does; warnings, or a failure."""
    data = read_at(offset, _OPT_WINDOW[PE32_PLUS])
    warnings: list[str] = []
    if len(data) < MIN_OPTIONAL_BYTES[PE32]:
        return Failure(
            f"truncated: optional header ends past EOF ({len(data)} of {_OPT32.size} bytes present)"
        )
    magic = int.from_bytes(data[:2], "little")
    layout, names = _OPT32, _OPT32_NAMES
    if magic == PE32_PLUS:
        layout, names = _OPT64, _OPT64_NAMES
        if len(data) < MIN_OPTIONAL_BYTES[PE32_PLUS]:
            return Failure(
                f"truncated: optional header ends past EOF ({len(data)} of {_OPT64.size} "
                "bytes present)"
            )
    elif magic != PE32:
        warnings.append(f"unknown optional header magic 0x{magic:04x}, read as PE32 like pefile")
    window = data[: _OPT_WINDOW[PE32]] if layout is _OPT32 else data
    if len(window) < layout.size:
        warnings.append(
            f"optional header truncated: {len(window)} of {layout.size} bytes, rest read as zero"
        )
        window = window + b"\0" * (layout.size - len(window))
    fields.update(_named(layout, names, window[: layout.size]))
    return warnings


def _section_table_cut(read_at: ReadAt, offset: int, count: int) -> str | None:
    """A warning when the section table stops inside a header (the file is truncated).

    pefile refuses such a file unless its section scan stopped earlier (at an all-zero header,
    or after too many implausible values in one header); the header fields are intact, so we
    keep the row and say so rather than copy that heuristic.
    """
    count = min(count, PEFILE_MAX_SECTIONS)
    table = read_at(offset, count * SECTION_HEADER_SIZE)
    for i in range(count):
        header = table[i * SECTION_HEADER_SIZE : (i + 1) * SECTION_HEADER_SIZE]
        if not header or header == bytes(SECTION_HEADER_SIZE):
            return None
        if len(header) < SECTION_HEADER_SIZE:
            return f"section table truncated in header {i} (pefile refuses such files)"
    return None


def extract_pe_header(read_at: ReadAt, size: int) -> Outcome:
    """The 50 header fields of the file behind ``read_at``, or why it is not a usable PE file."""
    if size == 0:
        return Failure("empty file: zero bytes")
    dos = read_at(0, _DOS.size)
    if len(dos) >= 2 and int.from_bytes(dos[:2], "little") == ZM:
        return Failure("not a PE file: ZM executable")
    if len(dos) >= 2 and int.from_bytes(dos[:2], "little") != MZ:
        return Failure("not a PE file: no MZ header")
    if len(dos) < _DOS.size:
        return Failure(f"truncated: DOS header ends past EOF ({len(dos)} of {_DOS.size} bytes)")
    fields = _named(_DOS, _DOS_NAMES, dos)
    lfanew = fields["e_lfanew"]
    if lfanew > size:
        return Failure(f"not a PE file: e_lfanew {lfanew} points past EOF ({size} bytes)")
    nt = read_at(lfanew, 4 + _FILE.size)
    signature = int.from_bytes(nt[:4], "little") if len(nt) >= 4 else 0
    if signature == 0:
        return Failure(f"not a PE file: no NT headers at e_lfanew {lfanew}")
    if signature & 0xFFFF in _OTHER_FORMATS:
        return Failure(f"not a PE file: {_OTHER_FORMATS[signature & 0xFFFF]} executable")
    if signature != PE_SIGNATURE:
        return Failure(f"not a PE file: bad NT signature 0x{signature:08x}")
    if len(nt) < 4 + _FILE.size:
        return Failure("truncated: file header ends past EOF")
    fields.update(_named(_FILE, _FILE_NAMES, nt[4:]))
    optional_offset = lfanew + 4 + _FILE.size
    found = _optional_header(read_at, optional_offset, fields)
    if isinstance(found, Failure):
        return found
    sections = optional_offset + fields["SizeOfOptionalHeader"]
    cut = _section_table_cut(read_at, sections, fields["NumberOfSections"])
    if cut is not None:
        found.append(cut)
    if fields["NumberOfSections"] > MAX_SECTIONS:
        found.append(f"NumberOfSections {fields['NumberOfSections']} exceeds {MAX_SECTIONS}")
    return Row(values=tuple(fields[c] for c in COLUMNS), warnings=tuple(found))


PE_HEADER = register(
    FeatureSchema(
        name="pe-header",
        version=1,
        columns=COLUMNS,
        extract=extract_pe_header,
        summary="50 raw DOS / file / optional header fields, named as in public PE-header tables",
    )
)
