"""Fixtures for the feature tests: the real PE corpus (built once, cached) and small PE images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .pe_corpus import Corpus, build_corpus

ROOT = Path(__file__).resolve().parents[2]

#: At most this many PE files in the default run, so it stays light.
DEFAULT_PE_FILES = 40


@pytest.fixture(scope="session")
def pe_corpus() -> Corpus:
    """The cached corpus of real PE files; skips, saying why, when none could be built."""
    try:
        corpus = build_corpus()
    except (OSError, RuntimeError, ValueError) as err:
        pytest.skip(f"PE corpus could not be built: {err}")
    except Exception as err:  # a failed compiler or dpkg run: report, do not error the suite
        pytest.skip(f"PE corpus could not be built: {type(err).__name__}: {err}")
    if not corpus.pe_files:
        pytest.skip(
            f"no real PE files in {corpus.root}: {'; '.join(corpus.missing) or 'empty'} "
            "(needs network for apt-get download, or gcc-mingw-w64-x86-64)"
        )
    return corpus


@pytest.fixture(scope="session")
def pe_files(pe_corpus: Corpus) -> list[Path]:
    """A bounded selection of real PE files, PE32 and PE32+."""
    return list(pe_corpus.pe_files[:DEFAULT_PE_FILES])


@pytest.fixture(scope="session")
def small_pe(pe_files: list[Path]) -> bytes:
    """The bytes of the smallest real PE file, for tests that damage a copy of it."""
    return min((p.read_bytes() for p in pe_files), key=len)


@pytest.fixture(scope="session")
def reference_python() -> Path:
    """The EMBER2024 reference extractor's interpreter (``.cache/ember-ref``, built by
    scripts/test_tools.sh, or ``$FEDMETAMAL_EMBER_REF``); skips, saying how to build it."""
    path = Path(os.environ.get("FEDMETAMAL_EMBER_REF", ROOT / ".cache/ember-ref/bin/python"))
    if not path.exists():
        pytest.skip(
            f"reference extractor not found at {path}: python3 -m venv .cache/ember-ref && "
            ".cache/ember-ref/bin/pip install ember-cdd-wdis"
        )
    return path
