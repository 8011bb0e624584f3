"""Runs every ember-v3 group over one file held in a single buffer.

The file is mapped (or, behind the generic ``read_at`` interface, read once into an anonymous
map) and every group reads views of that one buffer: no group copies the file. pefile parses
the headers with ``fast_load`` (which skips its own full pass over the bytes) and then loads the
data directories exactly as a full parse would; the byte-share warning that full pass would
add is rebuilt from our byte histogram.

A file pefile rejects still gets a row (``general_is_pe`` = 0, PE groups all zero), as in the
EMBER2024 dataset, which also holds non-PE files; the reason is kept as a warning.
"""

from __future__ import annotations

import mmap
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pefile

from fedmetamal.features.ember.authenticode import authenticode_features
from fedmetamal.features.ember.byte_entropy import byte_entropy_features
from fedmetamal.features.ember.byte_histogram import byte_histogram_features
from fedmetamal.features.ember.data_directories import data_directory_features
from fedmetamal.features.ember.entropy import Searchable, byte_counts
from fedmetamal.features.ember.exports import export_features
from fedmetamal.features.ember.general import general_features
from fedmetamal.features.ember.header import header_features
from fedmetamal.features.ember.imports import import_features
from fedmetamal.features.ember.layout import GROUP_BY_NAME, WIDTH
from fedmetamal.features.ember.parser_warnings import byte_share_warnings, warning_features
from fedmetamal.features.ember.rich_header import rich_header_features
from fedmetamal.features.ember.sections import section_features
from fedmetamal.features.ember.strings import string_features
from fedmetamal.features.outcome import Failure, Outcome, Row
from fedmetamal.features.schema import ReadAt

#: Bytes copied per ``read_at`` call when a file has to be read into memory.
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Vector:
    """One file's 2568 values (float32, schema order) and what was odd about it."""

    values: np.ndarray
    warnings: tuple[str, ...]


def parse_pe(data: Searchable) -> tuple[pefile.PE | None, str | None]:
    """pefile's view of ``data`` with all directories loaded, or None and why not."""
    try:
        pe = pefile.PE(data=data, fast_load=True)  # type: ignore[arg-type]
        pe.full_load()
    except pefile.PEFormatError as err:
        return None, f"not a PE file: {err}"
    except Exception as err:  # the reference would stop on these; we keep the byte groups
        return None, f"not a PE file: pefile failed with {type(err).__name__}: {err}"
    return pe, None


def _put(out: np.ndarray, group: str, values: np.ndarray) -> None:
    spec = GROUP_BY_NAME[group]
    out[spec.start : spec.stop] = values


def extract_buffer(data: Searchable) -> Vector:
    """All ember-v3 groups of the non-empty file held in ``data`` (bytes or a map)."""
    out = np.zeros(WIDTH, dtype=np.float32)
    warnings: list[str] = []
    counts = byte_counts(data)
    pe, reason = parse_pe(data)
    if reason is not None:
        warnings.append(reason)
    _put(out, "general", general_features(data, counts, pe is not None))
    _put(out, "histogram", byte_histogram_features(counts))
    _put(out, "byteentropy", byte_entropy_features(data))
    _put(out, "strings", string_features(data))
    if pe is not None:
        _put(out, "header", header_features(pe))
        _put(out, "section", section_features(data, pe))
        _put(out, "imports", import_features(pe, warnings))
        _put(out, "exports", export_features(pe, warnings))
        _put(out, "datadirectories", data_directory_features(pe))
        _put(out, "richheader", rich_header_features(pe))
        _put(out, "authenticode", authenticode_features(data, pe))
        parser = byte_share_warnings(counts, len(data)) + list(pe.get_warnings())
        _put(out, "pefilewarnings", warning_features(parser))
        del pe
    return Vector(out, tuple(warnings))


def _outcome(data: Searchable) -> Outcome:
    vector = extract_buffer(data)
    return Row(tuple(vector.values.tolist()), vector.warnings)


def extract_path(path: Path | str) -> Vector | None:
    """All groups of the file at ``path``, mapped read-only; None for an empty file."""
    with Path(path).open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return None
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return extract_buffer(mapped)
        finally:
            with suppress(BufferError):  # a view still alive: the map closes when collected
                mapped.close()


def extract_ember_v3(read_at: ReadAt, size: int) -> Outcome:
    """The schema's extractor: reads the file once into an anonymous map, then all groups."""
    if size == 0:
        return Failure("empty file: zero bytes")
    buffer = mmap.mmap(-1, size)
    try:
        offset = 0
        while offset < size:
            chunk = read_at(offset, min(_READ_CHUNK, size - offset))
            if not chunk:
                return Failure(f"truncated: file shrank to {offset} bytes while being read")
            buffer[offset : offset + len(chunk)] = chunk
            offset += len(chunk)
        return _outcome(buffer)
    finally:
        with suppress(BufferError):
            buffer.close()
