"""The fake GitHub's GraphQL endpoint (`POST /graphql`, `/api/graphql` for GitHub Enterprise).

Queries are checked against an SDL subset of GitHub's published schema (`schema.graphql`) with
graphql-core, so a query GitHub would reject (a field or argument it lacks, a wrong type, a
syntax error) is rejected the same way: HTTP 200 with `errors` and no `data`. On top of the
schema, GitHub's own limits: every connection needs `first` or `last`, at most 100, and a query
may ask for at most 500,000 nodes. Cost follows GitHub's published rule: for every connection,
the number of requests needed to fill it (the product of its enclosing connections' sizes),
summed, divided by 100, rounded, at least 1 point. A query the budget cannot pay is answered
with a `RATE_LIMITED` error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    build_schema,
    execute,
    get_named_type,
    parse,
    validate,
)

from ghpulse.testing.fake_github.dataset import Dataset
from ghpulse.testing.fake_github.faults import PRIMARY_MESSAGE, RateBudget
from ghpulse.testing.fake_github.graphql_nodes import root

SCHEMA_FILE = Path(__file__).with_name("schema.graphql")
MAX_PAGE = 100
MAX_NODES = 500_000
DOCS = "https://docs.github.com/graphql"
SOMETHING_WENT_WRONG = (
    "Something went wrong while executing your query. This may be the result of a timeout, or it "
    "could be a GitHub bug. Please include `0000:FAKE` when reporting this issue."
)


@functools.cache
def schema() -> GraphQLSchema:
    """GitHub's schema subset, built once."""
    return build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Reply:
    """An answer of the endpoint: HTTP status, JSON body, and what the query cost (0: nothing)."""

    status: int
    body: Any
    cost: int = 0


