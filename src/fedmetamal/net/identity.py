"""A participant's enrolled identity: its id, server and Ed25519 signing key, kept on disk.

The file holds an unencrypted private key, so it is written atomically with mode 0600 (where
the OS has POSIX modes); losing or corrupting it means enrolling again with a new join token.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.auth import AuthError, check_participant_id, sign_metadata

IDENTITY_VERSION = 1
IDENTITY_FILE = "identity.json"


def default_state_dir() -> Path:
    """$FEDMETAMAL_HOME/participant, else ~/.fedmetamal/participant."""
    home = os.environ.get("FEDMETAMAL_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".fedmetamal"
    return base / "participant"


def write_file_atomic(path: Path, data: bytes, private: bool = False) -> None:
    """Write ``data`` to ``path`` via a temp file + os.replace, so a crash never leaves half a file.

    ``private`` makes the file owner-only (0600) on POSIX; the temp file is created 0600 by
    mkstemp, so a secret is never readable by others even for a moment. On Windows the chmod
    is skipped (the file inherits the directory's ACL).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.name == "posix":
            tmp.chmod(0o600 if private else 0o644)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@dataclass
class ParticipantIdentity:
    """What a participant needs to sign its calls after enrollment."""

    participant_id: str
    server: str
    name: str
    private_key: Ed25519PrivateKey

    @staticmethod
    def generate_key() -> Ed25519PrivateKey:
        """A fresh Ed25519 key; its public half goes to the server in Enroll."""
        return Ed25519PrivateKey.generate()

    def save(self, path: Path) -> None:
        """Write the identity JSON (private key as unencrypted PKCS8 PEM), mode 0600."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        doc = {
            "version": IDENTITY_VERSION,
            "participant_id": self.participant_id,
            "server": self.server,
            "name": self.name,
            "private_key": pem,
        }
        data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        write_file_atomic(Path(path), data, private=True)

    @classmethod
    def load(cls, path: Path) -> ParticipantIdentity:
        """Read an identity written by :meth:`save`; a clear error when it is missing or bad."""
        path = Path(path)
        if not path.exists():
            raise FedMetaMalError(
                f"no participant identity at {path};",
                "enroll first: run `fedmetamal join` with --token or --token-file",
            )
        fix = "delete it and enroll again with a new join token"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("version") != IDENTITY_VERSION:
                raise ValueError(f"unsupported version {doc.get('version')!r}")
            fields = {}
            for key in ("participant_id", "server", "name", "private_key"):
                value = doc.get(key)
                if not isinstance(value, str):
                    raise ValueError(f"field {key!r} missing or not a string")
                fields[key] = value
            check_participant_id(fields["participant_id"])
            key = serialization.load_pem_private_key(
                fields["private_key"].encode("ascii"), password=None
            )
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("private key is not an Ed25519 key")
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm, AuthError) as exc:
            raise FedMetaMalError(
                f"identity file {path} is unreadable/corrupt ({exc});", fix
            ) from None
        return cls(
            participant_id=fields["participant_id"],
            server=fields["server"],
            name=fields["name"],
            private_key=key,
        )

    def metadata(self, method: str, digest: str) -> list[tuple[str, str]]:
        """Signed metadata for one call of ``method`` whose body has ``digest``."""
        return sign_metadata(self.private_key, self.participant_id, method, digest)
