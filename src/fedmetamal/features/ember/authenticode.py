"""Authenticode signature summary: signatures, chain depth, self-signed certs, countersigning.

The certificate table is located the way signify (the reference's parser) locates it: from the
raw optional header, not from pefile, and only when it lies inside the file after the headers.
Each WIN_CERTIFICATE of type PKCS#7 holds a SignedData; signatures nested in its signer's
unauthenticated attributes count too. A malformed structure sets ``parse_error`` and keeps what
was counted before it, as the reference does. Only the fields the columns need are read, with
our small DER reader (no cryptography, no verification: the reference does not verify either).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pefile
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from fedmetamal.features.ember.der import (
    OCTET_STRING,
    SEQUENCE,
    SET,
    DerError,
    Node,
    parse,
)
from fedmetamal.features.ember.entropy import Searchable

WIDTH = 8
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
_OPUS_INFO = "1.3.6.1.4.1.311.2.1.12"
_NESTED = "1.3.6.1.4.1.311.2.4.1"
_COUNTER_SIGNATURE = "1.2.840.113549.1.9.6"
_TIME_STAMP_TOKEN = "1.3.6.1.4.1.311.3.3.1"
_SIGNING_TIME = "1.2.840.113549.1.9.5"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_DATA = "1.2.840.113549.1.7.1"
#: Digest algorithms signify accepts (md5, sha1, sha256, sha384, sha512).
_DIGESTS = frozenset(
    {
        "1.2.840.113549.2.5",
        "1.3.14.3.2.26",
        "2.16.840.1.101.3.4.2.1",
        "2.16.840.1.101.3.4.2.2",
        "2.16.840.1.101.3.4.2.3",
    }
)
_PKCS7_TYPE = 2
_REVISION = 0x200


@dataclass
class Signature:
    """What the columns need from one SignedData."""

    has_program_name: bool
    signing_time: float | None
    certificates: list[tuple[bytes, bytes]]  # (issuer, subject) DER, in stored order
    nested: list[Signature] = field(default_factory=list)


def _cert_table(data: Searchable) -> tuple[int, int] | None:
    """(offset, size) of the certificate table when signify would read one, else None."""
    head = bytes(data[:64])  # type: ignore[index]
    size = len(data)
    if head[:2] != b"MZ" or len(head) < 64:
        return None
    lfanew = struct.unpack_from("<I", head, 0x3C)[0]
    if lfanew >= size or bytes(data[lfanew : lfanew + 4]) != b"PE\0\0":  # type: ignore[index]
        return None
    optional_size = int.from_bytes(bytes(data[lfanew + 20 : lfanew + 22]), "little")  # type: ignore[index]
    optional = lfanew + 24
    if optional + optional_size > size or optional_size < 68:
        return None
    magic = int.from_bytes(bytes(data[optional : optional + 2]), "little")  # type: ignore[index]
    offsets = {0x10B: (92, 128), 0x20B: (108, 144)}
    if magic not in offsets:
        return None
    rva_count_at, entry_at = (optional + o for o in offsets[magic])
    if optional + optional_size < rva_count_at + 4:
        return None
    if int.from_bytes(bytes(data[rva_count_at : rva_count_at + 4]), "little") < 5:  # type: ignore[index]
        return None
    if optional + optional_size < entry_at + 8:
        return None
    address, length = struct.unpack("<II", bytes(data[entry_at : entry_at + 8]))  # type: ignore[index]
    if not length or address < optional + optional_size or address + length > size:
        return None
    return address, length


def _entries(data: Searchable, table: tuple[int, int]) -> list[bytes]:
    """PKCS#7 blobs of the table, stopping (like signify) at the first bad entry."""
    blobs, position = [], table[0]
    end = table[0] + table[1]
    while position < end:
        if position + 8 > len(data):
            break
        length, revision, kind = struct.unpack("<IHH", bytes(data[position : position + 8]))  # type: ignore[index]
        if length <= 8 or position + length > end or revision != _REVISION:
            break
        if kind == _PKCS7_TYPE:
            blobs.append(bytes(data[position + 8 : position + length]))  # type: ignore[index]
        position += length + (8 - length % 8) % 8
    return blobs


