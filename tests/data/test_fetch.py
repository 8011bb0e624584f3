"""``data fetch`` against a loopback HTTP server serving small archives in the real layouts.

Nothing here leaves 127.0.0.1: the server runs in a thread and the catalog entries are copied
with the server's address and the fixtures' checksums.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fedmetamal.cli import run as run_cli
from fedmetamal.config import DatasetConfig
from fedmetamal.data import catalog
from fedmetamal.data.catalog import CATALOG, RemoteDataset
from fedmetamal.data.download import FetchError
from fedmetamal.data.fetch import MARKER, fetch, fetch_state, part_path
from fedmetamal.data.inventory import kind_of
from fedmetamal.data.sources import load_dataset

EMBER_V2_WIDTH = 2381


# --------------------------------------------------------------------------- loopback server


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer

    def do_GET(self) -> None:
        srv = self.server
        asked = self.headers.get("Range")
        srv.requests.append((self.path, asked))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if asked and srv.ranges:
            start = int(re.match(r"bytes=(\d+)-", asked).group(1))  # type: ignore[union-attr]
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        cut = srv.cut_after.pop(self.path, None)
        if cut is not None:  # send part of the body, then drop the connection
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class FixtureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mirror"

    def serve(self, name: str, body: bytes) -> None:
        self.files[f"/mirror/{name}"] = body


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    srv = FixtureServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# --------------------------------------------------------------------------- fixture archives


def _raw_record(i: int, label: int) -> dict[str, object]:
    """One EMBER raw-feature line with the fields the real files start with."""
    return {
        "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
        "appeared": f"2018-{1 + i % 12:02d}",
        "label": label,
        "avclass": "" if label != 1 else ("emotet" if i % 2 else "xtrat"),
        "histogram": [i % 7] * 256,
        "byteentropy": [0] * 256,
    }


def _tar(members: dict[str, bytes], compression: str = "bz2") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ember_raw_members(year: int = 2018) -> dict[str, bytes]:
    """The layout of ember_dataset_<year>_2.tar.bz2: ember<year>/ with JSON-lines splits."""
    labels = [0, 1, -1, 1, 0, 1]

    def lines(offset: int) -> bytes:
        rows = [_raw_record(offset + i, lab) for i, lab in enumerate(labels)]
        return "".join(json.dumps(r) + "\n" for r in rows).encode()

    top = f"ember{year}"
    return {
        f"{top}/train_features_0.jsonl": lines(0),
        f"{top}/train_features_1.jsonl": lines(10),
        f"{top}/test_features.jsonl": lines(20),
        f"{top}/ember_model_{year}.txt": b"tree\nversion=v2\n",
    }


def ember_vectorized_members(rows: tuple[int, int] = (12, 8)) -> dict[str, bytes]:
    """The same folder after EMBER's create_vectorized_features and create_metadata."""
    rng = np.random.default_rng(0)
    members = ember_raw_members()
    meta = ["sha256,appeared,label,avclass,subset"]
    for split, n in zip(("train", "test"), rows, strict=True):
        y = np.array([(1, 0, -1)[i % 3] if split == "train" else (1, 0)[i % 2] for i in range(n)])
        members[f"ember2018/X_{split}.dat"] = rng.random((n, EMBER_V2_WIDTH), np.float32).tobytes()
        members[f"ember2018/y_{split}.dat"] = y.astype(np.float32).tobytes()
        for i, lab in enumerate(y):
            family = ("emotet", "xtrat")[i % 2] if lab == 1 else ""
            meta.append(f"{split}{i:02d},2018-{1 + i % 12:02d},{lab},{family},{split}")
    members["ember2018/metadata.csv"] = ("\n".join(meta) + "\n").encode()
    return members


def _entry(name: str, srv: FixtureServer, body: bytes, checksum: bool = True) -> RemoteDataset:
    """The catalog entry ``name`` pointed at the loopback server, serving ``body``."""
    entry = CATALOG[name]
    srv.serve(entry.filename, body)
    digest = hashlib.sha256(body).hexdigest() if checksum else None
    return dataclasses.replace(entry, base_url=srv.url, sha256=digest)


# --------------------------------------------------------------------------- tests


