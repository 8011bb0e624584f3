"""A minimal DER reader: just enough ASN.1 to walk Authenticode signatures without a library.

Only definite lengths are accepted (DER); anything malformed raises :class:`DerError`, which
callers turn into the ``parse_error`` flag rather than an exception escaping.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
OCTET_STRING = 0x04
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class DerError(ValueError):
    """The bytes are not the DER structure expected."""


@dataclass(frozen=True)
class Node:
    """One TLV element: its tag byte, where it starts, and where its content lies in ``data``."""

    data: bytes
    tag: int
    header: int
    start: int
    end: int

    @property
    def content(self) -> bytes:
        return self.data[self.start : self.end]

    @property
    def raw(self) -> bytes:
        """The whole element, header included (used to compare names byte for byte)."""
        return self.data[self.header : self.end]

    def children(self) -> list[Node]:
        """The elements inside a constructed element, in order."""
        if not self.tag & 0x20:
            raise DerError(f"element with tag 0x{self.tag:02x} is not constructed")
        items, pos = [], self.start
        while pos < self.end:
            node = read(self.data, pos, self.end)
            items.append(node)
            pos = node.end
        return items

    def oid(self) -> str:
        """Dotted form of an OBJECT IDENTIFIER element."""
        if self.tag != OID or self.end <= self.start:
            raise DerError("expected an OBJECT IDENTIFIER")
        body = self.content
        parts, value = [], 0
        for byte in body:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                parts.append(value)
                value = 0
        if body[-1] & 0x80:
            raise DerError("truncated OBJECT IDENTIFIER")
        first = min(parts[0] // 40, 2)
        return ".".join(str(p) for p in [first, parts[0] - 40 * first, *parts[1:]])

    def time(self) -> dt.datetime:
        """A UTCTime or GeneralizedTime element as an aware UTC datetime."""
        text = self.content.decode("ascii", errors="strict").rstrip("Z")
        try:
            if self.tag == UTC_TIME:
                year = int(text[:2])
                stamp = dt.datetime.strptime(text[2:14].ljust(10, "0")[:10], "%m%d%H%M%S")
                stamp = stamp.replace(year=1900 + year if year >= 50 else 2000 + year)
            elif self.tag == GENERALIZED_TIME:
                whole, _, fraction = text.partition(".")
                stamp = dt.datetime.strptime(whole, "%Y%m%d%H%M%S")
                if fraction:
                    stamp = stamp.replace(microsecond=int(fraction[:6].ljust(6, "0")))
            else:
                raise DerError(f"expected a time, found tag 0x{self.tag:02x}")
        except ValueError as err:
            raise DerError(f"bad time value {text!r}") from err
        return stamp.replace(tzinfo=dt.UTC)


def read(data: bytes, pos: int, limit: int) -> Node:
    """The element starting at ``pos`` that must end by ``limit``."""
    if pos + 2 > limit:
        raise DerError("element header runs past its container")
    header = pos
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in Authenticode")
    pos += 2
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > limit:
            raise DerError("indefinite or oversized length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        length = first
    if pos + length > limit:
        raise DerError("element runs past its container")
    return Node(data, tag, header, pos, pos + length)


def parse(data: bytes) -> Node:
    """The single top-level element of ``data`` (trailing padding is allowed)."""
    return read(data, 0, len(data))