def _attributes(node: Node) -> dict[str, list[Node]]:
    """Attribute OID -> its values, from a SET OF Attribute."""
    found: dict[str, list[Node]] = {}
    for attribute in node.children():
        parts = attribute.children()
        if attribute.tag != SEQUENCE or len(parts) != 2 or parts[1].tag != SET:
            raise DerError("malformed attribute")
        found.setdefault(parts[0].oid(), []).extend(parts[1].children())
    return found


def _one(attributes: dict[str, list[Node]], oid: str) -> Node | None:
    values = attributes.get(oid)
    if values is not None and len(values) != 1:
        raise DerError(f"attribute {oid} must have exactly one value")
    return values[0] if values else None


def _signer_attributes(
    signer: Node, expected_content: str, required: tuple[str, ...]
) -> tuple[dict[str, list[Node]], dict[str, list[Node]]]:
    """A SignerInfo's attributes, with the checks signify makes while parsing one."""
    parts = signer.children()
    if len(parts) < 5 or parts[1].tag != SEQUENCE:  # sid must be issuerAndSerialNumber
        raise DerError("SignerInfo without issuerAndSerialNumber")
    digest = parts[2].children()
    if digest[0].oid() not in _DIGESTS or (len(digest) > 1 and digest[1].tag != 0x05):
        raise DerError("SignerInfo digest algorithm not accepted")
    authenticated: dict[str, list[Node]] = {}
    unauthenticated: dict[str, list[Node]] = {}
    for part in parts[3:]:
        if part.tag == 0xA0:
            authenticated = _attributes(part)
        elif part.tag == 0xA1:
            unauthenticated = _attributes(part)
    if not all(oid in authenticated for oid in required):
        raise DerError("SignerInfo lacks required authenticated attributes")
    _one(authenticated, _MESSAGE_DIGEST)
    content_type = _one(authenticated, _CONTENT_TYPE)
    if content_type is not None and content_type.oid() != expected_content:
        raise DerError("SignerInfo content type is not the expected one")
    _one(authenticated, _SIGNING_TIME)
    _one(unauthenticated, _COUNTER_SIGNATURE)
    return authenticated, unauthenticated


def _signed_data(content_info: Node, expected_content: str) -> tuple[Node, list[Node]]:
    """The SignedData of a ContentInfo, checked, and its signer infos."""
    parts = content_info.children()
    if len(parts) < 2 or parts[0].oid() != _SIGNED_DATA or parts[1].tag != 0xA0:
        raise DerError("not a PKCS#7 SignedData")
    signed = parts[1].children()[0]
    fields = signed.children()
    if len(fields) < 4 or fields[2].children()[0].oid() != expected_content:
        raise DerError("unexpected SignedData content type")
    if any(f.tag == 0xA1 for f in fields):
        raise DerError("SignedData carries CRLs")
    signers = fields[-1]
    if signers.tag != SET:
        raise DerError("SignedData has no signerInfos")
    return signed, signers.children()


def _certificates(signed: Node) -> list[tuple[bytes, bytes]]:
    """(issuer, subject) of each certificate stored in a SignedData.

    Each certificate is also decoded by ``cryptography`` (validity times and extensions
    included), because signify rejects a signature whose certificates do not decode.
    """
    pairs = []
    for part in signed.children():
        if part.tag != 0xA0:
            continue
        for cert in part.children():
            decoded = x509.load_der_x509_certificate(cert.raw)
            _ = (decoded.not_valid_before_utc, decoded.not_valid_after_utc, decoded.extensions)
            decoded.public_key()  # an unknown key algorithm fails in signify too
            tbs = cert.children()[0].children()
            offset = 1 if tbs[0].tag == 0xA0 else 0  # optional explicit version
            pairs.append((tbs[offset + 2].raw, tbs[offset + 4].raw))
    return pairs


