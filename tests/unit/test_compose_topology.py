"""compose.yaml's topology: two scheduler replicas behind one DNS name, three crawlers whose query
ports are published, an offline profile with the fake GitHub, and no host port used twice.
tests/acceptance/test_compose_topology.py validates the file with `docker-compose config` and
starts the topology."""

from __future__ import annotations

from collections import Counter

from tests.support.compose import Compose


def test_two_schedulers_three_crawlers_and_an_offline_fake_github() -> None:
    compose = Compose.load()
    schedulers, crawlers = compose.running("scheduler"), compose.running("crawler")
    assert (len(schedulers), len(crawlers)) == (2, 3)
    for crawler in crawlers:
        target = crawler.environment["GHPULSE_SCHEDULER_ADDR"]
        host = target.removeprefix("dns:///").rsplit(":", 1)[0]
        assert target.startswith("dns:///")
        assert compose.answering_to(host) == schedulers
    assert compose.services["fake-github"].profiles == ["offline"]
    ids = [s.environment["GHPULSE_SCHEDULER_ID"] for s in schedulers]
    ids += [c.environment["GHPULSE_CRAWLER_ID"] for c in crawlers]
    assert len(set(ids)) == len(ids)


def test_every_query_port_is_published_and_no_host_port_twice() -> None:
    compose = Compose.load()
    host_ports = Counter(host for s in compose.services.values() for host, _ in s.ports)
    assert [port for port, uses in host_ports.items() if uses > 1] == []
    for service in compose.running("crawler") + compose.running("scheduler"):
        listens = [v for k, v in service.environment.items() if k.endswith("_LISTEN")]
        published = {container for _, container in service.ports}
        assert {int(address.rsplit(":", 1)[1]) for address in listens} <= published
