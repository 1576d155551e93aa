"""TLS on both services with certificates made at test time, and mTLS: a crawler presenting a
client certificate is a crawler named by its certificate, with no token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.auth.credentials import ClientCredentials
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from tests.support.auth import Tokens, make_tokens
from tests.support.certs import CertificateAuthority
from tests.support.cluster import TERMINAL, Cluster, cluster


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


async def _secure(c: Cluster, credentials: ClientCredentials) -> None:
    await c.channel.close(None)
    c.channel = credentials.channel(c.address)
    c.stub = SchedulerServiceStub(c.channel)


@pytest.fixture
async def tls_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: CertificateAuthority
) -> AsyncIterator[tuple[Cluster, Tokens]]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    keys = make_tokens(tmp_path)
    server = ca.issue("server", server=True)
    tls = {"tls_cert": str(server.cert), "tls_key": str(server.key), "auth_file": str(keys.path)}
    async with cluster(tmp_path, **tls) as running:
        await _secure(running, ClientCredentials(keys.plain["admin"], tls=True, ca=str(ca.path)))
        await running.add_crawler(
            "crawler-1", token=keys.plain["crawlers"], tls_ca=str(ca.path), **tls
        )
        yield running, keys


async def test_both_services_serve_tls(
    tls_cluster: tuple[Cluster, Tokens], ca: CertificateAuthority
) -> None:
    c, keys = tls_cluster
    run = (
        await c.stub.TriggerRun(
            spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=["octo/tls"]))
        )
    ).run
    done = await c.wait_for_state(run.id, *TERMINAL)
    assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
    reader = ClientCredentials(keys.plain["reader"], tls=True, ca=str(ca.path))
    async with reader.channel(c.crawlers[0].address) as channel:
        stub = PullRequestServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetRepositoryStats(ppb.GetRepositoryStatsRequest(repository="octo/none"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # Plaintext towards a TLS port gets nothing.
    async with grpc.aio.insecure_channel(c.address) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_identifies_a_crawler_by_its_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: CertificateAuthority
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    keys = make_tokens(tmp_path)
    server = ca.issue("server", server=True)
    settings = {
        "tls_cert": str(server.cert),
        "tls_key": str(server.key),
        "tls_client_ca": str(ca.path),
        "auth_file": str(keys.path),
    }
    operator = ca.issue("operator", server=False)
    crawler_cert = ca.issue("crawler-host-7", server=False)
    async with cluster(tmp_path, **settings) as c:
        admin = ClientCredentials(
            keys.plain["admin"],
            tls=True,
            ca=str(ca.path),
            client_cert=str(operator.cert),
            client_key=str(operator.key),
        )
        await _secure(c, admin)
        await c.add_crawler(
            "replica",
            tls_ca=str(ca.path),
            tls_client_cert=str(crawler_cert.cert),
            tls_client_key=str(crawler_cert.key),
        )
        workers = (await c.stub.ListWorkers(spb.ListWorkersRequest())).workers
        assert [w.id for w in workers] == ["crawler-host-7/replica"]
        # A certificate alone is a crawler: it may not read runs.
        cert_only = ClientCredentials(
            tls=True, ca=str(ca.path), client_cert=str(operator.cert), client_key=str(operator.key)
        )
        async with cert_only.channel(c.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await SchedulerServiceStub(channel).ListRuns(spb.ListRunsRequest())
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Without a client certificate the TLS handshake itself fails.
        no_cert = ClientCredentials(keys.plain["admin"], tls=True, ca=str(ca.path))
        async with no_cert.channel(c.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await SchedulerServiceStub(channel).ListRuns(spb.ListRunsRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
