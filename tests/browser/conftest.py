"""The dashboard's browser tests: `fedmetamal serve` as a real process, the playwright-core
scripts in frontend/e2e driving Debian's chromium, and the Python side of their conversation
(starting a participant process, opening watch streams) over the scripts' stdin/stdout.

Without chromium, Node or frontend/node_modules these tests skip, saying what is missing; under
CI=true they fail instead (scripts/test_tools.sh installs chromium, scripts/install.sh the rest).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from net.harness import REPO, free_port, start_process, wait_until

FRONTEND = REPO / "frontend"
E2E = FRONTEND / "e2e"
STATIC_INDEX = REPO / "src" / "fedmetamal" / "web" / "static" / "index.html"
SCREENSHOTS = REPO / "docs" / "screenshots"
ADMIN_PASSWORD = "browser-test admin password"


def _missing_tool(problem: str) -> None:
    """Skip, or fail under CI=true, where the CI script should have provided the tool."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (under CI=true the browser tests must run)", pytrace=False)
    pytest.skip(problem)


@dataclass(frozen=True)
class Tools:
    node: str
    chromium: str


@pytest.fixture(scope="session")
def browser_tools() -> Tools:
    """Node, Debian's chromium, playwright-core and the built front end, or a skip/fail."""
    chromium = os.environ.get("FEDMETAMAL_CHROMIUM") or shutil.which("chromium") or ""
    if not os.access(chromium, os.X_OK):
        _missing_tool(
            f"chromium is not installed{f' at {chromium}' if chromium else ''}: "
            "apt-get install chromium (scripts/test_tools.sh does it)"
        )
    node = shutil.which("node")
    if not node:
        _missing_tool("node is not installed: the browser tests run playwright-core on Node")
    if not (FRONTEND / "node_modules" / "playwright-core" / "package.json").is_file():
        _missing_tool("frontend/node_modules/playwright-core is missing: cd frontend && npm ci")
    if not STATIC_INDEX.is_file():
        _missing_tool("the dashboard is not built: cd frontend && npm ci && npm run build")
    return Tools(node=node, chromium=str(chromium))


