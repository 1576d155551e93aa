"""Who owns a token's rate limit: GitHub counts its limits per user (or App installation), so the
budget a fleet shares is keyed by that owner, never by the token itself."""

from __future__ import annotations

import structlog

from crawler_service.github.budget import ANONYMOUS
from crawler_service.github.client import GitHubClient
from crawler_service.github.errors import GitHubForbidden

log = structlog.get_logger("ghpulse.github")

__all__ = ["ANONYMOUS", "identify"]


async def identify(github: GitHubClient) -> str:
    """The owner of `github`'s token, learned once and kept in `github.budget.owner`: the user's
    login (`GET /user`), `installation:<account>` for a GitHub App installation token (which
    `GET /user` refuses with 403), `anonymous` without a token."""
    if github.budget.owner:
        return github.budget.owner
    if not github.authenticated:
        owner = ANONYMOUS
    else:
        try:
            owner = str((await github.get("/user")).data["login"])
        except GitHubForbidden:
            owner = await _installation_account(github)
    github.budget.owner = owner
    log.info("github.owner", owner=owner)
    return owner


async def _installation_account(github: GitHubClient) -> str:
    response = await github.get("/installation/repositories", {"per_page": 1})
    repositories = (response.data or {}).get("repositories") or [{}]
    account = (repositories[0].get("owner") or {}).get("login", "unknown")
    return f"installation:{account}"
