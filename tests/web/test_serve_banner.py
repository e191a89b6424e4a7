"""``studio-integrations serve`` names GraphiQL once, and only when the page is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from studio_integrations.cli import main


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: started.append(app))
    monkeypatch.setenv("STUDIO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}")
    monkeypatch.setenv("STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STUDIO_PORT", "8123")
    return started


@pytest.mark.parametrize(
    ("env", "graphiql_lines"),
    [
        ({}, ["GraphiQL: http://127.0.0.1:8123/graphql"]),
        ({"STUDIO_GRAPHIQL": "false"}, []),
    ],
)
def test_serve_prints_one_graphiql_line_only_when_the_page_is_on(
    no_server: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    graphiql_lines: list[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 0
    assert len(no_server) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if "GraphiQL" in line] == graphiql_lines
    assert "External Health dashboard: http://127.0.0.1:8123/dashboard" in lines
