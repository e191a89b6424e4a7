"""Trusted documents over HTTP: Apollo APQ (miss, register by sending, hit by POST and GET,
hash mismatch), the registered allowlist and its refusals, and the `documents register` verb."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio_integrations.app import create_app
from studio_integrations.persistence.db import Database
from studio_integrations.persistence.documents import DocumentStore
from tests.conftest import TokenFactory, make_settings
from tests.support.backends import Backend
from tests.support.live import LiveServer, serve
from tests.test_cli import cli

VIEWER = "query Viewer { viewer { subject tenantId } }"
OTHER = "query Other { viewer { subject } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


def persisted_raw(text: str) -> dict[str, Any]:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def post(
    http: httpx.AsyncClient, token: str, expect: int = 200, **body: Any
) -> dict[str, Any]:
    response = await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def stored(url: str, text: str) -> tuple[str, bool] | None:
    db = Database(url)
    try:
        found = await DocumentStore(db).get(sha(text))
    finally:
        await db.dispose()
    return None if found is None else (found.body, found.registered)


async def test_apq_miss_then_register_by_sending_then_hit_by_post_and_get(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory, backend: Backend
) -> None:
    token = make_token()
    miss = await post(http, token, extensions=persisted(VIEWER))
    assert codes(miss) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert miss["errors"][0]["message"] == "PersistedQueryNotFound"
    assert miss.get("data") is None

    sent = await post(http, token, query=VIEWER, extensions=persisted(VIEWER))
    assert sent == {"data": {"viewer": {"subject": "alice", "tenantId": "acme"}}}
    assert await stored(backend.database_url, VIEWER) == (VIEWER, False)

    hit = await post(http, token, extensions=persisted(VIEWER))
    assert hit == sent
    response = await http.get(
        "/graphql",
        params={"extensions": json.dumps(persisted(VIEWER))},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == sent


async def test_apq_hash_must_be_the_documents(
    server: LiveServer, http: httpx.AsyncClient, make_token: TokenFactory, backend: Backend
) -> None:
    token = make_token()
    wrong = await post(http, token, expect=400, query=OTHER, extensions=persisted(VIEWER))
    assert codes(wrong) == ["PERSISTED_QUERY_HASH_MISMATCH"]
    assert await stored(backend.database_url, OTHER) is None
    assert await stored(backend.database_url, VIEWER) is None
    for bad in (
        {"persistedQuery": {"version": 2, "sha256Hash": sha(VIEWER)}},
        {"persistedQuery": {"version": 1, "sha256Hash": sha(VIEWER).upper()}},
        {"persistedQuery": "yes"},
    ):
        refused = await post(http, token, expect=400, extensions=bad)
        assert codes(refused) == ["BAD_REQUEST"]
    # Text a database cannot keep is not remembered (it runs, or is refused, as without APQ).
    for text in ("{ viewer { subject } } # \x00", "{ viewer { subject } } # \ud800"):
        body = json.dumps({"query": text, "extensions": persisted_raw(text)})  # ASCII-escaped
        sent = await http.post(
            "/graphql",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        # A lone surrogate is refused before anything runs (INVALID_UNICODE), U+0000 runs
        # into its own refusal (NUL_CHARACTER): as without APQ.
        assert sent.status_code == (400 if "\ud800" in text else 200), sent.text
        miss = await post(http, token, extensions=persisted_raw(text))
        assert codes(miss) == ["PERSISTED_QUERY_NOT_FOUND"]
    # Authentication still comes first.
    response = await http.post("/graphql", json={"extensions": persisted(VIEWER)})
    assert response.status_code == 401


@pytest.fixture
async def allowlist(backend: Backend, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(backend, tmp_path, trusted_documents="allowlist")
    async with (
        serve(create_app(settings)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        yield client


async def register(backend: Backend, tmp_path: Path, *files: Path) -> str:
    # The CLI runs in a thread: run inline, it blocked this event loop, which also runs the
    # server and its relay; a relay transaction open at that moment held SQLite's write lock
    # until the CLI gave up ("database is locked" after its 30 s busy timeout, seen in CI).
    env = {"STUDIO_STATE_DIR": str(tmp_path / "state"), "STUDIO_DATABASE_URL": backend.database_url}
    done = await asyncio.to_thread(cli, "documents", "register", *map(str, files), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_allowlist_runs_registered_documents_only(
    allowlist: httpx.AsyncClient, make_token: TokenFactory, backend: Backend, tmp_path: Path
) -> None:
    token = make_token()
    # Learned through APQ elsewhere is not registered: still refused.
    refused = await post(allowlist, token, expect=403, query=VIEWER, extensions=persisted(VIEWER))
    assert codes(refused) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    assert await stored(backend.database_url, VIEWER) is None

    document = tmp_path / "Viewer.graphql"
    document.write_text(VIEWER)
    assert await register(backend, tmp_path, document) == "registered 1 documents (1 new)\n"
    expected = {"data": {"viewer": {"subject": "alice", "tenantId": "acme"}}}
    assert await post(allowlist, token, extensions=persisted(VIEWER)) == expected
    assert await post(allowlist, token, query=VIEWER) == expected

    for body in (
        {"query": OTHER},
        {"extensions": persisted(OTHER)},
        {"query": OTHER, "extensions": persisted(OTHER)},
        {"query": "{ __schema { types { name } } }"},
    ):
        refused = await post(allowlist, token, expect=403, **body)
        assert codes(refused) == ["PERSISTED_QUERY_NOT_ALLOWED"], body
        assert refused["data"] is None
    assert await stored(backend.database_url, OTHER) is None


async def test_register_reads_manifests_and_refuses_wrong_hashes(
    backend: Backend, tmp_path: Path
) -> None:
    manifest = tmp_path / "persisted-query-manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [
                    {"id": sha(VIEWER), "name": "Viewer", "type": "query", "body": VIEWER},
                    {"id": sha(OTHER), "name": "Other", "type": "query", "body": OTHER},
                ],
            }
        )
    )
    assert await register(backend, tmp_path, manifest) == "registered 2 documents (2 new)\n"
    assert await stored(backend.database_url, OTHER) == (OTHER, True)
    codegen = tmp_path / "persisted-documents.json"
    codegen.write_text(json.dumps({sha(VIEWER): VIEWER}))
    assert await register(backend, tmp_path, codegen) == "registered 1 documents (0 new)\n"

    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({sha(VIEWER): OTHER + " "}))
    broken = tmp_path / "broken.graphql"
    broken.write_text("query {")
    env = {"STUDIO_STATE_DIR": str(tmp_path / "state"), "STUDIO_DATABASE_URL": backend.database_url}
    for bad, message in ((forged, "not the SHA-256"), (broken, "Syntax Error")):
        done = await asyncio.to_thread(cli, "documents", "register", str(bad), env=env)
        assert done.returncode == 2
        assert message in done.stderr
    assert await stored(backend.database_url, OTHER + " ") is None


async def test_persisted_queries_can_be_turned_off(
    backend: Backend, tmp_path: Path, make_token: TokenFactory
) -> None:
    settings = make_settings(backend, tmp_path, trusted_documents="off")
    async with (
        serve(create_app(settings)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        token = make_token()
        refused = await post(client, token, query=VIEWER, extensions=persisted(VIEWER))
        assert codes(refused) == ["PERSISTED_QUERY_NOT_SUPPORTED"]
        assert await post(client, token, query=VIEWER) == {
            "data": {"viewer": {"subject": "alice", "tenantId": "acme"}}
        }
