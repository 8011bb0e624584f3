"""The EMBER feature-version-2 column layout: 2381 columns in nine groups.

This is the layout of the vectorized EMBER 2017 (second release) and EMBER 2018 datasets
(Anderson & Roth 2018; ``PEFeatureExtractor(feature_version=2)`` of the ``ember`` package): the
groups in extractor order with their widths, and the fixed field order inside the groups that
are not hashed. Columns have no names of their own in the dataset; loaders call them
``ember_v2_<i>``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The ten ``general`` fields, in column order.
GENERAL_FIELDS = (
    "size", "vsize", "has_debug", "exports", "imports", "has_relocations", "has_resources",
    "has_signature", "has_tls", "symbols",
)  # fmt: skip

#: The optional-header numbers that close the header group, in column order.
OPTIONAL_SCALARS = (
    "major_image_version", "minor_image_version", "major_linker_version", "minor_linker_version",
    "major_operating_system_version", "minor_operating_system_version", "major_subsystem_version",
    "minor_subsystem_version", "sizeof_code", "sizeof_headers", "sizeof_heap_commit",
)  # fmt: skip

#: The string-pattern counts that close the strings group, in column order.
STRING_COUNTS = ("paths", "urls", "registry", "MZ")

#: The data directories whose (size, RVA) pairs fill the last group. The reference reads them
#: by position in the raw list (the order lief reports them, which is this order); the names
#: only fix the width (15 pairs; the 16th, reserved, directory is left out).
DATA_DIRECTORY_ORDER = (
    "EXPORT_TABLE", "IMPORT_TABLE", "RESOURCE_TABLE", "EXCEPTION_TABLE", "CERTIFICATE_TABLE",
    "BASE_RELOCATION_TABLE", "DEBUG", "ARCHITECTURE", "GLOBAL_PTR", "TLS_TABLE",
    "LOAD_CONFIG_TABLE", "BOUND_IMPORT", "IAT", "DELAY_IMPORT_DESCRIPTOR", "CLR_RUNTIME_HEADER",
)  # fmt: skip

#: Hash widths of the hashed blocks.
HEADER_HASH = 10
SECTION_HASH = 50
IMPORT_LIBRARY_HASH = 256
IMPORT_FUNCTION_HASH = 1024
EXPORT_HASH = 128


@dataclass(frozen=True)
class Group:
    """One feature group: its raw-JSON key and its columns ``[start, stop)``."""

    name: str
    title: str
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


def _groups() -> tuple[Group, ...]:
    widths = (
        ("histogram", "ByteHistogram", 256),
        ("byteentropy", "ByteEntropyHistogram", 256),
        ("strings", "StringExtractor", 3 + 96 + 1 + len(STRING_COUNTS)),
        ("general", "GeneralFileInfo", len(GENERAL_FIELDS)),
        ("header", "HeaderFileInfo", 1 + 5 * HEADER_HASH + len(OPTIONAL_SCALARS)),
        ("section", "SectionInfo", 5 + 5 * SECTION_HASH),
        ("imports", "ImportsInfo", IMPORT_LIBRARY_HASH + IMPORT_FUNCTION_HASH),
        ("exports", "ExportsInfo", EXPORT_HASH),
        ("datadirectories", "DataDirectories", 2 * len(DATA_DIRECTORY_ORDER)),
    )
    out, start = [], 0
    for name, title, width in widths:
        out.append(Group(name, title, start, width))
        start += width
    return tuple(out)


#: The nine groups in column order.
GROUPS: tuple[Group, ...] = _groups()
GROUP_BY_NAME = {g.name: g for g in GROUPS}
#: Columns of a feature-version-2 vector.
WIDTH = GROUPS[-1].stop
#: The raw-JSON keys a feature-version-2 record must have.
GROUP_KEYS = tuple(g.name for g in GROUPS)

assert WIDTH == 2381, WIDTH
