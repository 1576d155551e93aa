"""Who owns a token's rate limit: GitHub counts its limits per user (or App installation), so the
budget a fleet shares is keyed by that owner, never by the token itself."""

from __future__ import annotations

import re
from typing import Any

import structlog

from crawler_service.github.budget import ANONYMOUS
from crawler_service.github.client import GitHubClient
from crawler_service.github.errors import GitHubForbidden

log = structlog.get_logger("ghpulse.github")
#: A GitHub login (App bots end in `[bot]`); anything else from `GET /user` is not trusted as a key.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")

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
            owner = _login((await github.get("/user")).data)
        except GitHubForbidden:
            owner = await _installation_account(github)
    github.budget.owner = owner
    log.info("github.owner", owner=owner)
    return owner


def _login(user: Any) -> str:
    """The user's login; an answer without a valid one (a proxy, a broken or hostile endpoint)
    leaves the token unshared (`anonymous`: this process's own budget, as without a database)."""
    login = user.get("login") if isinstance(user, dict) else None
    if isinstance(login, str) and _LOGIN.fullmatch(login):
        return login
    log.warning("github.owner_unknown", reason="GET /user answered without a valid login")
    return ANONYMOUS


async def _installation_account(github: GitHubClient) -> str:
    response = await github.get("/installation/repositories", {"per_page": 1})
    repositories = (response.data or {}).get("repositories") or [{}]
    account = (repositories[0].get("owner") or {}).get("login", "unknown")
    return f"installation:{account}"
