"""Names GitHub returns, checked before they become keys or paths: a malicious or broken API
answering `../escaped` as a repository's `full_name` must not name a file outside the export
directory nor a key of another repository."""

from __future__ import annotations

from common.jobs.targets import is_repository
from crawler_service.errors import PermanentError
from crawler_service.jobs.registry import StepContext


class InvalidName(PermanentError):
    """GitHub returned a repository name that is not `owner/name` by GitHub's own rules."""

    code = "GITHUB_INVALID_NAME"


def valid_names(ctx: StepContext, names: list[str]) -> list[str]:
    """The well-formed `owner/name`s of an organization listing; the others are logged and
    dropped."""
    for name in names:
        if not is_repository(name):
            ctx.log.warning("fetch.invalid_repository_name", name=name[:100])
    return [name for name in names if is_repository(name)]


def checked_name(returned: object, requested: str) -> str:
    """The repository's `full_name` as GitHub spells it (a renamed repository answers with its
    new name) if it is a well-formed name; raises `InvalidName` otherwise."""
    if not returned:
        return requested
    name = str(returned)
    if not is_repository(name):
        raise InvalidName(
            f"GitHub answered the repository {requested} with the name {name[:100]!r}",
            code=InvalidName.code,
        )
    return name
