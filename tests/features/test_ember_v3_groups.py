"""ember-v3 groups against independent oracles: scikit-learn's FeatureHasher, pefile's entropy,
and plain per-string / per-window implementations of the EMBER2024 definitions."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pefile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import FeatureHasher

from fedmetamal.features.ember.byte_entropy import byte_entropy_features
from fedmetamal.features.ember.entropy import byte_counts, shannon_entropy
from fedmetamal.features.ember.extractor import extract_buffer, extract_path
from fedmetamal.features.ember.hashing import hash_names, hash_pairs
from fedmetamal.features.ember.layout import GROUP_BY_NAME
from fedmetamal.features.ember.parser_warnings import PATTERNS, pattern_of, warning_features
from fedmetamal.features.ember.sections import section_features
from fedmetamal.features.ember.strings import _COMPILED, _FOLDED, string_features

names = st.text(min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, st.floats(-1e6, 1e6, allow_nan=False)), max_size=20))
def test_hash_pairs_equals_scikit_learn(pairs: list[tuple[str, float]]) -> None:
    expected = FeatureHasher(50, input_type="pair").transform([pairs]).toarray()[0]
    got = hash_pairs(pairs, 50)
    if len(pairs) < 16:  # scipy sums a bucket in input order: bit-identical
        np.testing.assert_array_equal(got, expected)
    else:  # scipy's sort may reorder equal buckets first: same sum up to rounding
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(names, max_size=30), st.booleans())
def test_hash_names_equals_scikit_learn(items: list[str], alternate: bool) -> None:
    hasher = FeatureHasher(256, input_type="string", alternate_sign=alternate)
    expected = hasher.transform([items]).toarray()[0]
    np.testing.assert_array_equal(hash_names(items, 256, alternate), expected)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000))
def test_entropy_is_bit_identical_to_pefile(data: bytes) -> None:
    reference = pefile.SectionStructure(pefile.PE.__IMAGE_SECTION_HEADER_format__).entropy_H(data)
    assert shannon_entropy(data, byte_counts(data)) == reference


def _naive_byte_entropy(data: bytes) -> np.ndarray:
    """EMBER's definition, one window at a time (as the reference loops)."""
    a = np.frombuffer(data, dtype=np.uint8)
    out = np.zeros((16, 16), dtype=np.int64)
    starts = [0] if len(a) < 2048 else range(0, len(a) - 2048 + 1, 1024)
    for s in starts:
        block = a[s : s + 2048]
        c = np.bincount(block >> 4, minlength=16)
        p = c.astype(np.float32) / 2048
        nz = np.where(c)[0]
        h = np.sum(-p[nz] * np.log2(p[nz])) * 2
        out[min(int(h * 2), 15)] += c
    cells = out.reshape(-1).astype(np.float32)
    return cells / cells.sum()


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=9000), st.integers(1, 16))
def test_byte_entropy_equals_the_window_by_window_definition(data: bytes, spread: int) -> None:
    # Few distinct nibbles (spread) exercise the rows where summation order matters.
    squeezed = bytes((b % spread) << 4 | (b & 15) for b in data)
    np.testing.assert_array_equal(byte_entropy_features(squeezed), _naive_byte_entropy(squeezed))


def test_byte_entropy_covers_large_files_in_slabs() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 5 * 1024 * 1024 + 777, dtype=np.uint8)
    data[: 1 << 20] = 0  # a low-entropy stretch
    raw = data.tobytes()
    np.testing.assert_array_equal(byte_entropy_features(raw), _naive_byte_entropy(raw))


def _naive_string_counts(data: bytes) -> dict[str, int]:
    strings = [s.decode() for s in re.findall(rb"[\x20-\x7f]{5,}", data)]
    counts: dict[str, int] = {}
    for name, pattern in _COMPILED.items():
        text_pattern = re.compile(pattern.pattern.decode(), re.IGNORECASE * (name == ".click("))
        counts[name] = sum(1 for s in strings if text_pattern.search(s))
    for name, word in _FOLDED.items():
        counts[name] = sum(1 for s in strings if word.decode() in s.lower())
    return counts


