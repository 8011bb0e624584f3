"""Accessibility of every dashboard page, in Debian's headless chromium: axe-core's WCAG 2.1 A
and AA rules (labels, names, landmarks, colour contrast...) on each page with its content
loaded, in the light and the dark theme and 375 px wide; and the keyboard: skip link,
navigation and a form used without the mouse. Also no console error in any of those settings.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fedmetamal.config import build_config
from fedmetamal.data.sources import resolve_shared_data
from fedmetamal.errors import FedMetaMalError
from net.harness import federation_files, small_config, start_process, wait_until

from .conftest import Dashboard, Tools, run_script
from .test_dashboard_e2e import assert_clean, detect_files

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _violations(audits: dict[str, list[dict[str, Any]]]) -> str:
    """The violations, one line per rule and page, for a readable failure."""
    lines = []
    for page, found in audits.items():
        for v in found:
            where = "; ".join(f"{n['target']}: {n['why'].splitlines()[-1]}" for n in v["nodes"])
            rule = f"{v['rule']} ({v['impact']}, {v['count']}x)"
            lines.append(f"{page}: {rule} {v['help']} — {where}")
    return "\n".join(lines)


def test_every_page_passes_the_wcag_audit_in_both_themes_and_on_a_phone(
    browser_tools: Tools, dashboard: Dashboard, tmp_path: Path
) -> None:
    try:
        resolve_shared_data("pe-headers")
    except FedMetaMalError as err:
        pytest.skip(str(err))
    pe_files, text_file = detect_files(tmp_path)
    procs: list[subprocess.Popen[bytes]] = []

    def prepare(_: dict[str, Any]) -> dict[str, Any]:
        """A finished simulated run with its models, and a participant waiting for approval."""
        cfg = build_config(
            {"dataset": {"source": "pe-headers"}, "training": {"rounds": 2, "local_epochs": 1}}
        )
        with dashboard.control() as c:
            run = c.create_run("a11y audit", cfg.model_dump_json(), [], True, 3)

            def done() -> str:
                state = c.run_action("Get", run.run_id).state
                assert state != "failed", c.run_action("Get", run.run_id).error
                return state if state == "completed" else ""

            wait_until(done, 180, "the audit's run to complete")
            model_id = c.list_models(run.run_id)[-1].model_id
            token = c.create_token(note="a11y")
            (train, _), *_ = federation_files(small_config(), tmp_path / "fed")
            args = shlex.split(token.command)[1:]
            args[args.index("--data") + 1] = str(train)
            args += ["--state-dir", str(tmp_path / "state"), "--name", "org-a11y", "--threads", "1"]
            procs.append(start_process(args, tmp_path / "participant.log"))
            wait_until(lambda: len(c.list_participants()) > 0, 60, "the participant to enroll")
        return {"runId": run.run_id, "modelId": model_id}

    try:
        run = run_script(
            browser_tools,
            dashboard,
            "a11y.mjs",
            {"prepare": prepare},
            env={"FMM_DETECT_FILES": json.dumps([str(p) for p in [*pe_files, text_file]])},
            timeout=420,
        )
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    r = run.ok()
    assert_clean(r)
    assert r["theme"] == {"light": "light", "dark": "dark", "light-375px": "light"}
    pages = {"login", "overview", "participants", "new-run", "run", "compare", "model", "detect"}
    for setting in ("light", "dark", "light-375px"):
        assert pages <= {k.split("/")[1] for k in r["audits"] if k.startswith(setting + "/")}
    assert not any(r["audits"].values()), "\n" + _violations(r["audits"])
    wide = {page: o for page, o in r["overflow"].items() if not isinstance(o, int) or o > 0}
    assert not wide, f"pages that scroll sideways at 375 px: {json.dumps(wide, indent=1)}"

    # Keyboard: the skip link comes first and jumps to the content; every stop shows focus.
    kb = r["keyboard"]
    assert kb["stops"][0]["text"] == "Skip to content", kb["stops"]
    hidden = [s for s in kb["stops"] if not s["visible"]]
    assert not hidden, f"focus is invisible on: {hidden}"
    assert {"Overview", "Participants", "New run"} <= {s["text"] for s in kb["stops"]}
    assert kb["afterSkip"] == "main"
    assert kb["navigated"] == "/participants"
    assert r["keyboardForm"] == {"saved": True}
