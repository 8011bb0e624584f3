"""The ember-v3 column layout: EMBER2024 feature version 3, 2568 columns in twelve groups.

Column order and names follow the EMBER2024 reference extractor (``column_names()`` of the
pefile-based ``PEFeatureExtractor`` in ember-cdd-wdis 1.2.1), including its spelling slips
(``exports_hased_*``, ``strings_onlick``), because a row extracted here must line up, name for
name, with vectors and feature-importance tables made from the EMBER2024 dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The string patterns counted by the strings group, in column order (sorted by name).
STRING_PATTERN_NAMES = (
    ".click(", "/EmbeddedFile", "/FlateDecode", "/URI", "/bin/", "/dev/", "/proc/", "/tmp/",
    "/usr/", "<script", "Invoke-Command", "Invoke-Expression", "Start-process", "base64",
    "base64string", "btc_wallet", "cache", "certificate", "clipboard", "command", "connect",
    "cookie", "create", "crypt", "debug", "decode", "delete", "desktop", "directory", "disk",
    "dos_msg", "download", "email_addr", "encode", "enum", "environment", "exit", "file",
    "file_path", "ftp", "get", "hidden", "hostname", "html", "http", "http://", "https://",
    "install", "internet", "ipv4_addr", "ipv6_addr", "javascript", "keyboard", "mac_addr",
    "memory", "module", "mutex", "onlick", "password", "post", "powershell", "privilege",
    "process", "registry_key", "remote", "resource", "security", "service", "shell",
    "snapshot", "system", "thread", "token", "url", "useragent", "wallet", "window",
)  # fmt: skip

#: COFF characteristics flags, one boolean column each, in this order.
IMAGE_CHARACTERISTICS = (
    "RELOCS_STRIPPED", "EXECUTABLE_IMAGE", "LINE_NUMS_STRIPPED", "LOCAL_SYMS_STRIPPED",
    "AGGRESIVE_WS_TRIM", "LARGE_ADDRESS_AWARE", "16BIT_MACHINE", "BYTES_REVERSED_LO",
    "32BIT_MACHINE", "DEBUG_STRIPPED", "REMOVABLE_RUN_FROM_SWAP", "NET_RUN_FROM_SWAP", "SYSTEM",
    "DLL", "UP_SYSTEM_ONLY", "BYTES_REVERSED_HI",
)  # fmt: skip

#: Optional-header DllCharacteristics flags, one boolean column each, in this order.
DLL_CHARACTERISTICS = (
    "HIGH_ENTROPY_VA", "DYNAMIC_BASE", "FORCE_INTEGRITY", "NX_COMPAT", "NO_ISOLATION", "NO_SEH",
    "NO_BIND", "APPCONTAINER", "WDM_DRIVER", "GUARD_CF", "TERMINAL_SERVER_AWARE",
)  # fmt: skip

DOS_MEMBERS = (
    "e_magic", "e_cblp", "e_cp", "e_crlc", "e_cparhdr", "e_minalloc", "e_maxalloc", "e_ss",
    "e_sp", "e_csum", "e_ip", "e_cs", "e_lfarlc", "e_ovno", "e_oemid", "e_oeminfo", "e_lfanew",
)  # fmt: skip

#: The 30 scalar header columns (after the ``header_`` prefix), in order.
HEADER_SCALARS = (
    "coff_timestamp", "coff_number_of_sections", "coff_number_of_symbols",
    "coff_sizeof_optional_header", "coff_pointer_to_symbol_table", "coff_machine",
    "optional_subsystem", "optional_major_image_version", "optional_minor_image_version",
    "optional_major_linker_version", "optional_minor_linker_version",
    "optional_major_operating_system_version", "optional_minor_operating_system_version",
    "optional_major_subsystem_version", "optional_minor_subsystem_version", "optional_sizeof_code",
    "optional_sizeof_headers", "optional_sizeof_image", "optional_sizeof_initialized_data",
    "optional_sizeof_uninitialized_data", "optional_sizeof_stack_reserve",
    "optional_sizeof_stack_commit", "optional_sizeof_heap_reserve", "optional_sizeof_heap_commit",
    "optional_address_of_entrypoint", "optional_base_of_code", "optional_image_base",
    "optional_section_alignment", "optional_checksum", "optional_number_of_rvas_and_sizes",
)  # fmt: skip

#: Data directories in index order (the 16th is the reserved slot).
DATA_DIRECTORY_NAMES = (
    "EXPORT", "IMPORT", "RESOURCE", "EXCEPTION", "SECURITY", "BASERELOC", "DEBUG", "COPYRIGHT",
    "GLOBALPTR", "TLS", "LOAD_CONFIG", "BOUND_IMPORT", "IAT", "DELAY_IMPORT", "COM_DESCRIPTOR",
    "RESERVED",
)  # fmt: skip

SECTION_GENERAL = (
    "num_sections", "num_zero_size", "empty_name", "num_rx", "num_w", "max_entropy",
    "min_entropy", "max_size_ratio", "min_size_ratio", "max_vsize_ratio", "min_vsize_ratio",
)  # fmt: skip

AUTHENTICODE_FIELDS = (
    "num_certs", "self_signed", "empty_program_name", "no_countersigner", "parse_error",
    "chain_max_depth", "latest_signing_time", "signing_time_diff",
)  # fmt: skip

#: Number of known pefile warning patterns (one flag column each) before the count column.
WARNING_PATTERN_COUNT = 87


def _numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _group_columns() -> dict[str, list[str]]:
    strings = ["numstrings", "avlength", "printables", *_numbered("printabledist_", 96)]
    strings += ["entropy", *STRING_PATTERN_NAMES]
    header = [*HEADER_SCALARS, *(f"coff_{c}" for c in IMAGE_CHARACTERISTICS)]
    header += [*(f"optional_{c}" for c in DLL_CHARACTERISTICS), *(f"dos_{m}" for m in DOS_MEMBERS)]
    section = [f"general_{c}" for c in SECTION_GENERAL]
    for kind, count in (("size", 50), ("vsize", 50), ("entropy", 50), ("characteristics", 50)):
        section += _numbered(f"{kind}_hashed_", count)
    section += [*_numbered("entry_name_hashed_", 10), "overlay_size", "overlay_size_ratio"]
    section += ["overlay_entropy"]
    imports = ["num_imports", "num_libraries", *_numbered("libraries_hashed_", 256)]
    imports += _numbered("imports_hashed_", 1024)
    parts = ("size", "virtual_address")
    directories = [f"{d}_{part}" for d in DATA_DIRECTORY_NAMES for part in parts]
    directories += ["has_relocs", "has_dynamic_relocs"]
    columns = {
        "general": [f"general_{c}" for c in ("size", "entropy", "is_pe")]
        + _numbered("general_start_byte_", 4),
        "histogram": _numbered("byte_histogram_", 256),
        "byteentropy": _numbered("byteentropy_hist_", 256),
        "strings": [f"strings_{c}" for c in strings],
        "header": [f"header_{c}" for c in header],
        "section": [f"section_{c}" for c in section],
        "imports": [f"imports_{c}" for c in imports],
        "exports": _numbered("exports_hased_", 129),
        "datadirectories": [f"datadirectories_{c}" for c in directories],
        "richheader": _numbered("richheader_", 33),
        "authenticode": [f"authenticode_{c}" for c in AUTHENTICODE_FIELDS],
        "pefilewarnings": [
            *_numbered("pefilewarnings_", WARNING_PATTERN_COUNT),
            "pefilewarnings_num_warnings",
        ],
    }
    return columns


@dataclass(frozen=True)
class Group:
    """One feature group: its name as EMBER2024 calls it, and where its columns sit."""

    name: str
    start: int
    columns: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.columns)

    @property
    def stop(self) -> int:
        return self.start + self.width


def _groups() -> tuple[Group, ...]:
    groups, start = [], 0
    for name, columns in _group_columns().items():
        groups.append(Group(name, start, tuple(columns)))
        start += len(columns)
    return tuple(groups)


GROUPS: tuple[Group, ...] = _groups()
GROUP_BY_NAME: dict[str, Group] = {g.name: g for g in GROUPS}
COLUMNS: tuple[str, ...] = tuple(c for g in GROUPS for c in g.columns)
WIDTH = len(COLUMNS)
