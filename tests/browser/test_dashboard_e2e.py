"""The dashboard end to end, in Debian's headless chromium against `fedmetamal serve` run as a
process: login, a participant joining with a token made on the page, simulated runs on the real
pe-headers dataset watched live, the model report, detection of real PE files in the browser,
comparison and export; screenshots of every page (docs/screenshots); performance figures
(printed, and written as JSON to $FEDMETAMAL_E2E_REPORT when set; never asserted as timings).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import shlex
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fedmetamal.config import build_config
from fedmetamal.data.sources import resolve_shared_data
from fedmetamal.errors import FedMetaMalError
from net.harness import federation_files, small_config, start_process, wait_until

from .conftest import SCREENSHOTS, Dashboard, Tools, WatchStreams, run_events, run_script

pytestmark = pytest.mark.slow

ROUNDS = 4
PAGES_WIDE = ["login", "overview", "participants", "new-run", "run", "compare", "model", "detect"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_clean(result: dict[str, Any]) -> None:
    """No console error or warning, no uncaught error, only requests to the local server."""
    assert result["console"] == [], result["console"]
    assert result["pageErrors"] == [], result["pageErrors"]
    assert result["foreign"] == [], f"requests to other hosts: {result['foreign']}"
    assert result["failed"] == [], f"failed requests: {result['failed']}"


def report(figures: dict[str, Any]) -> None:
    """Adds measured figures to $FEDMETAMAL_E2E_REPORT (JSON) and prints them."""
    print("dashboard figures:", json.dumps(figures, indent=1))
    path = os.environ.get("FEDMETAMAL_E2E_REPORT")
    if path:
        p = Path(path)
        old = json.loads(p.read_text()) if p.is_file() else {}
        p.write_text(json.dumps({**old, **figures}, indent=1))


def test_a_wrong_password_is_refused_on_the_page_and_the_right_one_logs_in(
    browser_tools: Tools, dashboard: Dashboard
) -> None:
    result = run_script(browser_tools, dashboard, "login.mjs").ok()
    assert result["redirectedTo"] == "/login"
    assert "password" in result["wrongPasswordMessage"].lower()
    # The one console error allowed anywhere: the browser's note on the refused call (401).
    assert result["consoleAfterWrong"], "the refused login left no trace in the console"
    assert all("401" in m["text"] for m in result["console"]), result["console"]
    assert result["pageErrors"] == [] and result["foreign"] == []
    assert result["user"].startswith("admin")
    assert result["afterLogin"] in ("/", "/runs/new")
    assert png_size(SCREENSHOTS / "login.png") == (1280, 800)


def test_a_participant_joins_with_a_token_from_the_page_and_is_approved_then_revoked(
    browser_tools: Tools, dashboard: Dashboard, tmp_path: Path
) -> None:
    (train, _test), *_ = federation_files(small_config(), tmp_path / "fed")
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "participant.log"

    def start(ask: dict[str, Any]) -> dict[str, Any]:
        words = shlex.split(ask["command"])
        assert words[:2] == ["fedmetamal", "join"], words
        # The command names this server (plaintext here, so --insecure) and leaves the data
        # path for the participant to fill in.
        assert {"--server", "--token", "--insecure", "--data"} <= set(words), words
        server = words[words.index("--server") + 1]
        assert server.rsplit(":", 1)[1] == str(dashboard.port), server
        args = words[1:]
        args[args.index("--data") + 1] = str(train)
        args += ["--state-dir", str(tmp_path / "state"), "--name", ask["name"], "--threads", "1"]
        procs.append(start_process(args, log))
        return {"started": True}

    def outcome(_: dict[str, Any]) -> dict[str, Any]:
        proc = procs[0]
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        return {"code": proc.poll(), "log": log.read_text(errors="replace")[-2000:]}

    try:
        run = run_script(
            browser_tools,
            dashboard,
            "participants.mjs",
            {"start_participant": start, "participant_outcome": outcome},
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    result = run.ok()
    assert_clean(result)
    assert result["autoApproveDefault"] is False
    assert result["command"].startswith("fedmetamal join --server ")
    steps = {s["step"]: s for s in result["states"]}
    assert steps["enrolled"]["state"] == "pending"
    assert steps["approved"]["state"] == "approved" and steps["approved"]["online"] == "online"
    assert steps["revoked"]["state"] == "revoked"
    assert steps["after exit"]["online"] == "offline"
    assert result["revokeButtons"] == 0  # nothing left to do with a revoked participant
    assert int(result["overviewOnline"]) >= 1
    after = result["participantAfterRevoke"]
    assert after["code"] is not None, f"the participant kept running:\n{after['log']}"
    assert "revoked" in after["log"].lower(), after["log"]
    assert png_size(SCREENSHOTS / "participants.png") == (1280, 800)


def detect_files(tmp_path: Path) -> tuple[list[Path], Path]:
    """Real PE files from the cached corpus (tests/features/pe_corpus.py), and a text file."""
    from features.pe_corpus import build_corpus

    try:
        corpus = build_corpus()
    except Exception as err:  # no compiler, no network: say why and skip
        pytest.skip(f"PE corpus could not be built: {type(err).__name__}: {err}")
    pe = sorted(corpus.pe_files, key=lambda p: (p.parent.name != "clamav", p.stat().st_size))
    if len(pe) < 2:
        pytest.skip(f"too few real PE files in {corpus.root}")
    mingw = [p for p in corpus.pe_files if p.parent.name == "mingw"]
    chosen = [pe[0], *(mingw[:1] or pe[1:2])]
    text = tmp_path / "notes.txt"
    text.write_text("This is a plain text file, not a Windows executable.\n" * 20)
    return chosen, text


def chart_latencies(trace: list[dict[str, Any]], finished: list[float]) -> list[float]:
    """For each round that ended while the page was open: ms from the round_finished event's
    server time to the first animation frame whose charts show more points than before."""
    out = []
    for t_end in (t * 1000 for t in finished):
        before = [e for e in trace if e["t"] < t_end]
        if not before:
            continue  # the page was not open yet
        base = sum(before[-1]["counts"])
        later = [e for e in trace if e["t"] >= t_end and sum(e["counts"]) > base]
        if later:
            out.append(round(later[0]["t"] - t_end, 1))
    return out


@pytest.mark.shared_data
def test_operator_runs_watches_inspects_detects_and_compares_in_the_browser(
    browser_tools: Tools, dashboard: Dashboard, tmp_path: Path
) -> None:
    try:
        resolve_shared_data("pe-headers")
    except FedMetaMalError as err:
        pytest.skip(str(err))
    pe_files, text_file = detect_files(tmp_path)
    live: dict[str, Any] = {}

    def start_live_run(_: dict[str, Any]) -> dict[str, Any]:
        cfg = build_config(
            {"dataset": {"source": "pe-headers"}, "training": {"rounds": 40, "local_epochs": 3}}
        )
        with dashboard.control() as c:
            run = c.create_run(
                "e2e live, 50 watchers", cfg.model_dump_json(), [], True, simulated_participants=3
            )
        live["run_id"] = run.run_id
        return {"run_id": run.run_id}

    def open_watchers(ask: dict[str, Any]) -> dict[str, Any]:
        live["streams"] = WatchStreams(dashboard, ask["run_id"], int(ask["n"]))
        return {"open": live["streams"].wait_open()}

    def close_watchers(_: dict[str, Any]) -> dict[str, Any]:
        streams: WatchStreams = live["streams"]
        counts = streams.close()
        live["stream_errors"] = streams.errors
        return {"events": {"min": min(counts), "max": max(counts), "streams": len(counts)}}

    def stop_live_run(_: dict[str, Any]) -> dict[str, Any]:
        with dashboard.control() as c:
            c.run_action("Stop", live["run_id"])

            def ended() -> str:
                state = c.run_action("Get", live["run_id"]).state
                return state if state in ("stopped", "completed", "failed") else ""

            return {"state": wait_until(ended, 60, "run 3 to stop")}

    run = run_script(
        browser_tools,
        dashboard,
        "dashboard.mjs",
        {
            "start_live_run": start_live_run,
            "open_watchers": open_watchers,
            "close_watchers": close_watchers,
            "stop_live_run": stop_live_run,
        },
        env={
            "FMM_DETECT_FILES": json.dumps([str(p) for p in [*pe_files, text_file]]),
            "FMM_ROUNDS": str(ROUNDS),
        },
        timeout=270,
    )
    if "streams" in live and not live.get("stream_errors"):
        live["streams"].close()
    r = run.ok()
    assert_clean(r)

    # The run advanced live: the page showed rounds going by and the charts gaining points.
    assert r["run1State"] == "completed", dashboard.log_text()[-3000:]
    assert r["run1Progress"] == f"{ROUNDS} / {ROUNDS} rounds"
    assert len(set(r["progressSeen"])) >= 2, r["progressSeen"]
    totals = [sum(e["counts"]) for e in r["trace"]]
    grown = [b for a, b in itertools.pairwise(totals) if b > a]
    assert len(grown) >= 2, f"the charts did not grow round by round: {totals}"
    assert all(c["points"] > 0 for c in r["chartsLive"]), r["chartsLive"]
    assert any("round_finished" in line for line in r["logKinds"]), r["logKinds"]
    # After a reload the charts refill from the history: the same points as live.
    live_points = {c["label"]: c["points"] for c in r["chartsLive"]}
    reloaded = {c["label"]: c["points"] for c in r["chartsAfterReload"]}
    assert reloaded == live_points
    assert r["run1ProgressAfterReload"] == f"{ROUNDS} / {ROUNDS} rounds"
    # ... and so does the log (ListEvents history merged with the stream: each event once) ...
    assert r["listEventsStatus"] == 200
    after = r["logAfterReload"]
    assert sum("[round_finished]" in line for line in after) == ROUNDS, after
    assert any("[run_state]" in line and "created" in line for line in after), after
    # ... and the timeline: one row per participant, one column per finished round.
    with dashboard.control() as c:
        people = set(c.run_action("Get", r["run1"]).participant_ids)
        people |= {p for rnd in c.list_rounds(r["run1"]) for p in rnd.sampled}
    timeline = r["timeline"]
    assert timeline["columns"] == list(range(1, ROUNDS + 1)), timeline
    assert sorted(row["id"] for row in timeline["rows"]) == sorted(people), timeline
    for row in timeline["rows"]:
        assert len(row["cells"]) == ROUNDS and row["labelled"], row
        assert set(row["cells"]) <= {"reported", "rejected", "dropped", "out"}, row

    # The model page: ROC, confusion matrix, the threshold moving with the target FPR.
    m = r["model"]
    assert m["atDefault"]["modelId"] and m["atDefault"]["schema"] == "pe-header"
    assert int(m["atDefault"]["params"].replace(",", "")) > 0
    assert len(m["atDefault"]["cm"]) == 4
    assert m["atFpr10"]["threshold"] != m["atFpr1"]["threshold"]
    assert "FPR" in m["atFpr1"]["rates"]

    # Detect: verdicts for the PE files, "not a PE file" for the text file.
    by_name = {d["name"]: d for d in r["detect"]}
    assert set(by_name) == {p.name for p in pe_files} | {text_file.name}
    for p in pe_files:
        d = by_name[p.name]
        assert d["verdict"] in ("MALWARE", "benign"), d
        assert d["score"].endswith("%") and d["threshold"].endswith("%"), d
        assert d["inference"].endswith("ms") and d["topFeatures"] > 0, d
    text = by_name[text_file.name]
    assert text["verdict"] == "failed" and "not a PE file" in (text["error"] or ""), text
    assert r["detectWarm"].endswith("ms")

    # Compare: both runs overlaid, final metrics table, CSV export.
    assert r["run2State"] == "completed"
    assert len(r["compare"]["rows"]) == 2
    assert any(c["points"] > 0 for c in r["compare"]["chart"])
    rows = list(csv.reader(io.StringIO(r["csv"]["text"])))
    assert r["csv"]["name"].endswith(".csv") and len(rows) == 3, rows
    assert {row[0] for row in rows[1:]} >= {"e2e pe-headers A", "e2e pe-headers B"} or {
        r["run1"],
        r["run2"],
    } <= {cell for row in rows for cell in row}, rows
    assert r["png"]["name"].endswith(".png") and r["png"]["bytes"] > 1000

    # 50 more watchers of a live run: all received events; the page kept answering.
    assert r["responsive"]["watchers"] == 50
    assert r["run3State"] == "stopped"
    assert r["responsive"]["streamEvents"]["min"] > 0
    assert not live.get("stream_errors"), live.get("stream_errors")

    # Screenshots of every page, light theme at 1280x800, plus dark and 375 px wide.
    for name in [*PAGES_WIDE, "run-dark"]:
        assert png_size(SCREENSHOTS / f"{name}.png") == (1280, 800), name
    width, height = png_size(SCREENSHOTS / "run-full.png")
    assert width == 1280 and height > 800, "the whole run page, below the charts too"
    assert png_size(SCREENSHOTS / "overview-375px.png") == (375, 800)
    assert r["narrowOverflowPx"] <= 0, "the overview scrolls sideways at 375 px"
    assert r["darkBackground"] != "rgb(255, 255, 255)"

    finished = [e.time_unix for e in run_events(dashboard, r["run1"], "round_finished", ROUNDS)]
    latencies = chart_latencies(r["trace"], finished)
    assert latencies, "no round ended while the run page was open"
    report(
        {
            "first_load": r["firstLoad"],
            "reload_to_overview_ms": r["reloadToOverviewMs"],
            "reload_timing": r["reloadTiming"],
            "round_end_to_chart_ms": latencies,
            "detect": {
                "all_files_ms": r["detectAllMs"],
                "model_load": r["modelLoad"],
                "per_file": {d["name"]: d["inference"] for d in r["detect"]},
                "warm_one_file": r["detectWarm"],
            },
            "responsive": r["responsive"],
        }
    )
