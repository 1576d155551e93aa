"""The fake's accounts: which tokens it accepts, whose they are, and which repositories each sees.

Without accounts the fake accepts its one `token` (or any request when it has none) and every
token sees every repository. With accounts, each token has its own login (what `GET /user`
answers) and, optionally, its own repositories: another repository answers 404 through REST and
NOT_FOUND through GraphQL, as GitHub answers a token without access.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ghpulse.testing.fake_github.graphql_api import DOCS as GRAPHQL_DOCS


@dataclass(frozen=True)
class Account:
    """One token's owner and what it can see."""

    login: str
    #: `owner/name` of the repositories the token can see (lower case); None: all of them.
    repositories: frozenset[str] | None = None

    def sees(self, full_name: str) -> bool:
        return self.repositories is None or full_name.lower() in self.repositories


#: The account of the fake's own `token` (or of any token when it has none): the fake's
#: `user_login`, every repository.
DEFAULT = Account("")


def account(login: str, *repositories: str) -> Account:
    """An `Account` seeing `repositories` (none given: every repository)."""
    return Account(login, frozenset(r.lower() for r in repositories) if repositories else None)


class Accounts:
    """The tokens a fake accepts (see the module docstring)."""

    def __init__(self, token: str | None, accounts: Mapping[str, Account] | None) -> None:
        self._token = token
        self._accounts = dict(accounts or {})

    def of(self, header: str | None) -> Account | None:
        """The account of an `Authorization` header (`DEFAULT`: the fake's own `token`, or no
        token); None when the fake refuses it (401)."""
        token = _bearer(header)
        if token is not None and token in self._accounts:
            return self._accounts[token]
        if self._token is not None:
            return DEFAULT if token == self._token else None
        return None if self._accounts and token is not None else DEFAULT

    def refuses_rest(self, account: Account, path: str) -> bool:
        """Whether `account` may not see the repository `path` names (`/repos/o/r/...`)."""
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "repos":
            return False
        return not account.sees(f"{parts[2]}/{parts[3]}")

    def refuses_graphql(self, account: Account, raw: bytes) -> dict[str, object] | None:
        """GitHub's NOT_FOUND answer when the query's repository (`$owner`/`$name`) is one
        `account` may not see; None when it may."""
        if account.repositories is None:
            return None
        try:
            variables = json.loads(raw or b"{}").get("variables") or {}
        except (ValueError, AttributeError):
            return None
        owner, name = variables.get("owner"), variables.get("name")
        if (
            not isinstance(owner, str)
            or not isinstance(name, str)
            or account.sees(f"{owner}/{name}")
        ):
            return None
        message = f"Could not resolve to a Repository with the name '{owner}/{name}'."
        error = {"type": "NOT_FOUND", "path": ["repository"], "message": message}
        return {"data": {"repository": None}, "errors": [error], "documentation_url": GRAPHQL_DOCS}


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") else None
