"""The GitHub client's errors: permanent ones per HTTP status, and one transient one.

Every error carries the HTTP `status` (None when no response arrived) and the requested `url`;
the URL never holds the token (it travels only in the Authorization header).
"""

from __future__ import annotations

from crawler_service.errors import PermanentError, TransientError


class GitHubPermanentError(PermanentError):
    """GitHub refused the request; retrying will not help."""

    code = "GITHUB_ERROR"

    def __init__(self, url: str, status: int, github_message: str = "") -> None:
        self.url = url
        self.status = status
        self.github_message = github_message
        detail = f": {github_message}" if github_message else ""
        message = f"GitHub answered {status} for {url}{detail}"
        super().__init__(message, code=type(self).code, status=status, url=url)


class GitHubUnauthorized(GitHubPermanentError):
    """The token is missing, invalid or expired (401)."""

    code = "GITHUB_UNAUTHORIZED"


class GitHubForbidden(GitHubPermanentError):
    """The token may not access this resource (403, not a rate limit)."""

    code = "GITHUB_FORBIDDEN"


class GitHubNotFound(GitHubPermanentError):
    """The resource does not exist, or the token cannot see it (404)."""

    code = "GITHUB_NOT_FOUND"


class GitHubGone(GitHubPermanentError):
    """The resource was removed (410)."""

    code = "GITHUB_GONE"


class GitHubInvalid(GitHubPermanentError):
    """GitHub rejected the request as invalid (422)."""

    code = "GITHUB_INVALID"


class GitHubForeignLink(GitHubPermanentError):
    """GitHub pointed to another origin than the configured API (a `Link` or a URL elsewhere):
    the token is only ever sent to the configured API, so the request is not made."""

    code = "GITHUB_FOREIGN_LINK"

    def __init__(self, url: str, origin: str) -> None:
        self.url, self.status, self.github_message = url, 0, ""
        PermanentError.__init__(
            self,
            f"refusing to request {url}: it is outside the configured GitHub API {origin}",
            code=self.code,
            url=url,
        )


class GitHubUnavailable(TransientError):
    """GitHub kept failing (5xx, resets, timeouts or rate limits) after every retry."""

    def __init__(self, url: str, status: int | None, reason: str, attempts: int) -> None:
        self.url = url
        self.status = status
        self.reason_detail = reason
        self.attempts = attempts
        message = f"GitHub unavailable for {url} after {attempts} attempts: {reason}"
        super().__init__(
            message, code="GITHUB_UNAVAILABLE", status=status, url=url, attempts=attempts
        )


_BY_STATUS: dict[int, type[GitHubPermanentError]] = {
    401: GitHubUnauthorized,
    403: GitHubForbidden,
    404: GitHubNotFound,
    410: GitHubGone,
    422: GitHubInvalid,
}


def permanent_error(url: str, status: int, github_message: str = "") -> GitHubPermanentError:
    """The permanent error for a 4xx answer (a generic one for statuses without their own)."""
    return _BY_STATUS.get(status, GitHubPermanentError)(url, status, github_message)
