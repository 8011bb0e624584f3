"""Printable-string statistics and counts of strings that match indicator patterns.

A string is a run of at least 5 bytes in 0x20..0x7f. Columns: how many, their mean length,
total characters, the distribution of the 96 characters, its entropy, and for each of 77
patterns how many strings contain a match.

The reference tries every pattern on every string separately, which dominates its run time.
We join the strings with a newline (a byte no string contains, that ``.`` does not match and
that is a non-word character for ``\\b``), run each pattern once over the joined text, and map
each match back to its string: no pattern can match across the separator, so the count of
strings with a match is the same. Case-insensitive patterns that are plain words are searched
as lowercase words in a lowercased copy, which is equivalent for ASCII text and much faster.
"""

from __future__ import annotations

import re
from bisect import bisect_right

import numpy as np

from fedmetamal.features.ember.entropy import Searchable, byte_counts
from fedmetamal.features.ember.layout import STRING_PATTERN_NAMES

_RUNS = re.compile(rb"[\x20-\x7f]{5,}")
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_HEX4 = rb"[A-Fa-f0-9]{1,4}"
_MAC = rb"\b(?:[0-9A-Fa-f]{2}[:-]){5}(?:[0-9A-Fa-f]{2})\b"

#: Patterns matched case-sensitively (regular expressions over ASCII bytes).
_EXACT: dict[str, bytes] = {
    "url": rb"\b(?:http|https|ftp):\/\/[a-zA-Z0-9-._~:?#[\]@!$&'()*+,;=]+",
    "ipv4_addr": rb"\b(?:" + _OCTET + rb"\.){3}" + _OCTET + rb"\b",
    "ipv6_addr": rb"\b(?:" + _HEX4 + rb":){7}" + _HEX4 + rb"\b|\b(?:" + _HEX4 + rb":){1,7}:\b"
    + rb"|\b:" + _HEX4 + rb"(?::" + _HEX4 + rb"){1,6}\b",
    "mac_addr": _MAC,
    "email_addr": _MAC,  # the reference reuses the MAC pattern here; kept for parity
    "btc_wallet": rb"[13][a-km-zA-HJ-NP-Z1-9]{25,34}",
    "file_path": rb"\bC:/",
    "dos_msg": rb"!This program ",
    "registry_key": rb"\b(?:KHEY_|KHLM|HKCU)",
    "Invoke-Expression": rb"Invoke-Expression",
    "Invoke-Command": rb"Invoke-Command",
    "Start-process": rb"Start-process",
    "base64string": rb"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789\+/",
    "crypt": rb"crypt",
    **{name: re.escape(name.encode()) for name in ("/dev/", "/proc/", "/bin/", "/usr/", "/tmp/")},
    **{name: re.escape(name.encode()) for name in ("/URI", "/FlateDecode", "/EmbeddedFile")},
}  # fmt: skip

#: Case-insensitive patterns: column name -> lowercase text searched in the lowercased strings.
_FOLDED: dict[str, bytes] = {
    "get": b"get /", "post": b"post /", "http": b"http/", "http://": b"http://",
    "https://": b"https://", "ftp": b"ftp:", "useragent": b"user-agent", "<script": b"<script",
    "onlick": b"onclick",
    **{
        w: w.encode()
        for w in (
            "html", "javascript", "powershell", "cookie", "internet", "download", "connect",
            "base64", "encode", "decode", "cache", "certificate", "clipboard", "command",
            "create", "debug", "delete", "desktop", "directory", "disk", "environment", "enum",
            "exit", "file", "hostname", "install", "hidden", "keyboard", "memory", "module",
            "mutex", "password", "privilege", "process", "remote", "resource", "security",
            "service", "shell", "snapshot", "system", "thread", "token", "wallet", "window",
        )
    },
}  # fmt: skip
#: ``.click(`` is ``.click`` with any character first (``.`` is a wildcard in the reference).
_FOLDED_REGEX: dict[str, bytes] = {".click(": rb".click"}

_COMPILED = {n: re.compile(p) for n, p in _EXACT.items()}
_COMPILED.update({n: re.compile(p) for n, p in _FOLDED_REGEX.items()})
_FOLDED_NAMES = frozenset(_FOLDED) | frozenset(_FOLDED_REGEX)
if set(_COMPILED) | set(_FOLDED) != set(STRING_PATTERN_NAMES):  # pragma: no cover
    raise ImportError("ember strings: pattern table and column layout disagree")


def _strings_with_match(pattern: re.Pattern[bytes], text: bytes, starts: list[int]) -> int:
    """How many strings (starting at ``starts`` in ``text``) contain a match of ``pattern``."""
    found, last = 0, -1
    for match in pattern.finditer(text):
        index = bisect_right(starts, match.start()) - 1
        if index != last:
            found += 1
            last = index
    return found


def _strings_with_word(word: bytes, text: bytes, starts: list[int]) -> int:
    """How many strings contain ``word``: ``find`` from the start of the next string each time."""
    found, position = 0, text.find(word)
    while position >= 0:
        found += 1
        index = bisect_right(starts, position)  # the string after the one that matched
        if index >= len(starts):
            break
        position = text.find(word, starts[index])
    return found


def string_features(data: Searchable) -> np.ndarray:
    """The 177 string columns in float32."""
    runs = _RUNS.findall(data)  # type: ignore[call-overload]
    counts = np.zeros(len(STRING_PATTERN_NAMES), dtype=np.float32)
    if not runs:
        return np.hstack([[0, 0, 0], np.zeros(96), [0.0], counts]).astype(np.float32)
    text = b"\n".join(runs)
    lengths = [len(r) for r in runs]
    starts, position = [], 0
    for length in lengths:
        starts.append(position)
        position += length + 1
    chars = byte_counts(text)
    chars[0x0A] -= len(runs) - 1
    histogram = chars[0x20:0x80]
    total = int(histogram.sum())
    # The reference divides by a numpy int64, which promotes the float32 counts to float64.
    p = histogram.astype(np.float32) / np.int64(total)
    nonzero = np.flatnonzero(histogram)
    entropy = float(np.sum(-p[nonzero] * np.log2(p[nonzero])))
    lowered = text.lower()
    for i, name in enumerate(STRING_PATTERN_NAMES):
        if name in _FOLDED:
            counts[i] = _strings_with_word(_FOLDED[name], lowered, starts)
        elif name in _FOLDED_NAMES:
            counts[i] = _strings_with_match(_COMPILED[name], lowered, starts)
        else:
            counts[i] = _strings_with_match(_COMPILED[name], text, starts)
    mean_length = sum(lengths) / len(lengths)
    distribution = histogram.tolist()
    return np.hstack(
        [len(runs), mean_length, total, np.asarray(distribution) / float(total), entropy, counts]
    ).astype(np.float32)
