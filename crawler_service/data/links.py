"""Closing references: which issues a pull request closes, by GitHub's rules.

A closing reference is a keyword (close, closes, closed, fix, fixes, fixed, resolve, resolves,
resolved; any case; a whole word), an optional colon, whitespace on the same line, then exactly ONE
reference: `#N`, `owner/repo#N` or `https://github.com/owner/repo/issues/N`. In `fixes #1, #2` only
#1 is closed. References inside HTML comments, fenced code blocks (``` or ~~~) and inline code spans
are ignored.

Deliberate limits, matching what GitHub itself does or what we can decide from text alone:
- issue numbers start at 1 (`#0` and zero-padded numbers are no reference);
- URLs must point at github.com; a GitHub Enterprise host is not recognised;
- `/pull/N` URLs are pull requests, not issues, so they close nothing;
- indented (4-space) code blocks are not detected: telling them from paragraph continuation lines
  needs a full Markdown parser, and PR templates use fences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_REPO = r"[A-Za-z0-9._-]{1,100}"
_NUMBER = r"[1-9][0-9]{0,9}"

# Leftmost match wins, so whichever construct opens first hides what it contains: a fence inside a
# comment is comment text, `<!--` inside a code span is code.
_IGNORED = re.compile(
    # Every construct starts at one of these characters: a cheap first test at each position.
    r"(?=[ `~<])(?:"
    # A fence runs to its closing fence (same character, at least as long) or the end of the text;
    # a backtick fence's info string has no backticks (else it is an inline code span).
    r"^[ ]{0,3}(?P<ticks_fence>`{3,})[^`\n]*$(?:.*?^[ ]{0,3}(?P=ticks_fence)`*[ \t]*$|.*)"
    r"|^[ ]{0,3}(?P<tilde_fence>~{3,})[^\n]*$(?:.*?^[ ]{0,3}(?P=tilde_fence)~*[ \t]*$|.*)"
    r"|<!--.*?(?:-->|\Z)"
    # A code span: a backtick run, then the same run; it cannot cross a blank line (a paragraph).
    r"|(?<!`)(?P<ticks>`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`)"
    r")",
    re.MULTILINE | re.DOTALL,
)
_CLOSING = re.compile(
    r"(?=[cfr])(?<!\w)(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?:[ \t]*:[ \t]*|[ \t]+)"
    r"(?:https?://(?:www\.)?github\.com/"
    rf"(?P<url_repo>{_OWNER}/{_REPO})/issues/(?P<url_number>{_NUMBER})"
    rf"|(?P<repo>{_OWNER}/{_REPO})?#(?P<number>{_NUMBER}))"
    r"(?![\w/])",
    re.IGNORECASE,
)
# Cheap pre-checks: most text has no keyword at all, and most has nothing to hide.
_KEYWORD_STEMS = ("fix", "clos", "resolv")
_MAYBE_IGNORED = ("`", "~~~", "<!--")


@dataclass(frozen=True)
class Reference:
    """An issue a pull request closes. `repository` is "owner/name"."""

    repository: str
    number: int


def strip_ignored(text: str) -> str:
    """`text` with HTML comments, fenced code blocks and inline code spans blanked out."""
    if not any(marker in text for marker in _MAYBE_IGNORED):
        return text
    return _IGNORED.sub(" ", text)


def extract_closing_references(text: str | None, repository: str) -> list[Reference]:
    """The issues `text` (a PR description or commit message of `repository`) closes.

    Same-repository references (`#N`, or `owner/repo` spelled in any case) are reported under
    `repository`; cross-repository ones keep their own. Duplicates collapse, in order of first
    appearance.
    """
    if not text or not _maybe_closing(text):
        return []
    own = repository.lower()
    seen: dict[tuple[str, int], Reference] = {}
    for match in _CLOSING.finditer(strip_ignored(text)):
        reference = _reference(match, repository, own)
        seen.setdefault((reference.repository.lower(), reference.number), reference)
    return list(seen.values())


def _maybe_closing(text: str) -> bool:
    lowered = text.lower()
    return any(stem in lowered for stem in _KEYWORD_STEMS)


def _reference(match: re.Match[str], repository: str, own: str) -> Reference:
    target = match["url_repo"] or match["repo"] or repository
    number = match["url_number"] or match["number"]
    if target.lower() == own:
        target = repository
    return Reference(target, int(number))