def test_fetch_downloads_verifies_and_unpacks_the_real_ember_layout(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = _tar(ember_raw_members())
    entry = _entry("ember2018", server, body)
    result = fetch(entry, tmp_path)
    assert result.status == "fetched"
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    folder = tmp_path / "ember2018" / "ember2018"
    assert (folder / "train_features_1.jsonl").read_bytes() == ember_raw_members()[
        "ember2018/train_features_1.jsonl"
    ]
    marker = json.loads((tmp_path / "ember2018" / MARKER).read_text())
    assert marker["sha256"] == result.sha256 and len(marker["files"]) == 4
    assert marker["url"] == f"{server.url}/ember_dataset_2018_2.tar.bz2"
    assert not list((tmp_path / "downloads").iterdir()), "archive and .part are gone"
    assert kind_of(folder) == "ember-raw"
    assert fetch_state(entry, tmp_path)[0] == "fetched"


def test_fetched_vectorized_ember_folder_loads_with_the_ember_loader(
    server: FixtureServer, tmp_path: Path
) -> None:
    entry = _entry("ember2018", server, _tar(ember_vectorized_members()))
    fetch(entry, tmp_path)
    folder = tmp_path / "ember2018" / "ember2018"
    ds = load_dataset(DatasetConfig(source=str(folder), ember_subset="all"), seed=0)
    assert ds.n_samples == 20 and ds.n_features == EMBER_V2_WIDTH
    assert ds.info["schema"] == "ember-v2"
    assert ds.class_counts() == {"malware": 8, "benign": 8, "unlabelled": 4}
    assert set(ds.metadata["family"].dropna()) >= {"emotet", "xtrat"}  # type: ignore[index]


def test_second_fetch_says_already_and_downloads_nothing(
    server: FixtureServer, tmp_path: Path
) -> None:
    entry = _entry("ember2018", server, _tar(ember_raw_members()))
    first = fetch(entry, tmp_path)
    asked = len(server.requests)
    again = fetch(entry, tmp_path)
    assert again.status == "already" and again.files == first.files
    assert len(server.requests) == asked


def test_interrupted_download_keeps_the_part_file_and_resumes_with_a_range_request(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = _tar(ember_raw_members())
    entry = _entry("ember2018", server, body)
    path = f"/mirror/{entry.filename}"
    server.cut_after[path] = 300
    with pytest.raises(FetchError, match="stopped after 300 B") as err:
        fetch(entry, tmp_path)
    assert "again to resume" in str(err.value)
    part = part_path(entry, tmp_path)
    assert part.read_bytes() == body[:300]
    assert fetch_state(entry, tmp_path) == ("partial", 300)
    result = fetch(entry, tmp_path)
    assert result.status == "fetched"
    assert server.requests[-1] == (path, "bytes=300-")
    assert not part.exists()


def test_server_without_range_support_restarts_from_the_beginning(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = _tar(ember_raw_members())
    entry = _entry("ember2018", server, body)
    server.ranges = False
    part = part_path(entry, tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:100])
    notes: list[str] = []
    assert fetch(entry, tmp_path, say=notes.append).status == "fetched"
    assert any("starting again" in n for n in notes)


def test_complete_part_file_is_verified_without_downloading_again(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = _tar(ember_raw_members())
    entry = _entry("ember2018", server, body)
    part = part_path(entry, tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(body)
    assert fetch(entry, tmp_path).status == "fetched"
    assert server.requests[-1][1] == f"bytes={len(body)}-"  # answered 416: nothing left


def test_checksum_mismatch_keeps_the_download_and_says_how_to_retry(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = _tar(ember_raw_members())
    entry = dataclasses.replace(_entry("ember2018", server, body), sha256="0" * 64)
    with pytest.raises(FetchError) as err:
        fetch(entry, tmp_path)
    text = str(err.value)
    part = part_path(entry, tmp_path)
    assert "SHA-256" in text and "0" * 64 in text and hashlib.sha256(body).hexdigest() in text
    assert f"delete '{part}'" in text
    assert part.read_bytes() == body, "the download is kept"
    assert not (tmp_path / "ember2018").exists()
    part.unlink()
    good = dataclasses.replace(entry, sha256=hashlib.sha256(body).hexdigest())
    assert fetch(good, tmp_path).status == "fetched"


def test_missing_file_on_the_server_is_reported_as_404(
    server: FixtureServer, tmp_path: Path
) -> None:
    entry = dataclasses.replace(CATALOG["ember2018"], base_url=server.url)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(entry, tmp_path)
    assert fetch_state(entry, tmp_path) == ("absent", 0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_gives_a_clear_message(tmp_path: Path) -> None:
    entry = dataclasses.replace(
        CATALOG["ember2018"], base_url=f"http://127.0.0.1:{_closed_port()}/x"
    )
    with pytest.raises(FetchError, match=r"Cannot reach 127\.0\.0\.1") as err:
        fetch(entry, tmp_path)
    assert "run the same command again" in str(err.value)


def _symlink_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        info = tarfile.TarInfo("ember2018/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../outside"
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    "body",
    [
        _tar({"ember2018/ok.jsonl": b"{}\n", "ember2018/../../escaped.txt": b"x"}),
        _tar({"/tmp/fedmetamal-absolute.txt": b"x"}),
        _symlink_tar(),
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_archive_members_outside_the_target_are_refused(
    server: FixtureServer, tmp_path: Path, body: bytes
) -> None:
    data_dir = tmp_path / "data"
    entry = _entry("ember2018", server, body)
    with pytest.raises(FetchError, match="nothing was") as err:
        fetch(entry, data_dir)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/fedmetamal-absolute.txt").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["downloads"], "no folder, no scratch"
    assert "Delete" in str(err.value)


def test_zip_members_outside_the_target_are_refused(server: FixtureServer, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.jsonl", b"{}\n")
    entry = _entry("ember2024-win32-train", server, buf.getvalue(), checksum=False)
    with pytest.raises(FetchError, match="outside the data folder"):
        fetch(entry, tmp_path / "data")
    assert not (tmp_path / "evil.jsonl").exists()


def test_damaged_archive_is_reported_and_left_for_deletion(
    server: FixtureServer, tmp_path: Path
) -> None:
    body = bz2.compress(b"not a tar file at all" * 50)[:-20]
    entry = _entry("ember2018", server, body)
    with pytest.raises(FetchError, match="damaged") as err:
        fetch(entry, tmp_path)
    assert "Delete" in str(err.value)
    assert not (tmp_path / "ember2018").exists()


def test_zip_without_published_checksum_records_its_sha256(
    server: FixtureServer, tmp_path: Path
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        rows = [_raw_record(i, i % 2) for i in range(4)]
        zf.writestr(
            "2023-09-24_2023-09-30_Win32_train.jsonl",
            "".join(json.dumps(r) + "\n" for r in rows),
        )
    entry = _entry("ember2024-win32-train", server, buf.getvalue(), checksum=False)
    assert entry.sha256 is None
    result = fetch(entry, tmp_path)
    assert result.sha256 == hashlib.sha256(buf.getvalue()).hexdigest()
    assert kind_of(tmp_path / "ember2024-win32-train") == "ember-raw"


def test_changed_files_are_detected_and_force_fetches_again(
    server: FixtureServer, tmp_path: Path
) -> None:
    entry = _entry("ember2018", server, _tar(ember_raw_members()))
    fetch(entry, tmp_path)
    (tmp_path / "ember2018" / "ember2018" / "test_features.jsonl").unlink()
    with pytest.raises(FetchError, match="--force"):
        fetch(entry, tmp_path)
    assert fetch(entry, tmp_path, force=True).status == "fetched"


def test_dataset_without_address_uses_a_file_placed_by_hand(tmp_path: Path) -> None:
    entry = CATALOG["bodmas"]
    with pytest.raises(FetchError, match="no direct download address") as err:
        fetch(entry, tmp_path)
    assert entry.homepage in str(err.value)
    placed = tmp_path / "downloads" / "bodmas.npz"
    placed.parent.mkdir(parents=True)
    stand_in = b"PK\x03\x04 stand-in"
    placed.write_bytes(stand_in)
    result = fetch(entry, tmp_path)
    assert (tmp_path / "bodmas" / "bodmas.npz").read_bytes() == stand_in
    assert result.files == {"bodmas.npz": len(stand_in)}
    assert not placed.exists()


def test_folder_not_made_by_fetch_is_never_overwritten(
    server: FixtureServer, tmp_path: Path
) -> None:
    (tmp_path / "ember2018").mkdir()
    (tmp_path / "ember2018" / "mine.txt").write_text("keep")
    entry = _entry("ember2018", server, _tar(ember_raw_members()))
    with pytest.raises(FetchError, match="not made by"):
        fetch(entry, tmp_path, force=True)
    assert (tmp_path / "ember2018" / "mine.txt").read_text() == "keep"


# --------------------------------------------------------------------------- the command


def test_fetch_command_fetches_then_says_already_fetched(
    server: FixtureServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = _tar(ember_vectorized_members())
    entry = _entry("ember2018", server, body)
    monkeypatch.setitem(catalog.CATALOG, "ember2018", dataclasses.replace(entry, base_url=None))
    monkeypatch.setenv("FEDMETAMAL_DATA", str(tmp_path))
    assert run_cli(["data", "fetch", "ember2018", "--url", server.url, "-q"]) == 0
    out = capsys.readouterr().out
    assert "fetched into" in out and hashlib.sha256(body).hexdigest() in out
    assert "use it with --dataset" in out
    assert run_cli(["data", "fetch", "EMBER2018", "--url", server.url, "-q"]) == 0
    assert "already fetched and verified" in capsys.readouterr().out


def test_fetch_command_reports_network_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/x"
    code = run_cli(["data", "fetch", "ember2018", "--dir", str(tmp_path), "--url", url])
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and "Cannot reach" in err and "Traceback" not in err


def test_fetch_command_suggests_a_close_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_cli(["data", "fetch", "ember2019", "--dir", str(tmp_path)]) == 2
    assert "Did you mean 'ember2018'" in capsys.readouterr().err
