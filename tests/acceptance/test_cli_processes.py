"""The `ghpulse` client commands as a user runs them, against real `ghpulse scheduler` and
`ghpulse crawler` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.github import serve
from tests.support.processes import BIN, ROOT, Processes, Service, free_port

pytestmark = pytest.mark.slow
TIMEOUT = 60


def ghpulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ghpulse"), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture
def cluster(processes: Processes) -> dict[str, str]:
    """A scheduler and a crawler running the test jobs; the env that points the CLI at them."""
    processes.scheduler()
    processes.crawler("crawler-1")
    return {"GHPULSE_SCHEDULER_ADDR": processes.scheduler_addr}


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_trigger_watch_get_runs_and_workers(cluster: dict[str, str]) -> None:
    watched = ghpulse("trigger", "crawl", "octo/a", "--label", "team=core", "--watch", env=cluster)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout

    triggered = as_json(ghpulse("trigger", "crawl", "octo/b", "-o", "json", env=cluster))
    run_id = triggered["run"]["id"]
    assert triggered["disposition"] == "DISPOSITION_CREATED"
    assert ghpulse("watch", run_id, env=cluster).returncode == 0
    run = as_json(ghpulse("get", run_id, "--output", "json", env=cluster))
    assert run["state"] == "RUN_STATE_SUCCEEDED"
    assert [step["name"] for step in run["steps"]] == ["alpha", "beta", "gamma"]

    listed = ghpulse("runs", "--state", "succeeded", "--label", "team=core", env=cluster)
    assert listed.returncode == 0
    assert "octo/a" in listed.stdout
    assert "octo/b" not in listed.stdout
    workers = as_json(ghpulse("workers", "-o", "json", env=cluster))
    assert [worker["id"] for worker in workers["workers"]] == ["crawler-1"]


def test_exit_codes_of_failed_and_cancelled_runs(
    cluster: dict[str, str], processes: Processes
) -> None:
    failed = ghpulse("trigger", "crawl", "test/fail", "--watch", env=cluster)
    assert failed.returncode == 3
    assert "failed: TEST_PERMANENT" in failed.stdout

    gated = as_json(ghpulse("trigger", "crawl", "test/gated", "-o", "json", env=cluster))
    run_id = gated["run"]["id"]
    cancelled = as_json(ghpulse("cancel", run_id, "--reason", "test", "-o", "json", env=cluster))
    assert cancelled["id"] == run_id
    assert ghpulse("watch", run_id, env=cluster).returncode == 4


def test_errors_print_status_and_details_on_one_line(cluster: dict[str, str]) -> None:
    missing = ghpulse("get", "run_nope", env=cluster)
    invalid = ghpulse("trigger", "crawl", "not a repo", env=cluster)
    unreachable = ghpulse("runs", "--scheduler", f"127.0.0.1:{free_port()}")

    assert missing.returncode == 1
    assert missing.stderr.startswith("error: NOT_FOUND: ")
    assert "reason=" in missing.stderr
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "invalid fields: crawl.repositories" in invalid.stderr
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: UNAVAILABLE: ")
    for result in (missing, invalid, unreachable):
        assert result.stderr.count("\n") == 1
    assert ghpulse("runs", "--label", "nolabel").returncode == 2


def _read_first_message(watch: subprocess.Popen[str]) -> str:
    """The first pretty-printed JSON message of `ghpulse watch -o json` (the snapshot)."""
    assert watch.stdout is not None
    lines = []
    for line in watch.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            return "".join(lines)
    raise AssertionError("watch printed nothing")


def test_watch_survives_a_scheduler_restart(processes: Processes) -> None:
    scheduler = processes.scheduler()
    processes.crawler("crawler-1")
    env = {"GHPULSE_SCHEDULER_ADDR": processes.scheduler_addr}
    run_id = as_json(ghpulse("trigger", "crawl", "test/gated", "-o", "json", env=env))["run"]["id"]
    watch = subprocess.Popen(
        [str(BIN / "ghpulse"), "watch", run_id, "-o", "json"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert '"snapshot"' in _read_first_message(watch)
        scheduler.kill()
        processes.scheduler()
        processes.open_gate(run_id)
        rest, _ = watch.communicate(timeout=TIMEOUT)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()

    assert watch.returncode == 0
    assert rest.count('"snapshot"') >= 1, "the watch reconnected (a new snapshot)"
    assert '"state": "RUN_STATE_SUCCEEDED"' in rest


def test_prs_and_stats_after_a_real_crawl(processes: Processes) -> None:
    with serve() as github:
        processes.scheduler()
        crawler = processes.crawler(
            "crawler-1", GHPULSE_CRAWLER_PLUGINS="", GHPULSE_GITHUB_API_URL=github.url
        )
        env = {
            "GHPULSE_SCHEDULER_ADDR": processes.scheduler_addr,
            "GHPULSE_CRAWLER_ADDR": crawler.address,
        }
        crawl = ghpulse("trigger", "crawl", "ghpulse-demo/infra", "--watch", env=env)
        assert crawl.returncode == 0, crawl.stdout + crawl.stderr
        prs = as_json(ghpulse("prs", "ghpulse-demo/infra", "-o", "json", "--limit", "5", env=env))
        stats = as_json(ghpulse("stats", "ghpulse-demo/infra", "-o", "json", env=env))
        table = ghpulse("stats", "ghpulse-demo/infra", env=env)

    assert len(prs["pull_requests"]) == 5
    assert prs["next_page_token"]
    assert stats["repository"] == "ghpulse-demo/infra"
    assert int(stats["total"]) > 0
    assert table.returncode == 0
    assert "ghpulse-demo/infra" in table.stdout
    assert "p50/p90" in table.stdout


def test_up_serves_both_services_until_interrupted(tmp_path: Path) -> None:
    scheduler, crawler = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {
        "GHPULSE_SCHEDULER_LISTEN": scheduler,
        "GHPULSE_CRAWLER_LISTEN": crawler,
        "GHPULSE_SCHEDULER_METRICS_LISTEN": "",
        "GHPULSE_CRAWLER_METRICS_LISTEN": "",
        "GHPULSE_GITHUB_API_URL": "http://127.0.0.1:9",
    }
    up = Service("up", scheduler, env, tmp_path / "up.log").start()
    try:
        workers = as_json(ghpulse("workers", "-o", "json", "--scheduler", scheduler))
        assert len(workers["workers"]) == 1
        assert (tmp_path / ".ghpulse" / "scheduler.db").exists()
        assert up.process is not None
        os.killpg(up.process.pid, signal.SIGINT)
        assert up.process.wait(30) == 0
    finally:
        up.kill()


def test_schedules_lifecycle(cluster: dict[str, str]) -> None:
    created = as_json(
        ghpulse(
            "schedules", "create", "octo/a", "--id", "hourly-a", "--every", "1h",
            "--label", "team=core", "-o", "json", env=cluster,
        )
    )  # fmt: skip
    assert created["id"] == "hourly-a"
    assert created["interval"] == "3600s"
    listed = ghpulse("schedules", "list", env=cluster)
    assert "hourly-a" in listed.stdout
    assert "every 1h00m" in listed.stdout
    assert as_json(ghpulse("schedules", "pause", "hourly-a", "-o", "json", env=cluster))["paused"]
    resumed = as_json(ghpulse("schedules", "resume", "hourly-a", "-o", "json", env=cluster))
    assert not resumed.get("paused", False)
    fired = as_json(ghpulse("schedules", "run-now", "hourly-a", "-o", "json", env=cluster))
    assert fired["run"]["schedule_id"] == "hourly-a"
    assert ghpulse("watch", fired["run"]["id"], env=cluster).returncode == 0
    assert ghpulse("schedules", "delete", "hourly-a", env=cluster).returncode == 0
    gone = ghpulse("schedules", "get", "hourly-a", env=cluster)
    assert gone.returncode == 1
    assert gone.stderr.startswith("error: NOT_FOUND")
    bad = ghpulse("schedules", "create", "octo/a", "--every", "soon", env=cluster)
    assert bad.returncode == 2


def test_schedules_update_changes_exactly_the_flags_given(cluster: dict[str, str]) -> None:
    created = as_json(
        ghpulse(
            "schedules", "create", "octo/a", "--id", "nightly", "--every", "1h", "--jitter", "5m",
            "--label", "team=core", "-o", "json", env=cluster,
        )
    )  # fmt: skip
    assert created["jitter"] == "300s"
    timing = as_json(
        ghpulse(
            "schedules", "update", "nightly", "--cron", "0 6 * * 1-5",
            "--time-zone", "Europe/Berlin", "-o", "json", env=cluster,
        )
    )  # fmt: skip
    assert (timing["cron"], timing["time_zone"]) == ("0 6 * * 1-5", "Europe/Berlin")
    assert "interval" not in timing
    assert timing["jitter"] == "300s"  # not in the mask: unchanged
    assert timing["template"]["labels"] == {"team": "core"}
    policy = as_json(
        ghpulse(
            "schedules", "update", "nightly", "--overlap", "queue", "--catch-up-window", "2h",
            "--label", "team=infra", "-o", "json", env=cluster,
        )
    )  # fmt: skip
    assert policy["overlap"] == "OVERLAP_POLICY_QUEUE"
    assert policy["catch_up_window"] == "7200s"
    assert policy["template"]["labels"] == {"team": "infra"}
    assert policy["cron"] == "0 6 * * 1-5"
    assert policy["template"]["crawl"]["repositories"] == ["octo/a"]
    nothing = ghpulse("schedules", "update", "nightly", env=cluster)
    assert nothing.returncode == 2
    assert "nothing to update" in nothing.stderr
    missing = ghpulse("schedules", "update", "absent", "--jitter", "1m", env=cluster)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: NOT_FOUND")


def test_crawler_refuses_credentials_in_the_api_url(tmp_path: Path) -> None:
    secret = "ghp_InTheUrl0000000000"
    env = {**os.environ, "GHPULSE_GITHUB_API_URL": f"https://x:{secret}@ghe.example/api/v3"}
    result = subprocess.run(
        [str(BIN / "ghpulse"), "crawler"], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert secret not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: crawler: invalid configuration: GHPULSE_GITHUB_API_URL: Value error, must not "
        "contain credentials (user:token@); set GITHUB_TOKEN instead"
    ]


def test_trigger_and_schedule_a_plugin_job(processes: Processes) -> None:
    processes.scheduler()
    processes.crawler("crawler-1", GHPULSE_CRAWLER_PLUGINS="bench.noop_plugin:register")
    env = {"GHPULSE_SCHEDULER_ADDR": processes.scheduler_addr}

    watched = ghpulse("trigger", "plugin", "noop", "-p", "n=3", "-p", "who=me", "--watch", env=env)
    listed = as_json(ghpulse("runs", "--job", "plugin", "-o", "json", env=env))
    table = ghpulse("runs", "--job", "plugin", env=env)
    created = as_json(
        ghpulse(
            "schedules", "create", "noop", "--job", "plugin", "-p", "n=1", "--every", "1h",
            "-o", "json", env=env,
        )
    )  # fmt: skip

    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout
    [run] = listed["runs"]
    assert run["plugin"] == {"kind": "noop", "params": {"n": 3, "who": "me"}}
    assert run["job_kind"] == "JOB_KIND_PLUGIN"
    assert "plugin:noop" in table.stdout
    assert created["template"]["plugin"] == {"kind": "noop", "params": {"n": 1}}
