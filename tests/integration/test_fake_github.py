"""The fake GitHub over HTTP: real data, GitHub's headers, the control API, the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crawler_service.github.client import GitHubClient
from ghpulse.testing.fake_github import SAMPLE_DIR, Dataset
from ghpulse.testing.fake_github.generate import generate
from ghpulse.testing.fake_github.import_csv import convert
from tests.support.github import ANTS, ANTS_DIR, ants_dataset, sample_dataset, serve

# shared/ sits beside the repository (on developer machines and in CI).
RECORDING = Path(__file__).resolve().parents[3] / "shared" / "acceptance" / "github-ants"
API = "ghpulse-demo/api"


async def test_serves_the_recorded_ants_data():
    with serve(ants_dataset()) as fake:
        async with GitHubClient(fake.url) as github:
            pages = [page async for page in github.pulls(ANTS)]
            pr4 = await github.pull(ANTS, 4)
            reviews = await github.pull_reviews(ANTS, 41)
            commits = await github.pull_commits(ANTS, 23)
            releases = await github.releases(ANTS)

    pulls = pages[0].data
    assert len(pages) == 1
    assert len(pulls) == 49
    assert pulls[0]["updated_at"] == max(pr["updated_at"] for pr in pulls)
    assert (pr4["user"]["login"], pr4["merged"], pr4["merged_at"]) == (
        "barryz",
        True,
        "2018-07-26T02:32:41Z",
    )
    assert pr4["body"].startswith("fix #3")
    assert pr4["base"]["repo"]["full_name"] == ANTS
    assert len(reviews) == 12  # 13 rows recorded, one of them twice
    assert {r["pull_request_url"].rsplit("/", 1)[1] for r in reviews} == {"41"}
    assert commits
    assert all(len(c["sha"]) == 40 and c["commit"]["author"]["date"] for c in commits)
    assert releases == []


@pytest.mark.skipif(not RECORDING.exists(), reason="the recorded CSVs are not on this machine")
def test_the_ants_data_is_the_conversion_of_the_recording():
    converted = convert(RECORDING).require(ANTS).to_json()
    assert converted == Dataset.load(ANTS_DIR).require(ANTS).to_json()
    assert (ANTS_DIR / "LICENSE").exists() and (ANTS_DIR / "NOTICE").exists()


def test_the_bundled_sample_is_up_to_date():
    bundled = Dataset.load(SAMPLE_DIR)
    generated = generate()
    assert bundled.members == generated.members
    assert {name: repo.to_json() for name, repo in bundled.repos.items()} == {
        name: repo.to_json() for name, repo in generated.repos.items()
    }


@pytest.mark.parametrize("compress", [True, False])
def test_save_and_load_round_trip(tmp_path, compress):
    dataset = sample_dataset()
    dataset.save(tmp_path, compress=compress)
    loaded = Dataset.load(tmp_path)
    assert loaded.members == dataset.members
    assert loaded.require(API).to_json() == dataset.require(API).to_json()


def test_link_pagination_headers():
    with serve() as fake, httpx.Client(base_url=fake.enterprise_url) as http:
        first = http.get(f"/repos/{API}/pulls", params={"state": "all", "per_page": 50})
        last = http.get(first.links["last"]["url"])

    base = f"{fake.enterprise_url}/repos/{API}/pulls?state=all&per_page=50"
    assert first.links["next"]["url"] == base + "&page=2"
    assert first.links["last"]["url"] == base + "&page=3"
    assert set(last.links) == {"prev", "first"}
    assert len(last.json()) == 124 - 100


def test_etags_and_rate_limit_headers():
    with serve(rate_limit=10) as fake, httpx.Client(base_url=fake.url) as http:
        first = http.get(f"/repos/{API}")
        again = http.get(f"/repos/{API}", headers={"If-None-Match": first.headers["etag"]})
        weak = http.get(f"/repos/{API}", headers={"If-None-Match": "W/" + first.headers["etag"]})
        free = http.get("/rate_limit")

    assert first.headers["etag"].startswith('"')
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "10",
        "9",
    )
    assert (again.status_code, again.content) == (304, b"")
    assert (weak.status_code, weak.headers["x-ratelimit-remaining"]) == (304, "9")
    assert free.json()["resources"]["core"]["remaining"] == "9"
    assert int(first.headers["x-ratelimit-reset"]) > 0


def test_control_endpoint_schedules_faults_and_mutations():
    with serve() as fake, httpx.Client(base_url=fake.url) as http:
        scheduled = http.post(
            "/_fake/faults",
            json=[
                {"kind": "status", "path": "/pulls/1$", "status": 502, "count": 2},
                {"kind": "status", "path": "/pulls/2$", "status": 429, "retry_after": 3},
            ],
        )
        answers = [http.get(f"/repos/{API}/pulls/{n}") for n in (1, 1, 1, 2, 2)]
        log = http.get("/_fake/requests").json()
        http.delete("/_fake/requests")
        http.post("/_fake/rate_limit", json={"remaining": 0, "reset_in": 30})
        limited = http.get(f"/repos/{API}")
        http.post("/_fake/rate_limit", json={"remaining": 100})
        touched = http.post(
            "/_fake/touch_pull", json={"repo": API, "number": 3, "changes": {"title": "T"}}
        )
        newest = http.get(
            f"/repos/{API}/pulls", params={"state": "all", "sort": "updated", "direction": "desc"}
        )

    assert scheduled.status_code == 201
    assert [a.status_code for a in answers] == [502, 502, 200, 429, 200]
    assert answers[3].headers["retry-after"] == "3"
    assert [entry[3] for entry in log] == [502, 502, 200, 429, 200]
    assert (limited.status_code, limited.headers["x-ratelimit-remaining"]) == (403, "0")
    assert "rate limit exceeded" in limited.json()["message"]
    assert touched.json()["title"] == "T"
    assert newest.json()[0]["number"] == 3
    assert [r.status for r in fake.requests] == [403, 200]


@pytest.mark.slow
def test_runs_as_a_process():
    command = [sys.executable, "-m", "ghpulse.testing.fake_github", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            repo = httpx.get(f"{url}/api/v3/repos/{API}", timeout=10).json()
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert repo["full_name"] == API
