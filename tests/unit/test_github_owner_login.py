"""The rate-limit owner read from `GET /user` is a GitHub login or nothing shared: a broken or
hostile endpoint cannot pick the key a fleet's budget is shared under."""

from __future__ import annotations

from typing import Any

import pytest

from crawler_service.github.owner import ANONYMOUS, _login


@pytest.mark.parametrize("login", ["octocat", "a", "dependabot[bot]", "x-y-" + "z" * 35])
def test_a_login_is_the_owner(login: str) -> None:
    assert _login({"login": login}) == login


@pytest.mark.parametrize(
    "answer",
    [{}, {"login": ""}, {"login": 7}, {"login": "../x"}, {"login": "a" * 40}, [], None, "octocat"],
)
def test_an_answer_without_a_valid_login_is_not_shared(answer: Any) -> None:
    assert _login(answer) == ANONYMOUS
