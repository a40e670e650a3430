"""The mesh's metrics on the server's /metrics: every live process's own, gathered from the
heartbeats that carry them, each sample labelled with the instance that reported it.

The broker is the only road between services, so Prometheus scrapes one endpoint and still
sees what a worker in another process (or on another host) ran.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from mesh.directory import ServiceDirectory
from mesh.metrics import REGISTRY, SERVICES_UP

SERVICES_UP_NAME = next(iter(SERVICES_UP.describe())).name


class MeshCollector(Collector):
    """This process's registry, and the last metrics each other live process sent."""

    def __init__(self, directory: ServiceDirectory, service: str, instance: str) -> None:
        self.directory = directory
        self.service, self.instance = service, instance
        self.process = (socket.gethostname(), os.getpid())

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        sources: list[tuple[dict[str, str], Iterable[Metric]]] = [
            ({"service": self.service, "instance": self.instance}, REGISTRY.collect())]
        for beat, state, _ in self.directory.instances():
            if state == "up" and beat.metrics and (beat.host, beat.pid) != self.process:
                labels = {"service": beat.service, "instance": beat.instance}
                sources.append((labels, text_string_to_metric_families(beat.metrics)))
        for labels, families in sources:
            for family in families:
                if family.name == SERVICES_UP_NAME:  # counted here, from the heartbeats
                    continue
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, **labels}, sample.value,
                                    sample.timestamp, sample.exemplar)
        yield from merged.values()
        SERVICES_UP.clear()
        for beat, state, _ in self.directory.instances():
            if state == "up":
                SERVICES_UP.labels(beat.service).inc()
        yield from SERVICES_UP.collect()


def exposition(directory: ServiceDirectory, service: str, instance: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(directory, service, instance))
    return generate_latest(registry)
