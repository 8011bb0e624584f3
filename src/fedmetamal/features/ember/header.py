"""COFF, optional and DOS header fields, with machine and subsystem as category numbers.

Machine and subsystem are coded by position in EMBER2024's own lists (0 for anything else), so
the codes do not change when pefile learns new machine types. Flags are 0/1 columns.
"""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.layout import DLL_CHARACTERISTICS, DOS_MEMBERS, IMAGE_CHARACTERISTICS

_MACHINES = (
    "UNKNOWN", "I386", "R3000", "R4000", "R10000", "WCEMIPSV2", "ALPHA", "SH3", "SH3DSP", "SH3E",
    "SH4", "SH5", "ARM", "THUMB", "ARMNT", "AM33", "POWERPC", "POWERPCFP", "IA64", "MIPS16",
    "ALPHA64", "AXP64", "MIPSFPU", "MIPSFPU16", "TRICORE", "CEF", "EBC", "RISCV32", "RISCV64",
    "RISCV128", "LOONGARCH32", "LOONGARCH64", "AMD64", "M32R", "ARM64", "CEE",
)  # fmt: skip
_SUBSYSTEMS = (
    "UNKNOWN", "NATIVE", "WINDOWS_GUI", "WINDOWS_CUI", "OS2_CUI", "POSIX_CUI", "NATIVE_WINDOWS",
    "WINDOWS_CE_GUI", "EFI_APPLICATION", "EFI_BOOT_SERVICE_DRIVER", "EFI_RUNTIME_DRIVER",
    "EFI_ROM", "XBOX", "WINDOWS_BOOT_APPLICATION",
)  # fmt: skip
MACHINE_CODE = {f"IMAGE_FILE_MACHINE_{m}": i for i, m in enumerate(_MACHINES)}
SUBSYSTEM_CODE = {f"IMAGE_SUBSYSTEM_{s}": i for i, s in enumerate(_SUBSYSTEMS)}

_OPTIONAL_FIELDS = (
    "MajorImageVersion", "MinorImageVersion", "MajorLinkerVersion", "MinorLinkerVersion",
    "MajorOperatingSystemVersion", "MinorOperatingSystemVersion", "MajorSubsystemVersion",
    "MinorSubsystemVersion", "SizeOfCode", "SizeOfHeaders", "SizeOfImage", "SizeOfInitializedData",
    "SizeOfUninitializedData", "SizeOfStackReserve", "SizeOfStackCommit", "SizeOfHeapReserve",
    "SizeOfHeapCommit", "AddressOfEntryPoint", "BaseOfCode", "ImageBase", "SectionAlignment",
    "CheckSum", "NumberOfRvaAndSizes",
)  # fmt: skip


def header_features(pe: pefile.PE) -> np.ndarray:
    """The 74 header columns of a parsed PE file."""
    coff, optional = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    machine = pefile.MACHINE_TYPE.get(coff.Machine, "IMAGE_FILE_MACHINE_UNKNOWN")
    subsystem = pefile.SUBSYSTEM_TYPE.get(optional.Subsystem, "IMAGE_SUBSYSTEM_UNKNOWN")
    scalars = [
        coff.TimeDateStamp,
        coff.NumberOfSections,
        coff.NumberOfSymbols,
        coff.SizeOfOptionalHeader,
        coff.PointerToSymbolTable,
        MACHINE_CODE.get(machine, 0),
        SUBSYSTEM_CODE.get(subsystem, 0),
        *(getattr(optional, name) for name in _OPTIONAL_FIELDS),
    ]
    image_flags = [bool(getattr(coff, f"IMAGE_FILE_{c}", False)) for c in IMAGE_CHARACTERISTICS]
    dll_flags = [
        bool(getattr(optional, f"IMAGE_DLLCHARACTERISTICS_{c}", False)) for c in DLL_CHARACTERISTICS
    ]
    dos = [getattr(pe.DOS_HEADER, member, 0) or 0 for member in DOS_MEMBERS]
    # One hstack, like the reference, so large integers take the same path to float32.
    return np.hstack([scalars, image_flags, dll_flags, dos]).astype(np.float32)