class _Rejected(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def answer(
    dataset: Dataset, budget: RateBudget, raw: bytes, *, partial_error: str | None = None
) -> Reply:
    """Answer one POST body. `partial_error` (a fault) drops `repository` from the data and adds
    an error of that type ("" for none), the way GitHub answers when part of a query failed."""
    try:
        request = json.loads(raw or b"{}")
    except ValueError:
        return Reply(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        return Reply(200, _errors("A query attribute must be specified and must be a string."))
    try:
        document, operation, variables = _prepare(request)
        cost, nodes = _cost(document, operation, variables)
    except _Rejected as rejected:
        return Reply(200, {"errors": rejected.errors})
    if not budget.charge(cost):
        return Reply(200, {"errors": [{"type": "RATE_LIMITED", "message": PRIMARY_MESSAGE}]})
    state = budget.state()
    rate_limit = {**state, "cost": cost, "nodeCount": nodes}
    with dataset.lock:
        result = execute(
            schema(),
            document,
            root_value=root(dataset, rate_limit),
            variable_values=variables,
            operation_name=request.get("operationName"),
        )
    assert not isinstance(result, Awaitable)  # every resolver is synchronous
    data: dict[str, Any] | None = result.data
    errors = [_format(error) for error in result.errors or ()]
    if partial_error is not None and data is not None:
        data = {**data, "repository": None}
        error: dict[str, Any] = {"message": SOMETHING_WENT_WRONG, "path": ["repository"]}
        errors.append({**error, "type": partial_error} if partial_error else error)
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = errors
    return Reply(200, body, cost)


@functools.lru_cache(maxsize=256)
def _parsed(query: str) -> DocumentNode | list[dict[str, Any]]:
    """The document of a query, or its errors; cached, as crawls send the same queries again."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return [_format(error)]
    problems = validate(schema(), document)
    return [_format(error) for error in problems] if problems else document


def _prepare(request: dict[str, Any]) -> tuple[DocumentNode, OperationDefinitionNode, Any]:
    document = _parsed(request["query"])
    if isinstance(document, list):
        raise _Rejected(document)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    name = request.get("operationName")
    chosen = [o for o in operations if name is None or (o.name and o.name.value == name)]
    if len(chosen) != 1:
        raise _Rejected([{"message": "An operation name is required"}])
    operation = chosen[0]
    if operation.operation.value != "query":
        raise _Rejected([{"message": "The fake GitHub serves queries only"}])
    inputs = request.get("variables") or {}
    if not isinstance(inputs, dict):
        raise _Rejected([{"message": "Variables are invalid JSON."}])
    # Defaults of the operation's variables, then the request's values (execution coerces them).
    variables: dict[str, Any] = {
        d.variable.name.value: _literal(d.default_value, {})
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    return document, operation, {**variables, **inputs}


def _cost(
    document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> tuple[int, int]:
    """(points, nodes) of a valid query; raises `_Rejected` for GitHub's pagination limits."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(fragments, variables)
    query_type = schema().query_type
    assert query_type is not None
    walk.selections(operation.selection_set, query_type, 1, ())
    if walk.nodes > MAX_NODES:
        message = (
            f"This query requests up to {walk.nodes:,} possible nodes which exceeds the maximum "
            f"limit of {MAX_NODES:,}."
        )
        raise _Rejected([{"type": "MAX_NODE_LIMIT_EXCEEDED", "message": message}])
    return max(1, round(walk.requests / 100)), walk.nodes


@dataclass
class _Walk:
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    requests: int = 0
    nodes: int = 0

    def selections(
        self, selection_set: SelectionSetNode, parent: Any, multiplier: int, path: tuple[str, ...]
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.field(selection, parent, multiplier, path)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema().get_type(condition.name.value) if condition else parent
                self.selections(selection.selection_set, target, multiplier, path)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                target = schema().get_type(fragment.type_condition.name.value)
                self.selections(fragment.selection_set, target, multiplier, path)

    def field(self, node: FieldNode, parent: Any, multiplier: int, path: tuple[str, ...]) -> None:
        name = node.name.value
        if name.startswith("__"):
            return
        definition = getattr(parent, "fields", {}).get(name)
        if definition is None or node.selection_set is None:
            return
        here = (*path, node.alias.value if node.alias else name)
        named = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            size = self._page_size(node, here)
            self.requests += multiplier
            multiplier *= size
            self.nodes += multiplier
        self.selections(node.selection_set, named, multiplier, here)

    def _page_size(self, node: FieldNode, path: tuple[str, ...]) -> int:
        args = {a.name.value: _literal(a.value, self.variables) for a in node.arguments or ()}
        first, last = _int(args.get("first")), _int(args.get("last"))
        name = node.name.value
        if first is None and last is None:
            message = (
                f"You must provide a `first` or `last` value to properly paginate the `{name}` "
                "connection."
            )
            raise _Rejected([_typed("MISSING_PAGINATION_BOUNDARIES", message, path)])
        for argument, value in (("first", first), ("last", last)):
            if value is not None and not 0 <= value <= MAX_PAGE:
                message = (
                    f"Requesting {value} records on the `{name}` connection exceeds the "
                    f"`{argument}` limit of {MAX_PAGE} records."
                )
                raise _Rejected([_typed("EXCESSIVE_PAGINATION", message, path)])
        return max(first or 0, last or 0)


def _literal(value: Any, variables: dict[str, Any]) -> Any:
    """An argument's value where the cost needs it (ints, variables); None for anything else."""
    if isinstance(value, VariableNode):
        return variables.get(value.name.value)
    if isinstance(value, IntValueNode):
        return int(value.value)
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _typed(kind: str, message: str, path: tuple[str, ...]) -> dict[str, Any]:
    return {"type": kind, "path": list(path), "message": message}


def _errors(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


def _format(error: GraphQLError) -> dict[str, Any]:
    """An error as GitHub spells it: its `type` at the top level, not under `extensions`."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.pop("extensions", None) or {})
    if "type" in extensions:
        formatted["type"] = extensions.pop("type")
    if extensions:
        formatted["extensions"] = extensions
    return formatted
