"""TLS for the federation: a private CA, the server certificate it signs, and gRPC credentials.

``fedmetamal serve`` generates a CA and server certificate on first start so the federation is
encrypted without any manual PKI work; participants trust the CA file (``ca.pem``) they are
given with their join token. Optional mutual TLS uses client certificates from the same CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.identity import write_file_atomic

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CLIENTS_DIR = "clients"

CA_DAYS = 3650
SERVER_DAYS = 365
CLIENT_DAYS = 365
RENEW_BEFORE_DAYS = 30
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
# Certificates start an hour in the past so a peer whose clock lags a little accepts them.
_BACKDATE = dt.timedelta(hours=1)
_CLIENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class TlsFiles:
    """Where the server's TLS material lies (CA certificate, server certificate and key)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


# --------------------------------------------------------------------------- issuing


def ensure_server_tls(tls_dir: Path, hosts: Sequence[str]) -> TlsFiles:
    """Create (or reuse) a CA and a server certificate valid for ``hosts`` in ``tls_dir``.

    Existing files are reused while the server certificate is signed by the CA, covers every
    requested host and does not expire within 30 days; otherwise a new server certificate is
    issued with the same CA, so participants that trust ``ca.pem`` keep working. A new CA is
    made only when the CA files are missing, unreadable or about to expire.
    """
    tls_dir = Path(tls_dir)
    names = _normalise_hosts([*hosts, *DEFAULT_HOSTS])
    files = TlsFiles(tls_dir / CA_CERT, tls_dir / SERVER_CERT, tls_dir / SERVER_KEY)
    ca = _load_ca(tls_dir)
    if ca is None:
        ca = _create_ca(tls_dir)
    elif _server_cert_ok(files, ca[0], names):
        return files
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        ca_cert,
        ca_key,
        key,
        common_name=names[0],
        sans=[_san(name) for name in names],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        days=SERVER_DAYS,
    )
    _write_key(files.server_key, key)
    write_file_atomic(files.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def issue_client_certificate(tls_dir: Path, name: str) -> tuple[Path, Path]:
    """Issue a clientAuth certificate for mutual TLS, signed by the CA in ``tls_dir``.

    Returns (certificate, key) under ``tls_dir/clients/``; hand both to the participant.
    """
    tls_dir = Path(tls_dir)
    if not _CLIENT_NAME_RE.fullmatch(name):
        raise FedMetaMalError(
            f"invalid client certificate name {name!r};",
            "use 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
        )
    ca = _load_ca(tls_dir)
    if ca is None:
        raise FedMetaMalError(
            f"no usable CA in {tls_dir} (expected {CA_CERT} and {CA_KEY});",
            "start `fedmetamal serve` once so it creates the CA, or pass the server's TLS "
            "directory",
        )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        ca[0],
        ca[1],
        key,
        common_name=name,
        sans=[x509.DNSName(name)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        days=CLIENT_DAYS,
    )
    cert_path = tls_dir / CLIENTS_DIR / f"{name}.pem"
    key_path = tls_dir / CLIENTS_DIR / f"{name}.key"
    _write_key(key_path, key)
    write_file_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _normalise_hosts(hosts: Sequence[str]) -> list[str]:
    """Strip brackets/blanks, lower-case names, canonicalise IPs, drop duplicates (keep order)."""
    out: list[str] = []
    for raw in hosts:
        host = raw.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            continue
        if _is_ip(host):
            host = str(ipaddress.ip_address(host))
        else:
            host = host.lower().rstrip(".")
            if not host.isascii():
                raise FedMetaMalError(
                    f"TLS host name {raw!r} is not ASCII;",
                    "give its punycode form (xn--...) in --tls-hosts",
                )
            if not re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", host):
                raise FedMetaMalError(
                    f"TLS host name {raw!r} is not a valid DNS name or IP address;",
                    "pass host names or IP addresses separated by commas in --tls-hosts",
                )
        if host not in out:
            out.append(host)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _san(host: str) -> x509.GeneralName:
    if _is_ip(host):
        return x509.IPAddress(ipaddress.ip_address(host))
    return x509.DNSName(host)


def _create_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FedMetaMal"),
            x509.NameAttribute(NameOID.COMMON_NAME, "FedMetaMal federation CA"),
        ]
    )
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(tls_dir / CA_KEY, key)
    write_file_atomic(tls_dir / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
) -> x509.Certificate:
    now = _now()
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FedMetaMal"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_file_atomic(path, pem, private=True)


def _load_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA in ``tls_dir`` when both files parse, match and it is not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate((tls_dir / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((tls_dir / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    try:
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    if cert.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_BEFORE_DAYS + SERVER_DAYS):
        # A CA close to its end would cap new server certificates short; start a new one.
        return None
    return cert, key


def _server_cert_ok(files: TlsFiles, ca_cert: x509.Certificate, names: Sequence[str]) -> bool:
    """True when the stored server certificate can be kept for ``names``."""
    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (
        OSError,
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        InvalidSignature,
        x509.ExtensionNotFound,
    ):
        return False
    if key.public_key() != cert.public_key():
        return False
    if cert.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    have = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    have |= {name.lower() for name in sans.get_values_for_type(x509.DNSName)}
    return all(name in have for name in names)


# --------------------------------------------------------------------------- gRPC credentials


def read_pem(path: Path, what: str) -> bytes:
    """Read a PEM file, with an error that names the path and what it should hold."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FedMetaMalError(
            f"{what} file {path} does not exist;", f"pass the path of the {what} (PEM)"
        ) from None
    except OSError as exc:
        raise FedMetaMalError(
            f"cannot read {what} file {path}: {exc.strerror or exc};",
            "check the path and its permissions",
        ) from None
    if b"-----BEGIN " not in data:
        raise FedMetaMalError(
            f"{path} is not a PEM file but should hold the {what};",
            f"pass the PEM-encoded {what} (text starting with -----BEGIN)",
        )
    return data


def server_credentials(
    cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None = None
) -> grpc.ServerCredentials:
    """Server TLS credentials; with ``client_ca_pem`` clients must present a certificate."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=client_ca_pem,
        require_client_auth=client_ca_pem is not None,
    )


def channel_credentials(
    ca_pem: bytes | None,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
) -> grpc.ChannelCredentials:
    """Client TLS credentials trusting ``ca_pem`` (None: the system roots), optional mTLS."""
    if (client_cert_pem is None) != (client_key_pem is None):
        raise FedMetaMalError(
            "a client certificate needs its key and a key needs its certificate;",
            "pass both --client-cert and --client-key, or neither",
        )
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client_key_pem,
        certificate_chain=client_cert_pem,
    )


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1; wildcard binds (0.0.0.0, ::) are not loopback."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
