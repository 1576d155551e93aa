from __future__ import annotations

import pytest

from crawler_service.data.links import Reference, extract_closing_references, strip_ignored

REPO = "octo/app"


def refs(*pairs: tuple[str, int]) -> list[Reference]:
    return [Reference(repository, number) for repository, number in pairs]


CASES: list[tuple[str, str, list[Reference]]] = [
    # Every keyword, in several cases.
    ("close", "close #1", refs((REPO, 1))),
    ("closes", "Closes #2", refs((REPO, 2))),
    ("closed", "CLOSED #3", refs((REPO, 3))),
    ("fix", "fix #4", refs((REPO, 4))),
    ("fixes", "Fixes #5", refs((REPO, 5))),
    ("fixed", "fIxEd #6", refs((REPO, 6))),
    ("resolve", "resolve #7", refs((REPO, 7))),
    ("resolves", "Resolves #8", refs((REPO, 8))),
    ("resolved", "RESOLVED #9", refs((REPO, 9))),
    # Not keywords.
    ("fixing is no keyword", "fixing #1", []),
    ("closing is no keyword", "closing #1", []),
    ("whole words only", "discloses #4", []),
    ("prefix glued by underscore", "pre_fixes #4", []),
    ("suffix glued", "fixesx #4", []),
    ("mention without keyword", "see #4", []),
    ("keyword glued to the hash", "Fixes#4", []),
    ("keyword and reference on different lines", "Fixes\n#4", []),
    # Colon and spacing.
    ("colon", "Fixes: #1", refs((REPO, 1))),
    ("colon without space", "Fixes:#1", refs((REPO, 1))),
    ("space before colon", "Fixes : #1", refs((REPO, 1))),
    ("several spaces and a tab", "Fixes \t  #1", refs((REPO, 1))),
    # Position in the text and punctuation around the reference.
    ("keyword at line start", "Some text.\nfixes #11\nmore", refs((REPO, 11))),
    ("reference at text end", "This fixes #12", refs((REPO, 12))),
    ("period after the number", "Fixes #13.", refs((REPO, 13))),
    ("comma after the number", "Fixes #13, thanks", refs((REPO, 13))),
    ("parentheses", "(fixes #14)", refs((REPO, 14))),
    ("after punctuation", "done;fixes #15", refs((REPO, 15))),
    ("hyphenated word before", "re-fixes #16", refs((REPO, 16))),
    ("number glued to letters", "Fixes #12abc", []),
    ("number glued to underscore", "Fixes #12_a", []),
    ("issue zero", "Fixes #0", []),
    ("zero-padded number", "Fixes #012", []),
    ("too many digits", "Fixes #12345678901", []),
    ("bare hash", "Fixes #", []),
    # Exactly one reference per keyword.
    ("list closes only the first", "fixes #1, #2", refs((REPO, 1))),
    ("and-list closes only the first", "fixes #1 and #2", refs((REPO, 1))),
    ("two keywords close both", "fixes #1, fixes #2", refs((REPO, 1), (REPO, 2))),
    ("keyword in prose", "This PR closes #3 and resolves #4.", refs((REPO, 3), (REPO, 4))),
    # Cross-repository references keep their repository.
    ("owner/repo#N", "Fixes other/lib#3", refs(("other/lib", 3))),
    ("owner/repo#N with dots", "fixes my-org/lib.js#30", refs(("my-org/lib.js", 30))),
    ("own repository spelled out", "Fixes octo/app#3", refs((REPO, 3))),
    ("own repository in another case", "Fixes Octo/App#3", refs((REPO, 3))),
    ("owner without repo", "Fixes octo#3", []),
    # URLs.
    ("issue URL", "Fixes https://github.com/other/lib/issues/5", refs(("other/lib", 5))),
    ("own issue URL", "Closes https://github.com/octo/app/issues/6", refs((REPO, 6))),
    ("http and www", "fixes http://www.github.com/a/b/issues/7", refs(("a/b", 7))),
    ("URL with fragment", "fixes https://github.com/a/b/issues/8#issuecomment-1", refs(("a/b", 8))),
    ("URL then period", "fixes https://github.com/a/b/issues/9.", refs(("a/b", 9))),
    ("pull URL is no issue", "Fixes https://github.com/a/b/pull/5", []),
    ("URL with a deeper path", "Fixes https://github.com/a/b/issues/5/x", []),
    ("enterprise host is not matched", "Fixes https://ghe.corp.example/a/b/issues/5", []),
    ("URL with keyword colon", "Resolves: https://github.com/a/b/issues/10", refs(("a/b", 10))),
    # Duplicates collapse, first appearance first.
    ("duplicates", "Fixes #2. Also closes #1. Resolves #2.", refs((REPO, 2), (REPO, 1))),
    (
        "same issue three ways",
        "fixes #4\ncloses octo/app#4\nresolves https://github.com/octo/app/issues/4",
        refs((REPO, 4)),
    ),
    ("cross-repo duplicate in another case", "fixes a/b#1 fixes A/B#1", refs(("a/b", 1))),
    # Ignored regions.
    ("HTML comment", "<!-- Fixes #1 -->\nFixes #2", refs((REPO, 2))),
    ("multi-line HTML comment", "<!--\ntemplate: fixes #1\n-->", []),
    ("unterminated HTML comment", "ok\n<!-- fixes #1", []),
    ("inline code", "Use `fixes #1` to link; fixes #2", refs((REPO, 2))),
    ("double-backtick code", "``fixes #1 ` x`` fixes #3", refs((REPO, 3))),
    ("backtick fence", "```\nfixes #1\n```\nfixes #2", refs((REPO, 2))),
    ("backtick fence with info", "```python\n# fixes #1\n```\n", []),
    ("tilde fence", "~~~\ncloses #1\n~~~\ncloses #2", refs((REPO, 2))),
    ("indented fence", "   ```\nfixes #1\n   ```", []),
    ("longer closing fence", "````\nfixes #1\n`````\nfixes #2", refs((REPO, 2))),
    ("shorter fence does not close", "````\n```\nfixes #1\n````\nfixes #2", refs((REPO, 2))),
    ("unterminated fence runs to the end", "```\nfixes #1\n", []),
    ("tilde does not close backticks", "```\n~~~\nfixes #1\n```\nfixes #2", refs((REPO, 2))),
    ("stray backtick keeps the reference", "a ` b\nfixes #5", refs((REPO, 5))),
    ("code span does not cross paragraphs", "a `b\n\nfixes #5\n\nc` d", refs((REPO, 5))),
    ("comment marker inside code", "`<!--` fixes #5 `-->`", refs((REPO, 5))),
    ("fence inside comment", "<!--\n```\n-->\nfixes #6", refs((REPO, 6))),
    # Empty input.
    ("empty", "", []),
    ("no keyword at all", "Refactor the parser.\n\nSee #1.", []),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in CASES],
    ids=[name for name, _, _ in CASES],
)
def test_extract_closing_references(text: str, expected: list[Reference]) -> None:
    assert extract_closing_references(text, REPO) == expected


def test_none_text_has_no_references() -> None:
    assert extract_closing_references(None, REPO) == []


def test_strip_ignored_leaves_plain_text_untouched() -> None:
    text = "Fixes #1\nplain text"
    assert strip_ignored(text) is text


def test_realistic_pr_template() -> None:
    body = (
        "## Summary\n"
        "<!-- Describe your change. Use 'Fixes #123' to close an issue. -->\n"
        "Rewrites the cache.\n\n"
        "## Related\n"
        "Fixes #42\n"
        "Resolves: upstream/lib#7\n"
        "Partially addresses #43, see `closes #44` example:\n\n"
        "```sh\n"
        "git commit -m 'fixes #45'\n"
        "```\n"
    )
    assert extract_closing_references(body, REPO) == refs((REPO, 42), ("upstream/lib", 7))
