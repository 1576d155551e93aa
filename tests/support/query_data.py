"""The hand-checked crawler data set the query tests run on (`seed`), written with the ORM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from common.db import create_sync
from crawler_service.data.models import ClosingLink, PullRequest, Repository


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


def _pr(
    repository: str, number: int, state: str, created: datetime, merged: datetime | None, **extra
) -> PullRequest:
    values = {
        "title": f"PR {number}",
        "author": "bob",
        "base_ref": "main",
        "updated_at": created + timedelta(days=1),
        "additions": 1,
        "deletions": 1,
        "url": f"https://github.com/{repository}/pull/{number}",
    }
    values.update(extra)
    return PullRequest(
        repository=repository,
        number=number,
        state=state,
        created_at=created,
        merged_at=merged,
        closed_at=merged,
        **values,
    )


def seed(url: str) -> None:
    """The hand-checked data set shared by the query tests.

    Octo/App (links never computed): #1 merged (Tue Mar 5), #2 open and #3 closed created at the
    same instant, #5 merged Sunday Mar 10 23:00 without a size class, #4 merged Wed Mar 20.
    Octo/Lib (links computed): #7 closes Octo/App#10 from its description.
    """
    engine = create_sync(url)
    with Session(engine) as session:
        for full_name, linked in (("Octo/App", None), ("Octo/Lib", at(1))):
            session.add(
                Repository(
                    repository=full_name.lower(),
                    full_name=full_name,
                    owner="octo",
                    default_branch="main",
                    archived=False,
                    updated_at=at(1),
                    links_computed_at=linked,
                )
            )
        app = "octo/app"
        session.add_all(
            [
                _pr(
                    app,
                    1,
                    "merged",
                    at(4, 10),
                    at(5, 10),
                    size_class="S",
                    coding_seconds=3600.0,
                    pickup_seconds=7200.0,
                    review_seconds=1800.0,
                    deploy_seconds=86400.0,
                ),
                _pr(app, 2, "open", at(6), None, size_class="XS", coding_seconds=100.0),
                _pr(app, 3, "closed", at(6), None, size_class="L"),
                _pr(
                    app,
                    4,
                    "merged",
                    at(11),
                    at(20),
                    size_class="XXL",
                    coding_seconds=0.0,
                    pickup_seconds=3600.0,
                    review_seconds=600000.0,
                ),
                _pr(app, 5, "merged", at(8, 12), at(10, 23), pickup_seconds=86400.0),
                _pr("octo/lib", 7, "merged", at(2), at(3), size_class="M"),
            ]
        )
        session.add_all(
            [
                ClosingLink(
                    repository=app,
                    pr_number=1,
                    issue_repository=app,
                    issue_number=10,
                    source="description",
                ),
                ClosingLink(
                    repository=app,
                    pr_number=1,
                    issue_repository="octo/lib",
                    issue_number=3,
                    source="commit_message",
                ),
                ClosingLink(
                    repository=app,
                    pr_number=4,
                    issue_repository="other/thing",
                    issue_number=2,
                    source="description",
                ),
                ClosingLink(
                    repository="octo/lib",
                    pr_number=7,
                    issue_repository=app,
                    issue_number=10,
                    source="description",
                ),
            ]
        )
        session.commit()
    engine.dispose()


def set_links_marker(url: str, repository: str) -> None:
    engine = create_sync(url)
    with Session(engine) as session:
        session.execute(
            update(Repository)
            .where(Repository.repository == repository)
            .values(links_computed_at=at(28))
        )
        session.commit()
    engine.dispose()
