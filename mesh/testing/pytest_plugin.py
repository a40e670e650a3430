"""The testing kit's pytest plugin: options, the `mesh_plugins` marker and the fixtures.

    --mesh-bus=memory|rabbitmq     the bus of the `mesh` fixture (default memory)
    --mesh-db=sqlite|postgresql    its database (default sqlite; PostgreSQL: a fresh database
                                   per test, dropped afterwards)
    --mesh-plugins=a,b|all         the plugins it loads, when no marker says

Without a marker or option the plugins are those the test's own project declares (the
mesh.plugins entry points in the nearest pyproject.toml above the test file), or every
installed plugin if it declares none. Their dependencies always come along.

The `mesh_services("client")` marker runs services no plugin under test runs on (the client
service, whose gateway devices use). A test that takes `mesh_device` or `mesh_sign_in` gets the
client service and the identity plugin (which signs devices in) without asking.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

    from mesh.plugin.discovery import PluginSource
    from mesh.testing.bus import Bus
    from mesh.testing.devices import Device, SignIn
    from mesh.testing.harness import RunningMesh

DEVICE_FIXTURES = ("mesh_device", "mesh_sign_in")

pytest.register_assert_rewrite("mesh.testing.migrations")

def async_fixture(function: Callable[..., Any]) -> Any:
    """An async fixture through pytest-asyncio; without it (mesh installed without its
    `testing` extra) a fixture that says what to install, so that pytest itself still runs."""
    try:
        import pytest_asyncio
    except ImportError:

        @pytest.fixture(name=function.__name__)
        def needs_pytest_asyncio() -> None:
            pytest.fail("mesh's testing kit needs pytest-asyncio: "
                        "pip install 'mesh[testing]'", pytrace=False)

        return needs_pytest_asyncio
    return pytest_asyncio.fixture(function)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mesh", "mesh testing kit")
    group.addoption("--mesh-bus", choices=("memory", "rabbitmq"), default="memory",
                    help="the bus of the mesh fixture: the in-process bus (default) or "
                         "RabbitMQ at MESH_TEST_BROKER_URL")
    group.addoption("--mesh-db", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the mesh fixture's database: SQLite files (default) or a fresh "
                         "PostgreSQL database per test, made with MESH_TEST_DATABASE_URL")
    group.addoption("--mesh-plugins", default=None, metavar="NAMES",
                    help="comma-separated plugins the mesh fixture loads, or 'all' (default: "
                         "the plugins of the test's own project)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mesh_plugins(*names): the plugins the mesh fixture loads for this test "
                   "(and their dependencies); none: every installed plugin")
    config.addinivalue_line(
        "markers", "mesh_services(*kinds): services the mesh fixture runs even though no "
                   "plugin under test runs a part there (e.g. 'client', for devices)")
    # Services log as they do in production: structlog's unconfigured default renders every
    # logged exception with rich and the locals of each frame, which takes seconds under load
    # and would put that cost into the timing of the very failures a test provokes.
    from mesh.log import configure_logging

    configure_logging("INFO", "console")


def _unreachable(find: Callable[[], str]) -> str:
    from mesh.testing.backends import ServiceUnreachable

    try:
        return find()
    except ServiceUnreachable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def mesh_broker_url() -> str:
    """RabbitMQ's URL (MESH_TEST_BROKER_URL); fails the test if it does not answer."""
    from mesh.testing.backends import broker_url

    return _unreachable(broker_url)


@pytest.fixture(scope="session")
def mesh_postgres_admin_url() -> str:
    """The URL that creates test databases (MESH_TEST_DATABASE_URL); fails if unreachable."""
    from mesh.testing.backends import postgres_admin_url

    return _unreachable(postgres_admin_url)


@async_fixture
async def mesh_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A bus of the kind --mesh-bus names, with an exchange of its own; closed afterwards."""
    from mesh.testing.bus import Bus

    kind = request.config.getoption("mesh_bus")
    url = request.getfixturevalue("mesh_broker_url") if kind == "rabbitmq" else None
    bus = Bus(kind, url, tmp_path / "mesh-data")
    try:
        yield bus
    finally:
        await bus.close()


@async_fixture
async def mesh_database_url(request: pytest.FixtureRequest, tmp_path: Path
                            ) -> AsyncIterator[str]:
    """An empty database of the kind --mesh-db names, for this test only."""
    from mesh.testing.backends import empty_database

    async with empty_database(request.config.getoption("mesh_db"), tmp_path / "mesh-db",
                              lambda: request.getfixturevalue("mesh_postgres_admin_url")) as url:
        yield url


@pytest.fixture
def mesh_plugins(request: pytest.FixtureRequest) -> list[PluginSource]:
    """The installed plugins the mesh fixture loads: the marker's, --mesh-plugins', or the
    test's project's; with their dependencies."""
    from mesh.testing.harness import MeshSetupError, project_plugins, select_plugins

    marker = request.node.get_closest_marker("mesh_plugins")
    option = request.config.getoption("mesh_plugins")
    names: list[str] | None
    if marker is not None:
        names = list(marker.args) or None
    elif option:
        names = None if option == "all" else [n.strip() for n in option.split(",") if n.strip()]
    else:
        names = project_plugins(Path(request.path).parent)
    if names is not None and _wants_devices(request) and "identity" not in names:
        names.append("identity")  # it signs devices in
    try:
        return select_plugins(names)
    except MeshSetupError as exc:
        pytest.fail(str(exc), pytrace=False)


def _wants_devices(request: pytest.FixtureRequest) -> bool:
    return any(name in request.fixturenames for name in DEVICE_FIXTURES)


def _services(request: pytest.FixtureRequest) -> list[str]:
    """The services the test asks for beyond its plugins': the marker's, and the client
    service when it uses devices."""
    marker = request.node.get_closest_marker("mesh_services")
    wanted = list(marker.args) if marker is not None else []
    if _wants_devices(request):
        wanted.append("client")
    return wanted


@async_fixture
async def mesh(request: pytest.FixtureRequest, mesh_bus: Bus, mesh_plugins: list[PluginSource],
               mesh_database_url: str) -> AsyncIterator[RunningMesh]:
    """A running mesh: the server and every service the plugins under test run on (and those
    the `mesh_services` marker names), each plugin started everywhere it runs (or the test
    fails with the reason)."""
    from mesh.testing.harness import MeshSetupError, RunningMesh

    try:
        running = await RunningMesh.start(mesh_bus, mesh_plugins, mesh_database_url,
                                          services=_services(request))
    except MeshSetupError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def mesh_sign_in(mesh: RunningMesh) -> SignIn:
    """`await mesh_sign_in(username, password)`: a device on the client service's gateway,
    signed in as that user (`mesh.testing.devices.Device`: subscribe, action, call,
    catalog); closed after the test."""

    async def sign_in(username: str, password: str) -> Device:
        return await mesh.device(username, password)

    return sign_in


@async_fixture
async def mesh_device(mesh: RunningMesh) -> Device:
    """A device on the client service's gateway, signed in as the first administrator."""
    return await mesh.device()


@pytest.fixture
def mesh_browser() -> Iterator[Chrome]:
    """Headless Chromium (mesh.testing.browser), quit after the test; the test is skipped,
    with the reason, where there is no Chromium, chromedriver or Selenium."""
    from mesh.testing.browser import available, browser

    missing = available()
    if missing is not None:
        pytest.skip(missing)
    driver = browser(console=True)
    try:
        yield driver
    finally:
        driver.quit()
