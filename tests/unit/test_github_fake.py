"""The fake GitHub's pieces without a server: routes, faults, rate budget, dataset, generator."""

from __future__ import annotations

import pytest

from ghpulse.testing.fake_github import Dataset, Fault, FaultKind, Faults, RateBudget, shapes
from ghpulse.testing.fake_github.generate import SHOWCASE, generate
from ghpulse.testing.fake_github.routes import route
from tests.support.github import FakeClock

REPO = "acme/widgets"


@pytest.fixture
def dataset() -> Dataset:
    ds = Dataset()
    ds.add_repository(shapes.repository("acme", "widgets", created_at="2024-01-01T00:00:00Z"))
    for n in range(1, 8):
        ds.add_pull(
            REPO,
            number=n,
            title=f"PR {n}",
            created_at=f"2024-01-0{n}T00:00:00Z",
            updated_at=f"2024-02-0{8 - n}T00:00:00Z",
            state="open" if n % 2 else "closed",
            base_ref="main" if n < 7 else "release",
            additions=n,
            commits=[
                shapes.commit(
                    REPO,
                    shapes.sha(n, i),
                    message="m",
                    author_name="A",
                    author_email="a@x",
                    author_date="2024-01-01T00:00:00Z",
                )
                for i in range(300 if n == 1 else 1)
            ],
        )
    return ds


def get(ds: Dataset, path: str, **query: str):
    return route(ds, path, query, {"limit": "5000"})


def numbers(answer) -> list[int]:
    return [pr["number"] for pr in answer.body]


def test_pull_list_defaults_to_open_newest_created_first(dataset):
    answer = get(dataset, f"/repos/{REPO}/pulls")
    assert numbers(answer) == [7, 5, 3, 1]
    assert all("additions" not in pr and "merged" not in pr for pr in answer.body)


def test_pull_list_sorted_by_update_and_filtered(dataset):
    desc = get(dataset, f"/repos/{REPO}/pulls", state="all", sort="updated", direction="desc")
    asc = get(dataset, f"/repos/{REPO}/pulls", state="closed", sort="updated")
    base = get(dataset, f"/repos/{REPO}/pulls", state="all", base="release")
    assert numbers(desc) == [1, 2, 3, 4, 5, 6, 7]
    assert numbers(asc) == [6, 4, 2]
    assert numbers(base) == [7]


def test_pagination(dataset):
    answer = get(dataset, f"/repos/{REPO}/pulls", state="all", per_page="3", page="3")
    assert (numbers(answer), answer.page, answer.last_page) == ([1], 3, 3)
    beyond = get(dataset, f"/repos/{REPO}/pulls", state="all", per_page="3", page="9")
    assert beyond.body == []


def test_detail_reviews_commits_and_404s(dataset):
    assert get(dataset, f"/repos/{REPO}/pulls/3").body["additions"] == 3
    assert len(get(dataset, f"/repos/{REPO}/pulls/1/commits", per_page="100", page="3").body) == 50
    assert get(dataset, f"/repos/{REPO}/pulls/2/reviews").body == []
    for path in ("/repos/acme/nope", f"/repos/{REPO}/pulls/99", "/orgs/nobody/repos", "/x"):
        assert get(dataset, path).status == 404
    assert get(dataset, "/repos/ACME/Widgets").body["full_name"] == REPO


def test_rate_limit_endpoint_is_free(dataset):
    answer = get(dataset, "/rate_limit")
    assert answer.charged is False
    assert answer.body["resources"]["core"] == {"limit": "5000"}


def test_touch_pull_edits_and_moves_it_first(dataset):
    pr = dataset.touch_pull(REPO, 7, title="Edited", merged_at="2024-03-01T00:00:00Z")
    assert (pr["title"], pr["merged"]) == ("Edited", True)
    answer = get(dataset, f"/repos/{REPO}/pulls", state="all", sort="updated", direction="desc")
    assert numbers(answer)[0] == 7


def test_add_pull_numbers_after_the_last(dataset):
    pr = dataset.add_pull(REPO, title="New", author="zed", body=None)
    assert (pr["number"], pr["user"]["login"], pr["body"]) == (8, "zed", None)
    assert pr["created_at"] > max(
        p["updated_at"] for n, p in dataset.require(REPO).pulls.items() if n != 8
    )


def test_faults_apply_in_order_and_count_down():
    faults = Faults()
    faults.fail_next(r"/pulls$", 502, count=2)
    faults.drop_next(r"/reviews$")
    assert faults.take("/repos/o/r/commits") is None
    taken = [faults.take("/repos/o/r/pulls") for _ in range(3)]
    assert [fault and fault.status for fault in taken] == [502, 502, None]
    dropped = faults.take("/repos/o/r/pulls/1/reviews")
    assert dropped is not None
    assert dropped.kind is FaultKind.DROP
    assert faults.pending == []


def test_fault_bodies_and_json():
    assert "secondary rate limit" in Fault(FaultKind.STATUS, status=429).body()["message"]
    assert (
        "secondary rate limit"
        in Fault(FaultKind.STATUS, status=403, retry_after=3).body()["message"]
    )
    assert Fault(FaultKind.STATUS, status=403).body()["message"] == "Forbidden"
    fault = Fault.from_json({"kind": "status", "path": "x", "status": 429, "retry_after": 2})
    assert (fault.pattern, fault.status, fault.retry_after, fault.count) == ("x", 429, 2, 1)


def test_rate_budget_spends_and_refills_at_reset():
    clock = FakeClock()
    budget = RateBudget(limit=2, window=60, clock=clock)
    assert [budget.charge(), budget.charge(), budget.charge()] == [True, True, False]
    assert budget.headers()["x-ratelimit-remaining"] == "0"
    assert budget.headers()["x-ratelimit-used"] == "2"
    clock.now += 60
    assert budget.charge() is True
    assert budget.headers()["x-ratelimit-reset"] == str(int(clock.now) + 60)


def test_the_generator_is_deterministic_and_covers_the_showcases():
    first, second = generate(7), generate(7)
    assert [r.to_json() for r in first.repos.values()] == [
        r.to_json() for r in second.repos.values()
    ]
    api = first.require("ghpulse-demo/api")
    assert [api.pulls[n]["title"] for n in range(1, len(SHOWCASE) + 1)] == [
        s.title for s in SHOWCASE
    ]
    assert first.require("ghpulse-demo/legacy").repository["archived"] is True
    authors = {p["user"]["type"] for r in first.repos.values() for p in r.pulls.values()}
    assert authors == {"User", "Bot"}
