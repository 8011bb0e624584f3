"""ember-v3 against the EMBER2024 reference extractor, run in its own environment.

The reference (ember-cdd-wdis) lives in ``.cache/ember-ref`` (or ``$FEDMETAMAL_EMBER_REF``, the
path of its python); these tests skip, saying how to build it, when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fedmetamal.features.ember.layout import COLUMNS
from fedmetamal.features.ember.parity import GroupResult, compare, run_ours, run_reference

from .pe_corpus import Corpus

#: Files in the default (light) run; the slow test takes the whole corpus.
LIGHT_FILES = 20


def _check(paths: list[Path], python: Path) -> list[GroupResult]:
    reference = run_reference(paths, python)
    ours, _, _ = run_ours(paths)
    results, one_sided = compare(paths, ours, reference)
    assert reference.columns == list(COLUMNS)
    assert not one_sided, one_sided
    for result in results:
        if result.computable:
            assert result.share >= 0.99, (result.name, result.differences[:5])
    return results


def test_columns_and_groups_match_the_reference_on_real_files(
    pe_corpus: Corpus, reference_python: Path
) -> None:
    pe = sorted(pe_corpus.pe_files, key=lambda p: p.stat().st_size)[:LIGHT_FILES]
    other = [p for p in pe_corpus.other_files if p.stat().st_size > 0][:5]
    results = _check(pe + other, reference_python)
    assert all(r.files == len(pe) + len(other) for r in results)


@pytest.mark.slow
def test_every_group_matches_on_the_whole_corpus(pe_corpus: Corpus, reference_python: Path) -> None:
    files = [p for p in (*pe_corpus.pe_files, *pe_corpus.other_files) if p.stat().st_size > 0]
    _check(files, reference_python)


@pytest.fixture(scope="module")
def signed_files(pe_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real PE files signed with throwaway certificates: plain, chained, and nested."""
    if not (shutil.which("openssl") and shutil.which("osslsigncode")):
        pytest.skip("needs openssl and osslsigncode to sign test files")
    out = tmp_path_factory.mktemp("signed")

    def run(*args: str | Path) -> None:
        subprocess.run([str(a) for a in args], check=True, capture_output=True)

    for name in ("leaf", "root"):
        key, cert = out / f"{name}.key", out / f"{name}.pem"
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-keyout", key, "-out", cert, "-subj", f"/CN={name}")  # fmt: skip
    (out / "chain.pem").write_bytes(
        (out / "root.pem").read_bytes() + (out / "leaf.pem").read_bytes()
    )
    source = min((p for p in pe_files if p.suffix == ".exe"), key=lambda p: p.stat().st_size)
    plain, nested, chained = out / "plain.exe", out / "nested.exe", out / "chained.exe"
    run("osslsigncode", "sign", "-certs", out / "leaf.pem", "-key", out / "leaf.key",
        "-n", "Test App", "-in", source, "-out", plain)  # fmt: skip
    run("osslsigncode", "sign", "-nest", "-certs", out / "root.pem", "-key", out / "root.key",
        "-in", plain, "-out", nested)  # fmt: skip
    run("osslsigncode", "sign", "-certs", out / "chain.pem", "-key", out / "root.key",
        "-in", source, "-out", chained)  # fmt: skip
    return [plain, nested, chained]


def test_authenticode_matches_the_reference_on_signed_files(
    signed_files: list[Path], reference_python: Path
) -> None:
    results = _check(signed_files, reference_python)
    authenticode = next(r for r in results if r.name == "authenticode")
    assert authenticode.exact == len(signed_files)
    ours, _, _ = run_ours(signed_files)
    start = COLUMNS.index("authenticode_num_certs")
    assert list(ours[:, start]) == [1, 2, 1]  # the nested signature counts as a second one
    assert ours[2, start + 1] == 1  # the chain holds a self-signed root before the leaf
