"""TLS material and credentials, exercised with a real gRPC server on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net import tls
from fedmetamal.net.tls import (
    channel_credentials,
    ensure_server_tls,
    is_loopback,
    issue_client_certificate,
    read_pem,
    server_credentials,
)

METHOD = "/fmmtest.Echo/Call"
CALL_TIMEOUT_S = 20.0  # an upper bound so a broken handshake cannot hang the suite


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"echo:" + request


@contextmanager
def _server(creds: grpc.ServerCredentials) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("fmmtest.Echo", {"Call": handler}),)
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def _call(target: str, creds: grpc.ChannelCredentials) -> bytes:
    with grpc.secure_channel(target, creds) as channel:
        call = channel.unary_unary(METHOD)  # no serializers: raw bytes in and out
        return call(b"hi", timeout=CALL_TIMEOUT_S)


def _server_creds(files: tls.TlsFiles, client_ca: bytes | None = None) -> grpc.ServerCredentials:
    return server_credentials(
        read_pem(files.server_cert, "server certificate"),
        read_pem(files.server_key, "server key"),
        client_ca,
    )


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(
        sans.get_values_for_type(x509.DNSName)
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tls.TlsFiles:
    return ensure_server_tls(tmp_path_factory.mktemp("tls"), ["fed.example.org", "10.1.2.3"])


def test_certificates_have_the_right_shape(files: tls.TlsFiles) -> None:
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=3649)
    life = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=364) < life < dt.timedelta(days=367)
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert _sans(files.server_cert) == {
        "fed.example.org",
        "10.1.2.3",
        "localhost",
        "127.0.0.1",
        "::1",
    }
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in sans.get_values_for_type(x509.IPAddress)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_key_files_are_owner_only(files: tls.TlsFiles) -> None:
    for key in (files.server_key, files.server_key.parent / tls.CA_KEY):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_tls_call_works_with_the_ca(files: tls.TlsFiles) -> None:
    ca = read_pem(files.ca_cert, "CA certificate")
    with _server(_server_creds(files)) as port:
        assert _call(f"localhost:{port}", channel_credentials(ca)) == b"echo:hi"
        # The IP SAN lets clients dial the address directly too.
        assert _call(f"127.0.0.1:{port}", channel_credentials(ca)) == b"echo:hi"


def test_client_trusting_another_ca_fails(files: tls.TlsFiles, tmp_path: Path) -> None:
    other = ensure_server_tls(tmp_path / "other", [])
    other_ca = read_pem(other.ca_cert, "CA certificate")
    with _server(_server_creds(files)) as port, pytest.raises(grpc.RpcError) as info:
        _call(f"localhost:{port}", channel_credentials(other_ca))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(files: tls.TlsFiles) -> None:
    tls_dir = files.ca_cert.parent
    ca = read_pem(files.ca_cert, "CA certificate")
    cert_path, key_path = issue_client_certificate(tls_dir, "participant-1")
    client = x509.load_pem_x509_certificate(cert_path.read_bytes())
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku
    if os.name == "posix":
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    with _server(_server_creds(files, client_ca=ca)) as port:
        target = f"localhost:{port}"
        with pytest.raises(grpc.RpcError) as info:
            _call(target, channel_credentials(ca))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        creds = channel_credentials(
            ca, read_pem(cert_path, "client certificate"), read_pem(key_path, "client key")
        )
        assert _call(target, creds) == b"echo:hi"


def test_client_certificate_from_another_ca_is_refused(files: tls.TlsFiles, tmp_path: Path) -> None:
    ca = read_pem(files.ca_cert, "CA certificate")
    other_dir = tmp_path / "other"
    ensure_server_tls(other_dir, [])
    cert_path, key_path = issue_client_certificate(other_dir, "intruder")
    creds = channel_credentials(ca, cert_path.read_bytes(), key_path.read_bytes())
    with _server(_server_creds(files, client_ca=ca)) as port, pytest.raises(grpc.RpcError):
        _call(f"localhost:{port}", creds)


def test_rerun_reuses_then_reissues_for_new_host(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path, ["a.example"])
    snapshot = {p: p.read_bytes() for p in tmp_path.iterdir()}
    again = ensure_server_tls(tmp_path, ["A.example", "localhost"])  # same set, other spelling
    assert again == first
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == snapshot

    ensure_server_tls(tmp_path, ["a.example", "b.example", "[2001:db8::1]"])
    assert first.ca_cert.read_bytes() == snapshot[first.ca_cert]
    assert (tmp_path / tls.CA_KEY).read_bytes() == snapshot[tmp_path / tls.CA_KEY]
    assert first.server_cert.read_bytes() != snapshot[first.server_cert]
    assert first.server_key.read_bytes() != snapshot[first.server_key]
    assert {"a.example", "b.example", "2001:db8::1"} <= _sans(first.server_cert)
    ca = x509.load_pem_x509_certificate(first.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(first.server_cert.read_bytes()).verify_directly_issued_by(ca)


def test_expiring_or_broken_server_cert_is_reissued(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, [])
    ca_cert, ca_key = tls._load_ca(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    short = tls._issue(
        ca_cert,
        ca_key,
        key,
        common_name="localhost",
        sans=[tls._san(h) for h in tls.DEFAULT_HOSTS],
        usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
        days=10,
    )
    files.server_cert.write_bytes(short.public_bytes(tls.serialization.Encoding.PEM))
    tls._write_key(files.server_key, key)
    ensure_server_tls(tmp_path, [])
    renewed = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert renewed.not_valid_after_utc - tls._now() > dt.timedelta(days=300)

    files.server_key.write_text("garbage")
    ensure_server_tls(tmp_path, [])
    read_pem(files.server_key, "server key")  # PEM again


def test_missing_ca_makes_a_new_one(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, [])
    old_ca = files.ca_cert.read_bytes()
    (tmp_path / tls.CA_KEY).unlink()
    ensure_server_tls(tmp_path, [])
    assert files.ca_cert.read_bytes() != old_ca
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(files.server_cert.read_bytes()).verify_directly_issued_by(ca)


def test_bad_hosts_and_client_names(tmp_path: Path) -> None:
    with pytest.raises(FedMetaMalError, match="not a valid DNS name"):
        ensure_server_tls(tmp_path, ["bad host"])
    with pytest.raises(FedMetaMalError, match="no usable CA"):
        issue_client_certificate(tmp_path / "empty", "p1")
    ensure_server_tls(tmp_path, [])
    with pytest.raises(FedMetaMalError, match="invalid client certificate name"):
        issue_client_certificate(tmp_path, "../escape")


def test_read_pem_errors(tmp_path: Path) -> None:
    with pytest.raises(FedMetaMalError) as info:
        read_pem(tmp_path / "missing.pem", "CA certificate")
    assert str(tmp_path / "missing.pem") in str(info.value)
    assert "CA certificate" in str(info.value)
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x00")
    with pytest.raises(FedMetaMalError, match="not a PEM file but should hold the CA certificate"):
        read_pem(not_pem, "CA certificate")


def test_channel_credentials_need_cert_and_key_together() -> None:
    with pytest.raises(FedMetaMalError, match="--client-cert and --client-key"):
        channel_credentials(None, client_cert_pem=b"x")
    assert isinstance(channel_credentials(None), grpc.ChannelCredentials)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("10.0.0.1", False),
        ("fed.example.org", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
