"""Size and RVA of each data directory, and whether the file has (dynamic) relocations.

The reference leaves out the last directory the header declares (an off-by-one in its loop);
for the usual 16 directories that is the reserved slot, which is zero anyway, but for a file
declaring fewer, the last real one stays 0. We keep that so columns match the dataset.
"""

from __future__ import annotations

import numpy as np
import pefile

from fedmetamal.features.ember.layout import DATA_DIRECTORY_NAMES

_INDEX = {name: i for i, name in enumerate(DATA_DIRECTORY_NAMES)}


def data_directory_features(pe: pefile.PE) -> np.ndarray:
    """The 34 data-directory columns."""
    out = np.zeros(2 * len(DATA_DIRECTORY_NAMES) + 2, dtype=np.float32)
    directories = list(getattr(pe.OPTIONAL_HEADER, "DATA_DIRECTORY", None) or ())
    for directory in directories[:-1]:
        index = _INDEX.get(str(directory.name).replace("IMAGE_DIRECTORY_ENTRY_", ""))
        if index is None:
            continue
        out[2 * index] = directory.Size
        out[2 * index + 1] = directory.VirtualAddress
    out[-2] = int(pe.has_relocs())
    out[-1] = int(pe.has_dynamic_relocs())
    return out
