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


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of the edges, for clients that need no cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]

    @classmethod
    def from_page(cls, page: Page[Any], to_node: Callable[[Any], T]) -> Connection[T]:
        edges = [Edge(cursor=page.cursor(item), node=to_node(item)) for item in page.items]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )
