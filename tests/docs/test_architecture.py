"""docs/architecture.md: its picture renders with Mermaid, as GitHub renders it, and names
exactly the queues, exchanges and routing keys the code uses."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mesh import names
from mesh.bus.memory import MemoryBroker
from mesh.control import ControlChannel
from mesh.directory import ServiceDirectory
from mesh.platform.models import SCHEMA as PLATFORM_SCHEMA
from mesh.tasks.topology import DELIVERY_LIMIT, HEADER_DELAY_MS
from tests.doc_blocks import DOCS, ROOT, blocks

MERMAID = Path(sys.prefix) / "share" / "mermaid" / "mermaid.min.js"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
EXCHANGE = "mesh"  # the picture shows the default MESH_EXCHANGE
OPEN, CLOSE = "\u2039", "\u203a"  # around placeholders in the picture: <> is HTML there


def diagrams() -> list[tuple[str, str]]:
    return [(doc.name, b.body) for doc in DOCS for b in blocks(doc) if b.language == "mermaid"]


def picture() -> str:
    [body] = [b.body for b in blocks(ARCHITECTURE) if b.language == "mermaid"]
    return body


def placeholder(word: str) -> str:
    return f"{OPEN}{word}{CLOSE}"


def queues_and_exchanges() -> set[str]:
    """Every queue and exchange a mesh declares, with its variable parts as placeholders."""
    transport = MemoryBroker().connect(EXCHANGE)
    instance, service, plugin, task, ms = (placeholder(w) for w in
                                           ("instance", "service", "plugin", "task", "ms"))
    return {
        EXCHANGE,
        names.rpc_queue(EXCHANGE, service, plugin),
        ControlChannel(transport, instance, None).queue,  # type: ignore[arg-type]
        ServiceDirectory(transport, instance).queue,
        names.watch_queue(EXCHANGE, instance),
        names.observer_queue(EXCHANGE, instance),
        names.task_queue(EXCHANGE, plugin, task),
        names.task_dead_queue(EXCHANGE),
        names.task_delay_exchange(EXCHANGE),
        names.task_delay_queue(EXCHANGE, ms),  # type: ignore[arg-type]
        names.task_results_queue(EXCHANGE, instance),
        names.task_state_queue(EXCHANGE),
    }


def routing_keys() -> set[str]:
    """Every routing key and binding pattern, with placeholders."""
    service, plugin, rpc, instance, topic, task, key = (placeholder(w) for w in (
        "service", "plugin", "rpc", "instance", "topic", "task", "key"))
    return {
        names.rpc_key(service, plugin, rpc), names.rpc_pattern(service, plugin),
        names.heartbeat_key(service, instance), names.HEARTBEAT_PATTERN,
        names.switch_key(plugin), names.settings_key(plugin), names.installed_key(plugin),
        names.STATE_KEY, names.CONTROL_PATTERN, names.INVALIDATE_KEY,
        names.observable_key(plugin, topic, key), names.watch_key(plugin, topic),
        names.WATCH_PATTERN, names.HELLO_KEY,
        names.task_key(plugin, task), names.task_dead_key(plugin, task), names.TASK_DEAD_PATTERN,
        names.task_state_key(instance), names.TASK_STATE_PATTERN,
    }


def test_the_picture_draws_every_queue_and_exchange_and_no_other() -> None:
    drawn = set(re.findall(r"<b>((?:mesh|amq)[^<]*)</b>", picture()))
    drawn |= set(re.findall(r"\bexchange <b>([^<]+)</b>", picture()))
    assert drawn == queues_and_exchanges() | {"amq.rabbitmq.reply-to"}


def test_the_picture_and_the_page_name_every_routing_key() -> None:
    body, page = picture(), ARCHITECTURE.read_text().replace("<", OPEN).replace(">", CLOSE)
    for key in routing_keys():
        assert key in body, f"the picture lacks {key}"
        assert key in page.replace("`", ""), f"the page lacks {key}"
    assert HEADER_DELAY_MS in body and f"{DELIVERY_LIMIT}th delivery" in body
    assert f"`{PLATFORM_SCHEMA}`" in ARCHITECTURE.read_text()  # where the platform's state is


@pytest.mark.slow
@pytest.mark.browser
def test_the_diagrams_render(tmp_path: Path) -> None:
    """Every Mermaid block of the docs renders, with Mermaid's own browser bundle in headless
    Chromium: a syntax error GitHub would show instead of the picture fails here."""
    from tests.browser import browser

    if not MERMAID.exists():
        pytest.fail(f"{MERMAID} is missing: `make install` puts it there", pytrace=False)
    found = diagrams()
    assert any(doc == "architecture.md" for doc, _ in found)
    page = tmp_path / "render.html"
    page.write_text(f'<html><body><script src="{MERMAID.as_uri()}"></script></body></html>')
    driver = browser()
    try:
        driver.get(page.as_uri())
        driver.execute_script("mermaid.initialize({startOnLoad: false})")
        for number, (doc, body) in enumerate(found):
            outcome = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "mermaid.render(arguments[0], arguments[1])"
                "  .then(r => done({svg: r.svg}), e => done({error: String(e)}));",
                f"diagram{number}", body)
            assert "error" not in outcome, f"{doc}: {outcome['error']}"
            assert outcome["svg"].startswith("<svg")
            for name in re.findall(r"<b>(mesh[^<]*)</b>", body):
                assert name in outcome["svg"], f"{doc}: {name} is not in the rendered picture"
    finally:
        driver.quit()


def test_following_a_call_names_modules_that_exist() -> None:
    """The walk-through of an RPC, a task and a topic update names one module per step."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Following a call"):text.index("## Binders and middleware")]
    paths = re.findall(r"`((?:mesh|services)/[\w/]+\.py)`", section)
    assert len(paths) >= 15, paths
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
