"""The participant identity file: round trip, permissions, corrupt files, signing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net import auth
from fedmetamal.net.identity import ParticipantIdentity, default_state_dir, write_file_atomic

METHOD = "/fedmetamal.v1.FederationService/Heartbeat"


def _identity() -> ParticipantIdentity:
    return ParticipantIdentity(
        participant_id="p-42",
        server="fed.example.org:50051",
        name="lab-å",
        private_key=ParticipantIdentity.generate_key(),
    )


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDMETAMAL_HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / "participant"
    monkeypatch.delenv("FEDMETAMAL_HOME")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "user"))
    assert default_state_dir() == tmp_path / "user" / ".fedmetamal" / "participant"


def test_save_load_round_trip(tmp_path: Path) -> None:
    ident = _identity()
    path = tmp_path / "state" / "identity.json"
    ident.save(path)
    loaded = ParticipantIdentity.load(path)
    assert (loaded.participant_id, loaded.server, loaded.name) == (
        "p-42",
        "fed.example.org:50051",
        "lab-å",
    )
    assert auth.public_key_bytes(loaded.private_key) == auth.public_key_bytes(ident.private_key)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == 1
    assert doc["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    # No temp files are left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["identity.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    path.write_text("old")
    path.chmod(0o644)
    _identity().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_file_atomic_replaces(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "file.txt"
    write_file_atomic(path, b"one")
    write_file_atomic(path, b"two", private=True)
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def _other_key_pem() -> str:
    key = generate_private_key(SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"version": 1}',
        "VALID_BUT_KEY=garbage",
        "VALID_BUT_VERSION=99",
        "VALID_BUT_ID=bad id",
        "VALID_BUT_KEY=ec",
    ],
)
def test_corrupt_file_says_enroll_again(tmp_path: Path, content: str) -> None:
    path = tmp_path / "identity.json"
    if content.startswith("VALID_BUT_"):
        _identity().save(path)
        doc = json.loads(path.read_text())
        field, _, value = content.removeprefix("VALID_BUT_").partition("=")
        if field == "KEY":
            doc["private_key"] = _other_key_pem() if value == "ec" else value
        elif field == "VERSION":
            doc["version"] = int(value)
        else:
            doc["participant_id"] = value
        content = json.dumps(doc)
    path.write_text(content)
    with pytest.raises(FedMetaMalError) as info:
        ParticipantIdentity.load(path)
    message = str(info.value)
    assert f"identity file {path} is unreadable/corrupt" in message
    assert "delete it and enroll again with a new join token" in message


def test_missing_file_says_enroll(tmp_path: Path) -> None:
    with pytest.raises(FedMetaMalError, match="no participant identity"):
        ParticipantIdentity.load(tmp_path / "nope.json")


def test_metadata_is_verifiable(tmp_path: Path) -> None:
    ident = _identity()
    ident.save(tmp_path / "identity.json")
    loaded = ParticipantIdentity.load(tmp_path / "identity.json")
    keys = {ident.participant_id: auth.public_key_bytes(ident.private_key)}
    verifier = auth.RequestVerifier(keys.get)
    digest = "c" * 64
    md = auth.metadata_dict(loaded.metadata(METHOD, digest))
    assert verifier.verify(md, METHOD, digest) == "p-42"