alphabet = st.sampled_from(
    [b"http://a.b ", b"HTTP/1.1", b"192.168.0.1", b"fe80::1:2", b"aa:bb:cc:dd:ee:ff", b"\x00",
     b"C:/x", b"File", b"FILE file", b".Click(", b"HKCU\\", b"1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
     b"crypt", b"GET /", b"\xff", b"abcde", b" ", b"Invoke-Command", b"\n"]
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(alphabet, max_size=40))
def test_string_pattern_counts_equal_the_per_string_definition(parts: list[bytes]) -> None:
    data = b"".join(parts) or b"\x00"
    got = string_features(data)
    offset = 100  # numstrings, avlength, printables, 96 shares, entropy
    expected = _naive_string_counts(data)
    from fedmetamal.features.ember.layout import STRING_PATTERN_NAMES

    for i, name in enumerate(STRING_PATTERN_NAMES):
        assert got[offset + i] == expected[name], name
    strings = re.findall(rb"[\x20-\x7f]{5,}", data)
    assert got[0] == len(strings) and got[2] == sum(map(len, strings))


def test_section_entropies_equal_pefile_on_real_files(pe_files: list[Path]) -> None:
    for path in pe_files[:12]:
        data = path.read_bytes()
        pe = pefile.PE(data=data)
        row = section_features(data, pe)
        hashed = FeatureHasher(50, input_type="pair").transform(
            [
                [
                    (s.Name.strip(b"\0").decode(errors="ignore").lower(), s.get_entropy())
                    for s in pe.sections
                ]
            ]
        )
        np.testing.assert_array_equal(row[111:161], hashed.toarray()[0].astype(np.float32))


def test_every_warning_pattern_names_a_pefile_message() -> None:
    source = Path(pefile.__file__).read_text()
    # Messages are split over adjacent string literals; join them before searching.
    joined = re.sub(r"[\"']\s*\n\s*[\"']", "", source)
    for pattern in PATTERNS:
        probe = pattern.strip(".").split(" 0x")[0].split("%")[0][:30]
        assert probe in joined, pattern


def test_warnings_are_matched_by_suffix_first_then_prefix() -> None:
    assert pattern_of("Suspicious flags set for section 1. Both IMAGE_SCN_MEM_WRITE ...") == 67
    assert PATTERNS[pattern_of("Error parsing section 3. SizeOfRawData is larger than file.")] == (
        "...SizeOfRawData is larger than file."
    )
    assert pattern_of("a message pefile never writes") is None
    row = warning_features(["Corrupt header x", "Corrupt header y", "unknown"])
    assert row[PATTERNS.index("Corrupt header...")] == 1 and row[-1] == 1


def test_non_pe_files_get_byte_groups_and_zero_pe_groups() -> None:
    vector = extract_buffer(b"%PDF-1.4\x00just some text\x01ab\x02")
    general = GROUP_BY_NAME["general"]
    assert vector.values[general.start + 2] == 0  # is_pe
    assert vector.values[GROUP_BY_NAME["strings"].start] == 2
    header = GROUP_BY_NAME["header"]
    assert not vector.values[header.start : GROUP_BY_NAME["pefilewarnings"].stop].any()
    assert vector.warnings and vector.warnings[0].startswith("not a PE file")


def test_general_group_of_a_real_pe(pe_files: list[Path]) -> None:
    path = pe_files[0]
    data = path.read_bytes()
    vector = extract_path(path)
    assert vector is not None
    counts = Counter(data)
    entropy = -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())
    assert vector.values[0] == len(data) and vector.values[2] == 1
    assert vector.values[1] == pytest.approx(entropy, rel=1e-6)
    assert list(vector.values[3:7]) == list(data[:4])


def test_warnings_equal_a_full_pefile_parse(pe_files: list[Path], small_pe: bytes) -> None:
    """fast_load + full_load + our byte-share warning = what pefile.PE(data) warns about."""
    from fedmetamal.features.ember.extractor import parse_pe
    from fedmetamal.features.ember.parser_warnings import byte_share_warnings

    damaged = small_pe[:-700] + b"\0" * 5000  # cut sections, a zero-heavy tail
    for data in [*(p.read_bytes() for p in pe_files[:10]), damaged]:
        pe, reason = parse_pe(data)
        try:
            full = pefile.PE(data=data)
        except pefile.PEFormatError:
            assert pe is None
            continue
        assert pe is not None, reason
        ours = byte_share_warnings(byte_counts(data), len(data)) + pe.get_warnings()
        assert sorted(ours) == sorted(full.get_warnings())
        assert all(pattern_of(w) is not None for w in ours)
