<%
    stdlib = ["os"] if agent else []
    raises = server or agent
    contract_names = [f"{cls}Contract"]
    if server:
        contract_names += ["GreetRequest"]
    if server and storage:
        contract_names += ["NoteText"]
    if worker and storage:
        contract_names += ["NoteCount"]
    elif worker:
        contract_names += ["Text"]
    mesh_names = ["Empty"] if (storage and (server or worker)) or agent else []
    errors = (["InvalidRequest"] if server else []) + (["NotAllowed"] if agent else [])
    testing = ["RunningMesh"] + (["assert_migrations_sound"] if storage else [])
    if ui:
        testing += ["Device"]
        stdlib = stdlib + ["asyncio"]
    stdlib = sorted(stdlib)
%>\
"""The tests of ${name}, on mesh's testing kit.

`pytest` runs them on the in-process bus and SQLite;
`pytest --mesh-bus=rabbitmq --mesh-db=postgresql` on RabbitMQ and PostgreSQL.
% if ui:
The browser test runs where Chromium and Selenium are (`pip install 'mesh[browser]'`), and is
skipped, saying why, where they are not.
% endif

The `mesh` fixture is a running mesh with this plugin (and what it depends on) started on
every service it names; `mesh.stub(Contract)` calls it as a script would.
"""

% for module in stdlib:
import ${module}
% endfor
% if stdlib:

% endif
% if raises:
import pytest
% endif
% if mesh_names:
${from_import("mesh", mesh_names)}
% endif
% if errors:
${from_import("mesh.errors", errors)}
% endif
${from_import("mesh.testing", testing)}
% if ui:
${from_import("mesh.testing.browser", ["Browser", "open_screen", "wait_on_shell"])}
% endif
% if server or agent or worker:

${from_import(f"{package}.contract", contract_names)}
% endif
% if worker and storage:
${from_import(f"{package}.models", ["NoteRow"])}
% endif


async def test_it_runs_on_its_services(mesh: RunningMesh) -> None:
    for service in ${services_tuple}:
        assert mesh.state("${name}", service) == "started"
% if server:


async def test_greet_follows_the_settings(mesh: RunningMesh) -> None:
    plugin = mesh.stub(${cls}Contract)
    assert (await plugin.greet(GreetRequest(name="Ada"))).greeting == "Hello, Ada!"
    await mesh.set_settings("${name}", greeting="Welcome")
    assert (await plugin.greet(GreetRequest(name="Ada"))).greeting == "Welcome, Ada!"


async def test_greet_refuses_an_empty_name(mesh: RunningMesh) -> None:
    plugin = mesh.stub(${cls}Contract)
    with pytest.raises(InvalidRequest):  # the server checks every request against the contract
        await plugin.greet(GreetRequest.model_construct(name=""))
% endif
% if server and storage:


async def test_notes_are_kept_in_order_up_to_max_notes(mesh: RunningMesh) -> None:
    plugin = mesh.stub(${cls}Contract)
    first = await plugin.add_note(NoteText(text="first"))
    second = await plugin.add_note(NoteText(text="second"))
    assert (await plugin.list_notes(Empty())).items == [first, second]
    await mesh.set_settings("${name}", max_notes=1)
    assert (await plugin.list_notes(Empty())).items == [first]
% endif
% if agent:


async def test_the_agent_answers_the_server_only(mesh: RunningMesh) -> None:
    as_server = mesh.stub(${cls}Contract, caller="server")
    info = await as_server.agent_info(Empty())
    assert (info.instance, info.pid) == (mesh.service("agent").instance, os.getpid())
    with pytest.raises(NotAllowed):  # a script ("cli") may not: the contract says who may
        await mesh.stub(${cls}Contract).agent_info(Empty())
% endif
% if worker and storage:


async def test_count_notes_reads_the_table(mesh: RunningMesh) -> None:
    async with mesh.session("${name}") as session:
        session.add_all([NoteRow(text="one"), NoteRow(text="three")])
        await session.commit()
    plugin = mesh.stub(${cls}Contract)
    handle = await plugin.count_notes.enqueue(Empty())
    assert await handle.result(timeout=10) == NoteCount(notes=2, characters=8)
% elif worker:


async def test_count_words_runs_on_the_worker(mesh: RunningMesh) -> None:
    plugin = mesh.stub(${cls}Contract)
    handle = await plugin.count_words.enqueue(Text(text="to be or not"))
    assert (await handle.result(timeout=10)).words == 4
% endif
% if storage:


async def test_migrations_match_the_models(mesh_database_url: str) -> None:
    await assert_migrations_sound("${name}", mesh_database_url)
% endif
% if ui:


async def test_the_device_screen_is_in_the_catalog(mesh_device: Device) -> None:
    # mesh_device: the client service runs, with the identity plugin that signs devices in
    catalog = await mesh_device.catalog()
    screen = next(s for s in catalog["screens"] if s["plugin"] == "${name}")
    assert (screen["id"], screen["title"]) == ("main", "${title}")
% if server:
    reply = await mesh_device.call("${name}.greet", {"name": "Ada"})
    assert reply["greeting"] == "Hello, Ada!"
% endif


async def test_the_admin_screen_is_listed_for_administrators(mesh: RunningMesh) -> None:
    async with mesh.admin_http() as admin:
        listed = (await admin.get("/api/v1/screens")).json()
        screen = next(s for s in listed if s["plugin"] == "${name}")
        assert screen["id"] == "settings"
        module = await admin.get(screen["module"])
        assert module.status_code == 200 and "export function mount" in module.text


async def test_the_device_screen_in_a_browser(mesh: RunningMesh, mesh_device: Device,
                                              mesh_browser: Browser) -> None:
    from selenium.webdriver.common.by import By

    name = "${name}"

    def use_the_screen() -> str:
        open_screen(mesh_browser, mesh.shell_url, f"{name}/main", "admin", mesh.admin_password)
% if server:
        mesh_browser.find_element(By.CSS_SELECTOR, f"#{name}-greet button").click()
% endif
        return str(wait_on_shell(mesh_browser,
                                 lambda d: d.find_element(By.ID, f"{name}-greeting").text))

    assert (await asyncio.to_thread(use_the_screen)).startswith("Hello, ")
% endif