def _tst_time(token: Node) -> float:
    """genTime of an RFC 3161 time-stamp token, as a POSIX timestamp."""
    signed, _ = _signed_data(token, _TST_INFO)
    encapsulated = signed.children()[2].children()
    if len(encapsulated) < 2 or encapsulated[1].children()[0].tag != OCTET_STRING:
        raise DerError("time-stamp token has no TSTInfo")
    tst = parse(encapsulated[1].children()[0].content).children()
    return tst[4].time().timestamp()


def _counter_time(counter: Node) -> float:
    required = (_CONTENT_TYPE, _SIGNING_TIME, _MESSAGE_DIGEST)
    authenticated, _ = _signer_attributes(counter, _DATA, required)
    times = authenticated.get(_SIGNING_TIME)
    if not times:
        raise DerError("countersignature without signing time")
    return times[0].time().timestamp()


def _check_indirect_data(signed: Node) -> None:
    """SpcIndirectDataContent must describe a PE image digest with an accepted algorithm."""
    encapsulated = signed.children()[2].children()
    if len(encapsulated) < 2:
        raise DerError("SignedData has no SpcIndirectDataContent")
    data, digest = encapsulated[1].children()[0].children()[:2]
    if data.children()[0].oid() != _PE_IMAGE_DATA:
        raise DerError("SpcIndirectDataContent does not hold SpcPeImageData")
    algorithm = digest.children()[0].children()
    if algorithm[0].oid() not in _DIGESTS or (len(algorithm) > 1 and algorithm[1].tag != 0x05):
        raise DerError("SpcIndirectDataContent digest algorithm not accepted")


def _signature(content_info: Node) -> Signature:
    signed, signers = _signed_data(content_info, _INDIRECT_DATA)
    _check_indirect_data(signed)
    if len(signers) != 1:
        raise DerError(f"SignedData has {len(signers)} signers, not 1")
    required = (_CONTENT_TYPE, _MESSAGE_DIGEST)
    authenticated, unauthenticated = _signer_attributes(signers[0], _INDIRECT_DATA, required)
    program = False
    if _OPUS_INFO in authenticated:
        if len(authenticated[_OPUS_INFO]) != 1:
            raise DerError("more than one SpcSpOpusInfo")
        program = any(p.tag == 0xA0 for p in authenticated[_OPUS_INFO][0].children())
    nested = [_signature(n) for n in unauthenticated.get(_NESTED, [])]
    counters = unauthenticated.get(_COUNTER_SIGNATURE, [])
    tokens = unauthenticated.get(_TIME_STAMP_TOKEN, [])
    if counters and tokens:
        raise DerError("both a countersignature and an RFC 3161 time stamp")
    if len(tokens) > 1:
        raise DerError("more than one RFC 3161 time stamp")
    signing_time = None
    if tokens:
        signing_time = _tst_time(tokens[0])
    elif counters:
        signing_time = _counter_time(counters[0])
    return Signature(program, signing_time, _certificates(signed), nested)


def _walk(signature: Signature) -> list[Signature]:
    return [signature, *(s for n in signature.nested for s in _walk(n))]


def authenticode_features(data: Searchable, pe: pefile.PE) -> np.ndarray:
    """The 8 Authenticode columns (all 0 for an unsigned file)."""
    num, self_signed, no_program, no_counter, error, depth = 0, 0, 0, 0, 0, 0
    latest, diff = 0.0, 0.0
    table = _cert_table(data)
    try:
        for blob in _entries(data, table) if table else []:
            for sig in _walk(_signature(parse(blob))):
                num += 1
                no_program |= not sig.has_program_name
                if sig.signing_time is not None:
                    latest = max(latest, sig.signing_time)
                    diff = sig.signing_time - pe.FILE_HEADER.TimeDateStamp
                else:
                    no_counter = 1
                depth = max(depth, len(sig.certificates))
                self_signed |= any(i == s for i, s in sig.certificates[:-1])
    except (DerError, IndexError, ValueError, UnsupportedAlgorithm):  # also cryptography's
        error = 1
    values = [num, self_signed, no_program, no_counter, error, depth, latest, diff]
    return np.array(values, dtype=np.float32)
