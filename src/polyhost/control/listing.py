"""List* parameters -> a store page query, and the NextToken that continues it.

Pagination is by keyset, not offset: the token carries the sort value and name of the last
row, so resources created or deleted between two pages neither repeat nor vanish from the
listing. The token is opaque to clients (`polyhost.tokens`' encoding: base64url of a small
JSON object); one that does not decode, or that was issued for another SortBy/SortOrder, is a
ValidationException.
"""

from __future__ import annotations

import math
from typing import Any

from polyhost.awsmodel.check import parse_timestamp
from polyhost.control.store import OrderColumn, PageQuery, Resource
from polyhost.errors import ValidationException
from polyhost.tokens import TokenCodec, is_count

DEFAULT_MAX_RESULTS = 10
SORT_COLUMNS: dict[str, OrderColumn] = {
    "Name": "name_key",
    "CreationTime": "created",
    "Status": "status",
}


def _bad_token(token: str) -> ValidationException:
    shown = token if len(token) <= 64 else token[:61] + "..."
    return ValidationException(
        f"Invalid NextToken '{shown}': pass the NextToken of the previous answer of the same "
        "List call (same SortBy and SortOrder) unchanged, or leave it out to start over."
    )


# No prefix: SageMaker's tokens were always bare base64url, and stay so.
_TOKENS = TokenCodec("", _bad_token)


def _number(value: Any) -> bool:
    """A cursor value SQLite can compare as REAL (a token is client input, even if opaque)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 2**53 and math.isfinite(value)


def _text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def page_query(params: dict[str, Any]) -> PageQuery:
    """The page a validated List* request asks for (the schema vouched for every member)."""
    column = SORT_COLUMNS[params.get("SortBy", "CreationTime")]
    descending = params.get("SortOrder", "Descending") == "Descending"
    after: tuple[str | float, str] | None = None
    token = params.get("NextToken")
    if token:
        payload = _TOKENS.decode(token)
        key = payload.get("k")
        if (
            payload.get("s") != column
            or payload.get("d") != descending
            or not isinstance(key, list)
            or len(key) != 2
            or not _text(key[1])
            or not (_number(key[0]) if column == "created" else _text(key[0]))
        ):
            raise _bad_token(token)
        after = (key[0], key[1])

    def stamp(member: str) -> float | None:
        value = params.get(member)
        return None if value is None else parse_timestamp(value)

    return PageQuery(
        order_by=column,
        descending=descending,
        # One more row than asked tells whether another page follows.
        limit=int(params.get("MaxResults", DEFAULT_MAX_RESULTS)) + 1,
        after=after,
        name_contains=params.get("NameContains"),
        created_before=stamp("CreationTimeBefore"),
        created_after=stamp("CreationTimeAfter"),
        modified_before=stamp("LastModifiedTimeBefore"),
        modified_after=stamp("LastModifiedTimeAfter"),
        status=params.get("StatusEquals"),
    )


def _sort_value(resource: Resource, column: OrderColumn) -> str | float:
    if column == "created":
        return resource.created
    if column == "status":
        return resource.status or ""
    return resource.name.lower()


def paginate(query: PageQuery, rows: list[Resource]) -> tuple[list[Resource], str | None]:
    """Split the rows of `query` (limit + 1 fetched) into this page and the next token."""
    size = query.limit - 1
    if len(rows) <= size:
        return rows, None
    page = rows[:size]
    last = page[-1]
    token = _TOKENS.encode(
        {
            "s": query.order_by,
            "d": query.descending,
            "k": [_sort_value(last, query.order_by), last.name.lower()],
        }
    )
    return page, token


def offset_from_token(token: str | None) -> int:
    """Position encoded by `offset_token` (ListTags pages through a short, ordered list)."""
    if not token:
        return 0
    offset = _TOKENS.decode(token).get("o")
    if not is_count(offset):
        raise _bad_token(token)
    return offset


def offset_token(offset: int) -> str:
    return _TOKENS.encode({"o": offset})
