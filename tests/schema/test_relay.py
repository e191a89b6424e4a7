"""Relay connections: edges (a cursor each) are made only when a query selects them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from studio_integrations.persistence.repository import Page, encode_cursor
from studio_integrations.schema import relay


def test_edges_are_made_only_when_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    cursor = Page.cursor

    def counted(self: Page[Any], item: Any) -> str:
        made.append(item.id)
        return cursor(self, item)

    monkeypatch.setattr(Page, "cursor", counted)
    items = [SimpleNamespace(id=f"c{i}") for i in range(3)]
    page = Page(items=items, has_next_page=True, has_previous_page=False)
    connection = relay.Connection.from_page(page, lambda item: item.id.upper())
    assert connection.nodes == ["C0", "C1", "C2"]
    assert made == ["c0", "c2"]  # the page info's start and end cursors only
    assert connection.page_info.end_cursor == encode_cursor("c2")
    edges = relay._edges(connection)
    assert [(e.cursor, e.node) for e in edges] == [
        (encode_cursor(i.id), i.id.upper()) for i in items
    ]
    assert made == ["c0", "c2", "c0", "c1", "c2"]
