"""Relay conventions: the ``Node`` interface and cursor connections.

Ids are the objects' own prefixed ids (see ``ids``), already global and opaque, so
``node(id:)`` needs no id translation. Pages are ``first`` (≤ 100, default 20) and
``after``, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from studio_integrations.persistence.repository import Page

T = TypeVar("T")


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


def _edges(root):  # type: ignore[no-untyped-def]  # the field's annotation types it
    """A connection's edges, made when selected."""
    cursor = root._page.cursor
    return [
        Edge(cursor=cursor(item), node=node)
        for item, node in zip(root._page.items, root.nodes, strict=True)
    ]


@strawberry.type
class Connection(Generic[T]):
    """A page of nodes. The edges (a cursor each) are made only when a query selects them:
    the Studio's lists ask for ``nodes`` (3 runs under each of 50 connections)."""

    edges: list[Edge[T]] = strawberry.field(resolver=_edges)
    page_info: PageInfo
    nodes: list[T] = strawberry.field(
        description="The nodes of the edges, for clients that need no cursors."
    )
    _page: strawberry.Private[Page[Any]]

    @classmethod
    def from_page(cls, page: Page[Any], to_node: Callable[[Any], T]) -> Connection[T]:
        items = page.items
        return cls(
            _page=page,
            nodes=[to_node(item) for item in items],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursor(items[0]) if items else None,
                end_cursor=page.cursor(items[-1]) if items else None,
            ),
        )