@dataclass
class Dashboard:
    """`fedmetamal serve` with its web port, both on 127.0.0.1."""

    root: Path
    port: int
    web_port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    @property
    def data_dir(self) -> Path:
        return self.root / "server"

    @property
    def operator_token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def control(self) -> Any:
        from fedmetamal.net.control_client import ControlClient

        return ControlClient(f"127.0.0.1:{self.port}", self.operator_token, insecure=True)

    def log_text(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        conn = http.client.HTTPConnection(url.split("//")[1].rstrip("/"), timeout=2)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@pytest.fixture(scope="module")
def dashboard(
    browser_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """A real server process (plaintext, loopback), its admin password set from a file."""
    root = tmp_path_factory.mktemp("dashboard")
    password_file = root / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    port, web_port = free_port(), free_port()
    args = [
        "serve",
        "--insecure",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--web-port",
        str(web_port),
        "--data-dir",
        str(root / "server"),
        "--admin-password-file",
        str(password_file),
        "--heartbeat-interval",
        "0.5",
        "--heartbeat-timeout",
        "3",
    ]
    proc = start_process(args, root / "server.log")
    server = Dashboard(root, port, web_port, proc)
    try:
        try:
            wait_until(lambda: proc.poll() is not None or _answers(server.url), 60, "the server")
        except AssertionError:
            pytest.fail(f"the server did not answer:\n{server.log_text()[-3000:]}")
        assert proc.poll() is None, f"the server exited:\n{server.log_text()[-3000:]}"
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the scripts ---------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class ScriptRun:
    """What one frontend/e2e script printed: its result, stderr, exit status, asks served."""

    result: dict[str, Any] | None
    stderr: str
    returncode: int
    asks: list[str] = field(default_factory=list)

    def ok(self) -> dict[str, Any]:
        """The result, or a failure that shows the script's own account of what went wrong."""
        assert self.returncode == 0 and self.result is not None, (
            f"the browser script failed (exit {self.returncode}):\n{self.stderr[-6000:]}"
        )
        return self.result


def run_script(
    tools: Tools,
    server: Dashboard,
    script: str,
    handlers: dict[str, Handler] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> ScriptRun:
    """Run frontend/e2e/SCRIPT with Node; answer its asks with ``handlers``."""
    debug = server.root / "debug"
    debug.mkdir(exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "FMM_URL": server.url,
        "FMM_PASSWORD": ADMIN_PASSWORD,
        "FMM_SHOTS": str(SCREENSHOTS),
        "FMM_DEBUG": str(debug),
        "FMM_CHROMIUM": tools.chromium,
        **(env or {}),
    }
    stderr_file = server.root / f"{script}.stderr"
    with stderr_file.open("w+b") as err:
        proc = subprocess.Popen(
            [tools.node, str(E2E / script)],
            cwd=FRONTEND,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        result: dict[str, Any] | None = None
        asks: list[str] = []
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                if "result" in msg:
                    result = msg["result"]
                elif "ask" in msg:
                    asks.append(msg["ask"])
                    handler = (handlers or {}).get(msg["ask"])
                    try:
                        if handler is None:
                            raise KeyError(f"no handler for {msg['ask']!r}")
                        answer = handler(msg)
                    except Exception as exc:  # tell the script, which then fails with it
                        answer = {"error": f"{type(exc).__name__}: {exc}"}
                    proc.stdin.write((json.dumps(answer) + "\n").encode())
                    proc.stdin.flush()
            proc.wait()
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0 and not killer.is_alive() and result is None:
        stderr += f"\n(the script was stopped after {timeout:g} s or exited {proc.returncode})"
    return ScriptRun(result, stderr, proc.returncode, asks)


# -- WatchRun streams from Python (Connect protocol, binary) ---------------------------------


def open_watch(server: Dashboard, run_id: str, timeout: float = 120) -> Any:
    """A WatchRun call on the web port, authenticated as scripts are (operator bearer token);
    the connection, and a generator of its events (raises on an error end)."""
    from fedmetamal.v1 import control_pb2

    body = control_pb2.WatchRunRequest(run_id=run_id).SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", server.web_port, timeout=timeout)
    conn.request(
        "POST",
        "/fedmetamal.v1.ControlService/WatchRun",
        struct.pack(">BI", 0, len(body)) + body,
        {
            "content-type": "application/connect+proto",
            "connect-protocol-version": "1",
            "authorization": f"Bearer {server.operator_token}",
        },
    )
    resp = conn.getresponse()
    if resp.status != 200:
        raise AssertionError(f"WatchRun answered HTTP {resp.status}: {resp.read()[:300]!r}")

    def events() -> Iterator[Any]:
        while True:
            head = resp.read(5)
            if len(head) < 5:
                return
            flags, size = struct.unpack(">BI", head)
            data = resp.read(size)
            if flags & 0x02:
                end = json.loads(data or b"{}")
                if "error" in end:
                    raise AssertionError(f"WatchRun ended with {end['error']}")
                return
            event = control_pb2.Event()
            event.ParseFromString(data)
            yield event

    return conn, events()


class WatchStreams:
    """N WatchRun streams of one run, each on its own connection and thread; counts events."""

    def __init__(self, server: Dashboard, run_id: str, n: int) -> None:
        self.counts = [0] * n
        self.errors: list[str] = []
        self._opened = threading.Semaphore(0)
        self._conns: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._watch, args=(server, run_id, i), daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _watch(self, server: Dashboard, run_id: str, i: int) -> None:
        first = True
        try:
            conn, events = open_watch(server, run_id)
            with self._lock:
                self._conns.append(conn)
            for _ in events:
                self.counts[i] += 1
                if first:
                    first = False
                    self._opened.release()
        except (OSError, http.client.HTTPException, AssertionError) as err:
            if not self._closing:
                self.errors.append(f"stream {i}: {err}")
        finally:
            if first:
                self._opened.release()

    def wait_open(self, timeout: float = 30) -> int:
        """Waits until each stream has had its first event (or failed); how many have."""
        end = time.monotonic() + timeout
        for _ in self._threads:
            if not self._opened.acquire(timeout=max(0.0, end - time.monotonic())):
                break
        return sum(1 for c in self.counts if c > 0)

    def close(self) -> list[int]:
        """Closes every stream; the number of events each received."""
        self._closing = True
        with self._lock:
            for conn in self._conns:
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(2)
        for t in self._threads:
            t.join(10)
        return list(self.counts)


def run_events(server: Dashboard, run_id: str, kind: str, n: int) -> list[Any]:
    """The first ``n`` recorded events of ``kind`` of a run (WatchRun replays its history)."""
    conn, events = open_watch(server, run_id, timeout=30)
    found: list[Any] = []
    try:
        for event in events:
            if event.kind == kind:
                found.append(event)
                if len(found) == n:
                    break
    finally:
        conn.close()
    return found
