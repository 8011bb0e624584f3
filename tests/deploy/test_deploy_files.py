"""Static checks of the container files (deploy/) and docs/deploy.md.

No Docker engine is needed: the Dockerfile, the compose files and .dockerignore are parsed and
checked against the repository and the real CLI, so a renamed flag, a missing file in the build
context or a participant that could write to the shared secrets is caught before anyone builds.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
POSTGRES = DEPLOY / "compose.postgres.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
#: files the docs tell users to create themselves
USER_FILES = ("deploy/data", "deploy/.env")

FINAL_STAGES = ("server", "participant")
STATE_DIR = "/var/lib/fedmetamal-participant"
SERVER_DIR = "/var/lib/fedmetamal"


def pyproject_field(name: str) -> str:
    """A top-level string of pyproject.toml's [project] table (no tomllib on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    m = re.search(rf'^{name} = "([^"]+)"', project, re.M)
    assert m, f"pyproject.toml has no project.{name}"
    return m.group(1)


# --- Dockerfile ---------------------------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM ... AS name`` stage: its base and its instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def dockerfile_stages(text: str) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in dockerfile_instructions(text):
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, f"cannot read FROM {rest!r}"
            name = m.group(2) or f"stage-{len(stages)}"
            current = stages[name] = Stage(name, m.group(1))
        else:
            assert current is not None, f"{keyword} before the first FROM"
            current.instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT / CMD / HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def inherited(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The last value of ``keyword`` in a stage, else in the stage it is built FROM."""
    stage: Stage | None = stages[name]
    while stage is not None:
        values = stage.args(keyword)
        if values:
            return values[-1]
        stage = stages.get(stage.base)
    return None


def copy_sources(stages: dict[str, Stage]) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not ``--from`` another stage)."""
    sources: list[str] = []
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword not in {"COPY", "ADD"}:
                continue
            parts = shlex.split(rest)
            flags = [p for p in parts if p.startswith("--")]
            if any(f.startswith("--from") for f in flags):
                continue
            paths = [p for p in parts if not p.startswith("--")]
            assert len(paths) >= 2, f"{keyword} {rest}: needs a source and a destination"
            sources.extend(paths[:-1])
    return sources


# --- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore glob as a regex: ``*`` and ``?`` stay within one path element,
    ``**`` crosses elements."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out += "(.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
            continue
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Whether ``path`` (relative to the context) is left out: as BuildKit decides, a pattern
    matches a path or any of its parent folders, and the last matching pattern wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


# --- compose ------------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override file, as far as these checks need it: mappings merge
    key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def command_list(command: Any) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(c) for c in command]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def named(self) -> bool:
        return not self.source.startswith((".", "/", "~", "$"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            options = parts[2].split(",") if len(parts) > 2 else []
            out.append(Mount(parts[0], parts[1], "ro" in options))
        else:
            out.append(Mount(entry["source"], entry["target"], bool(entry.get("read_only"))))
    return out


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def postgres() -> dict[str, Any]:
    return load_yaml(POSTGRES)


@pytest.fixture(scope="module")
def rules() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore_rules(DOCKERIGNORE.read_text())


def participants(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in config["services"].items() if n.startswith("participant-")}


# --- the parsers themselves ---------------------------------------------------------------------


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = dockerignore_rules("*\n!src\n**/__pycache__\n**/*.pyc\n!src/keep.pyc\n")
    assert ignored(rules, ".venv/bin/python")
    assert ignored(rules, "README.md")
    assert not ignored(rules, "src/pkg/mod.py")
    assert ignored(rules, "src/pkg/__pycache__/mod.cpython-311.pyc")
    assert ignored(rules, "src/pkg/mod.pyc")
    assert not ignored(rules, "src/keep.pyc")
    assert not ignored(dockerignore_rules("runs\n"), "src/runs.py")


def test_dockerfile_parser_joins_continuations_and_reads_stages() -> None:
    text = "FROM a:1 AS one\n# note\nRUN x \\\n  # inner comment\n  && y\nFROM one AS two\nUSER u\n"
    parsed = dockerfile_stages(text)
    assert list(parsed) == ["one", "two"]
    assert parsed["one"].args("RUN") == ["x && y"]
    assert inherited(parsed, "two", "USER") == "u"
    assert inherited(parsed, "one", "USER") is None


# --- Dockerfile ---------------------------------------------------------------------------------


def test_every_compose_build_target_is_a_dockerfile_stage(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(built) == {"server", "participant-1", "participant-2", "participant-3"}
    for name, service in built.items():
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in stages, f"{name}: no stage {build['target']!r}"
    assert compose["services"]["server"]["build"]["target"] == "server"
    for name, service in participants(compose).items():
        assert service["build"]["target"] == "participant", name


def test_base_images_are_pinned_to_exact_tags(
    stages: dict[str, Stage], compose: dict[str, Any], postgres: dict[str, Any]
) -> None:
    external = [s.base for s in stages.values() if s.base not in stages]
    external += [
        s["image"]
        for config in (compose, postgres)
        for s in config["services"].values()
        if "image" in s and "build" not in s
    ]
    assert external, "no base image found"
    for image in external:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag, f"{image}: no tag"
        assert tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+|\d+\.\d+-", tag), f"{image}: tag is not an exact version"
    assert stages["base"].base.startswith("python:3.11.")


def test_final_stages_run_as_a_non_root_user(stages: dict[str, Stage]) -> None:
    for name in FINAL_STAGES:
        user = inherited(stages, name, "USER")
        assert user, f"{name}: no USER, runs as root"
        assert user.split(":")[0] not in {"root", "0"}, f"{name}: USER {user}"
    created = " ".join(stages["base"].args("RUN"))
    assert "useradd" in created and "fedmetamal" in created


def test_copy_sources_exist_and_reach_the_build_context(
    stages: dict[str, Stage], rules: list[tuple[bool, re.Pattern[str]]]
) -> None:
    sources = copy_sources(stages)
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not ignored(rules, source), f"COPY {source}: excluded by .dockerignore"
    # the package builds from what is copied: its sources, the readme pyproject names
    readme = pyproject_field("readme")
    for needed in ("pyproject.toml", "constraints.txt", "src", readme):
        assert needed in sources, f"{needed} is not copied into the image"
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.py")]
    modules = [m for m in modules if "__pycache__" not in m]
    assert "src/fedmetamal/cli.py" in modules
    left_out = [m for m in modules if ignored(rules, m)]
    assert not left_out, f".dockerignore drops package modules: {left_out[:5]}"


def test_torch_is_installed_from_the_cpu_index_before_the_package(
    stages: dict[str, Stage],
) -> None:
    runs = stages["base"].args("RUN")
    torch = [
        i
        for i, r in enumerate(runs)
        if re.search(r"pip install .*torch", r)
        and "--index-url https://download.pytorch.org/whl/cpu" in r
        and "-c constraints.txt" in r
    ]
    package = [
        i for i, r in enumerate(runs) if re.search(r"pip install -c constraints\.txt \.(\s|$)", r)
    ]
    assert torch, "torch is not installed from the CPU index with constraints.txt"
    assert package, "the package is not installed with `pip install -c constraints.txt .`"
    assert torch[0] < package[0]
    everything = " ".join(runs)
    assert "pip install -e" not in everything and "[dev]" not in everything
    envs = " ".join(stages["base"].args("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PIP_NO_CACHE_DIR=1"):
        assert setting in envs
    assert stages["base"].args("WORKDIR")
    labels = " ".join(stages["base"].args("LABEL"))
    assert "org.opencontainers.image.title" in labels
    assert "org.opencontainers.image.version" in labels


def test_version_in_dockerfile_and_image_tags_matches_pyproject(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    version = pyproject_field("version")
    assert f"FEDMETAMAL_VERSION={version}" in stages["base"].args("ARG")
    for name, service in compose["services"].items():
        assert service["image"].endswith(f":{version}"), f"{name}: image {service['image']}"


def test_server_stage(stages: dict[str, Stage]) -> None:
    server = stages["server"]
    assert server.base == "base"
    assert server.args("EXPOSE")[-1].split() == ["50051", "8080"]  # gRPC, dashboard
    assert exec_form(server.args("VOLUME")[-1]) == [SERVER_DIR]
    assert exec_form(server.args("ENTRYPOINT")[-1]) == ["fedmetamal", "serve"]
    assert exec_form(server.args("CMD")[-1]) == [
        "--host",
        "0.0.0.0",
        "--port",
        "50051",
        "--web-port",
        "8080",
        "--data-dir",
        SERVER_DIR,
    ]
    assert server.args("HEALTHCHECK"), "server has no HEALTHCHECK"


def test_participant_stage(stages: dict[str, Stage]) -> None:
    participant = stages["participant"]
    assert participant.base == "base"
    assert exec_form(participant.args("ENTRYPOINT")[-1]) == ["fedmetamal", "join"]
    assert exec_form(participant.args("VOLUME")[-1]) == [STATE_DIR]
    assert f"FEDMETAMAL_HOME={STATE_DIR}" in participant.args("ENV")
    assert not participant.args("EXPOSE"), "a participant only dials out"


def _healthcheck_probe(stages: dict[str, Stage], port: int) -> int:
    """Run the server's HEALTHCHECK command here, aimed at ``port``; its exit status."""
    check = stages["server"].args("HEALTHCHECK")[-1]
    command = exec_form(check[check.index("CMD") + 3 :].strip())
    assert command[0] == "python", "the slim image has python, not curl"
    assert "50051" in command[-1]
    probe = [sys.executable, *command[1:-1], command[-1].replace("50051", str(port))]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode


def test_healthcheck_passes_on_an_open_port_and_fails_on_a_closed_one(
    stages: dict[str, Stage],
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert _healthcheck_probe(stages, port) == 0
    assert _healthcheck_probe(stages, port) != 0


# --- compose ------------------------------------------------------------------------------------


def test_compose_files_parse(compose: dict[str, Any], postgres: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"server", "participant-1", "participant-2", "participant-3"}
    assert set(postgres["services"]) == {"postgres", "server"}


def test_named_volumes_are_declared(compose: dict[str, Any], postgres: dict[str, Any]) -> None:
    for config in (compose, merged(compose, postgres)):
        declared = set(config.get("volumes") or {})
        for name, service in config["services"].items():
            for mount in mounts(service):
                if mount.named:
                    assert mount.source in declared, f"{name}: volume {mount.source} undeclared"


def test_server_service(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    args = command_list(server["command"])
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs.get("--tls-hosts") == "server"
    assert pairs.get("--issue-tokens") == "3"
    assert pairs.get("--token-dir") == "/secrets"
    assert pairs.get("--data-dir") == SERVER_DIR
    assert "--insecure" not in args, "compose serves over TLS"
    by_target = {m.target: m for m in mounts(server)}
    assert by_target[SERVER_DIR].named and not by_target[SERVER_DIR].read_only
    assert by_target["/secrets"].source == "secrets" and not by_target["/secrets"].read_only
    assert server["restart"] == "unless-stopped"


def test_participants_mount_secrets_read_only_and_wait_for_a_healthy_server(
    compose: dict[str, Any],
) -> None:
    found = participants(compose)
    assert len(found) == 3
    states = set()
    for name, service in found.items():
        number = name.rsplit("-", 1)[1]
        by_target = {m.target: m for m in mounts(service)}
        assert by_target["/secrets"].source == "secrets" and by_target["/secrets"].read_only, name
        assert by_target["/data"].read_only and not by_target["/data"].named, name
        assert by_target["/data"].source == "./data", name
        assert by_target[STATE_DIR].named and not by_target[STATE_DIR].read_only, name
        states.add(by_target[STATE_DIR].source)
        assert service["depends_on"]["server"]["condition"] == "service_healthy", name
        assert service["restart"] == "unless-stopped", name
        args = command_list(service["command"])
        pairs = dict(zip(args[::2], args[1::2], strict=False))
        assert pairs == {
            "--server": "server:50051",
            "--token-file": f"/secrets/token-{number}",
            "--ca": "/secrets/ca.pem",
            "--data": f"/data/participant-{number}.parquet",
            "--name": name,
        }
    assert len(states) == 3, "each participant needs its own state volume"


def test_only_the_server_publishes_a_port(
    compose: dict[str, Any], postgres: dict[str, Any]
) -> None:
    for config in (compose, merged(compose, postgres)):
        publishing = {n for n, s in config["services"].items() if s.get("ports")}
        assert publishing == {"server"}
    # gRPC for everyone; the dashboard on the host's loopback only
    assert compose["services"]["server"]["ports"] == ["50051:50051", "127.0.0.1:8080:8080"]


def test_postgres_override_points_the_server_at_the_database(postgres: dict[str, Any]) -> None:
    db = postgres["services"]["postgres"]
    assert "CMD-SHELL" in db["healthcheck"]["test"] and "pg_isready" in db["healthcheck"]["test"][1]
    assert any(m.target == "/var/lib/postgresql/data" and m.named for m in mounts(db))
    password = db["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${FEDMETAMAL_DB_PASSWORD:?"), "no default password"
    server = postgres["services"]["server"]
    url = server["environment"]["FEDMETAMAL_DATABASE_URL"]
    assert url.startswith("postgresql://fedmetamal:") and url.endswith("@postgres:5432/fedmetamal")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerignore_keeps_local_state_and_data_out(
    rules: list[tuple[bool, re.Pattern[str]]],
) -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/x",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "runs/quickstart/metrics.csv",
        "deploy/data/participant-1.parquet",
        "src/fedmetamal/__pycache__/cli.cpython-311.pyc",
        "src/fedmetamal.egg-info/PKG-INFO",
        "tests/test_cli.py",
    ):
        assert ignored(rules, path), f"{path} would be sent to the build context"


# --- the flags used are the real CLI's ----------------------------------------------------------

FLAG = re.compile(r"--[A-Za-z0-9][A-Za-z0-9-]*")
COMMAND_END = {"|", "||", "&&", ";", ">", ">>", "<"}
IMAGE_COMMAND = {"fedmetamal-server": ["serve"], "fedmetamal-participant": ["join"]}


def flags_in(args: list[str]) -> list[str]:
    return [m.group(0) for a in args if (m := FLAG.match(a))]


def _shell_commands(doc: str) -> list[str]:
    """Shell commands in the doc's bash/sh blocks, continuation lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", doc, re.S):
        pending = ""
        for raw in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            if (pending + line.strip()).strip():
                commands.append((pending + line.strip()).strip())
            pending = ""
    return commands


def doc_invocations(doc: str) -> list[tuple[str, list[str], list[str]]]:
    """(the doc's command line, the fedmetamal command path, its flags) for every call of
    ``fedmetamal ...`` or of the images (``docker run ... fedmetamal-server:TAG --flags``)."""
    found = []
    for line in _shell_commands(doc):
        tokens = [t.strip("'\"") for t in line.split()]
        runs_image = "docker run" in line and "--entrypoint" not in line
        for i, token in enumerate(tokens):
            if i and tokens[i - 1].startswith("-") and tokens[i - 1] != "-c":
                continue  # the value of an option (`--name fedmetamal`), not a command
            image = token.split(":")[0].rsplit("/", 1)[-1]
            if token == "fedmetamal" or token.endswith("/fedmetamal"):
                path = []
                j = i + 1
                while j < len(tokens) and re.fullmatch(r"[a-z][a-z-]*", tokens[j]):
                    path.append(tokens[j])
                    j += 1
            elif runs_image and ":" in token and image in IMAGE_COMMAND:
                path, j = IMAGE_COMMAND[image], i + 1
            else:
                continue
            rest = tokens[j:]
            end = next((k for k, t in enumerate(rest) if t in COMMAND_END), len(rest))
            found.append((line, path, flags_in(rest[:end])))
            break
    return found


def deploy_invocations() -> list[tuple[str, list[str], list[str]]]:
    """Every fedmetamal command the container files run, with the flags they pass."""
    stages = dockerfile_stages(DOCKERFILE.read_text())
    entry = {
        name: exec_form(inherited(stages, name, "ENTRYPOINT") or "[]") for name in FINAL_STAGES
    }
    out = []
    for name in FINAL_STAGES:
        assert entry[name][0] == "fedmetamal"
        cmd = exec_form(inherited(stages, name, "CMD") or "[]")
        out.append((f"Dockerfile {name}", entry[name][1:], flags_in(cmd)))
    for path in (COMPOSE, POSTGRES):
        for service_name, service in load_yaml(path)["services"].items():
            target = (service.get("build") or {}).get("target")
            if target is None and service_name == "server":
                target = "server"  # an override of the server service
            if target not in entry or "command" not in service:
                continue
            args = command_list(service["command"])
            out.append((f"{path.name} {service_name}", entry[target][1:], flags_in(args)))
    return out


def cli_options(path: list[str]) -> set[str] | None:
    """Option names of ``fedmetamal <path>`` from the Typer app, or None if it has no such
    command."""
    import typer

    from fedmetamal.cli import app

    # Typer may vendor its own click, so groups and options are recognised by their attributes
    command: Any = typer.main.get_command(app)
    for i, name in enumerate(path):
        if not hasattr(command, "commands"):
            path[:] = path[:i]  # the rest are arguments
            break
        if name not in command.commands:
            return None
        command = command.commands[name]
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def test_doc_invocation_parser() -> None:
    doc = (
        "```bash\nfedmetamal serve --data-dir d \\\n  --insecure  # local\n"
        "docker run -v x:/y fedmetamal-participant:0.1.0 --server s:1 | tee log\n"
        "docker compose exec server sh -c 'fedmetamal runs list --ca /x.pem'\n"
        "docker build --target server -t fedmetamal-server:0.1.0 .\n"
        "docker run --entrypoint tar fedmetamal-server:0.1.0 czf --x\n"
        "pg_dump --username fedmetamal --dbname fedmetamal\n```\n"
        "```text\nfedmetamal serve --not-a-command\n```\n"
    )
    assert doc_invocations(doc) == [
        ("fedmetamal serve --data-dir d --insecure", ["serve"], ["--data-dir", "--insecure"]),
        (
            "docker run -v x:/y fedmetamal-participant:0.1.0 --server s:1 | tee log",
            ["join"],
            ["--server"],
        ),
        (
            "docker compose exec server sh -c 'fedmetamal runs list --ca /x.pem'",
            ["runs", "list"],
            ["--ca"],
        ),
    ]


def test_deploy_files_and_docs_use_only_real_cli_flags() -> None:
    """Fails while `serve` / `join` (or a flag used here) do not exist in the CLI."""
    invocations = deploy_invocations() + doc_invocations(DEPLOY_DOC.read_text())
    commands = {tuple(path) for _, path, _ in invocations}
    assert ("serve",) in commands and ("join",) in commands
    problems = []
    for where, path, flags in invocations:
        path = list(path)
        options = cli_options(path)
        if options is None:
            problems.append(f"{where}: no command `fedmetamal {' '.join(path)}`")
            continue
        unknown = sorted(set(flags) - options)
        if unknown:
            problems.append(f"{where}: `fedmetamal {' '.join(path)}` has no {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def test_docs_name_only_files_that_exist() -> None:
    doc = DEPLOY_DOC.read_text()
    named = set(re.findall(r"(?<![\w/.-])((?:deploy|docs|scripts)/[\w./-]*\w)", doc))
    named.add(".dockerignore")
    missing = sorted(n for n in named if not (ROOT / n).exists() and not n.startswith(USER_FILES))
    assert not missing, f"docs/deploy.md names missing files: {missing}"


def test_the_dashboard_is_built_in_its_own_stage(stages: dict[str, Stage]) -> None:
    """Node builds the front end; the images get only its static files (no Node at run time)."""
    frontend = stages["frontend"]
    assert frontend.base.startswith("node:") and "latest" not in frontend.base
    assert any(a.startswith("npm ci") for a in frontend.args("RUN"))
    copies = stages["base"].args("COPY")
    assert "--from=frontend /build/src/fedmetamal/web/static ./src/fedmetamal/web/static" in copies
