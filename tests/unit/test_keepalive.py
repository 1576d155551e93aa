"""Keepalive and load-balancing channel options of the clients and the servers."""

from __future__ import annotations

import json

import pytest

from common.client.config import SERVICE_CONFIG, channel_options
from common.keepalive import MIN_CLIENT_PING_INTERVAL, Keepalive


def test_keepalive_reads_the_environment_and_never_pings_faster_than_servers_allow() -> None:
    env = {"GHPULSE_KEEPALIVE_TIME": "1", "GHPULSE_KEEPALIVE_TIMEOUT": "4"}
    assert Keepalive.from_env(env) == Keepalive(MIN_CLIENT_PING_INTERVAL, 4.0)
    assert Keepalive.from_env({}) == Keepalive(30.0, 10.0)
    with pytest.raises(ValueError, match="GHPULSE_KEEPALIVE_TIMEOUT"):
        Keepalive.from_env({"GHPULSE_KEEPALIVE_TIMEOUT": "0"})


def test_servers_accept_pings_as_often_as_clients_may_send_them() -> None:
    server = dict(Keepalive(60, 5).server_options())
    client = dict(Keepalive.from_env({"GHPULSE_KEEPALIVE_TIME": "0"}).client_options())
    least = server["grpc.http2.min_ping_interval_without_data_ms"]
    assert client["grpc.keepalive_time_ms"] >= least
    assert client["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.keepalive_time_ms"] == 60_000


def test_client_channels_balance_round_robin_and_keep_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GHPULSE_KEEPALIVE_TIME", "20")
    options = dict(channel_options())
    assert options["grpc.lb_policy_name"] == "round_robin"
    assert json.loads(options["grpc.service_config"])["loadBalancingConfig"] == [
        {"round_robin": {}}
    ]
    assert SERVICE_CONFIG["loadBalancingConfig"] == [{"round_robin": {}}]
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.http2.max_pings_without_data"] == 0
