"""`ghpulse up`'s metrics addresses: the option, else the environment — where an empty value turns
metrics off (click's own `envvar` reads an empty value as unset and would bind the default port) —
else the default."""

from __future__ import annotations

import pytest

from ghpulse.cli.up import SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT, metrics_address


def test_the_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEDULER_METRICS, "127.0.0.1:9999")
    assert metrics_address("", SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT) == ""
    assert metrics_address("0.0.0.0:1", SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT) == "0.0.0.0:1"


def test_an_empty_environment_variable_turns_metrics_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEDULER_METRICS, "")
    assert metrics_address(None, SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT) == ""


def test_unset_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_METRICS, raising=False)
    assert metrics_address(None, SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT) == "127.0.0.1:9464"
    monkeypatch.setenv(SCHEDULER_METRICS, "127.0.0.1:9999")
    assert metrics_address(None, SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT) == "127.0.0.1:9999"
