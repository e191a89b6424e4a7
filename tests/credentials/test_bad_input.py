"""Every bad registerCredential input: userErrors with field and code, nothing written, no
event; another tenant's secret reads exactly like a missing one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import SharedApp
from tests.credentials.conftest import (
    LOCAL_REF,
    REGISTER_CREDENTIAL,
    SECRET,
    counts,
    credential_input,
    in_days,
    put_secret,
)
from tests.support.graphql import gql

REF = "local://vault/secrets/"


@dataclass(frozen=True)
class World:
    token: str
    enabled_version: str
    disabled_version: str
    foreign_version: str  # an older version of `mixed`, tagged for globex


# The cases only prove that nothing changes: one world per back end serves the module.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(shared: SharedApp) -> World:
    """acme: `deputy-api-key` (enabled, then a disabled newest), `all-disabled`, `expired`,
    `registered` (already bound), `mixed` (globex's old version, acme's newest);
    globex: `globex-key`; nobody: `untagged`."""
    vault = shared.services.vault
    enabled = await put_secret(vault)
    disabled = await put_secret(vault, value="second")
    await vault.update_properties(SECRET, disabled.version, enabled=False)
    off = await put_secret(vault, "all-disabled")
    await vault.update_properties("all-disabled", off.version, enabled=False)
    await vault.set_secret(
        "expired",
        "v",
        tags={"studio-tenant": "acme"},
        expires_at=datetime.now(UTC) - timedelta(days=1),
    )
    await put_secret(vault, "registered")
    foreign = await put_secret(vault, "mixed", tenant="globex")
    await put_secret(vault, "mixed", tenant="acme")
    await put_secret(vault, "globex-key", tenant="globex")
    await put_secret(vault, "untagged", tenant=None)
    token = shared.make_token(
        tenant="acme", scopes="credentials:read credentials:write audit:read connections:read"
    )
    body = await gql(
        shared.http,
        REGISTER_CREDENTIAL,
        {"input": credential_input(keyVaultRef=f"{REF}registered")},
        token=token,
    )
    assert body["data"]["registerCredential"]["userErrors"] == []
    return World(token, enabled.version, disabled.version, foreign.version)


Case = tuple[Callable[[World], dict[str, Any]], list[tuple[str, str]]]
REF_FIELD = "input.keyVaultRef"
CADENCE = "input.rotationPolicy.cadenceDays"
WARNING = "input.rotationPolicy.expiryWarningDays"


def _policy(cadence: int, warning: int) -> dict[str, Any]:
    return {"rotationPolicy": {"cadenceDays": cadence, "expiryWarningDays": warning}}


CASES: dict[str, Case] = {
    "ref-blank": (lambda w: {"keyVaultRef": "  "}, [(REF_FIELD, "REQUIRED")]),
    "ref-not-an-identifier": (
        lambda w: {"keyVaultRef": "deputy-api-key"},
        [(REF_FIELD, "INVALID_SECRET_REF")],
    ),
    "ref-not-a-secret": (
        lambda w: {"keyVaultRef": "local://vault/keys/deputy"},
        [(REF_FIELD, "INVALID_SECRET_REF")],
    ),
    "ref-http": (
        lambda w: {"keyVaultRef": "http://myvault.vault.azure.net/secrets/x"},
        [(REF_FIELD, "INVALID_SECRET_REF")],
    ),
    "ref-too-long": (
        lambda w: {"keyVaultRef": REF + "a" * 2100},
        [(REF_FIELD, "TOO_LONG")],
    ),
    "vault-mismatch": (
        lambda w: {"keyVaultRef": f"https://othervault.vault.azure.net/secrets/{SECRET}"},
        [(REF_FIELD, "VAULT_MISMATCH")],
    ),
    "secret-missing": (lambda w: {"keyVaultRef": f"{REF}nope"}, [(REF_FIELD, "SECRET_NOT_FOUND")]),
    "secret-of-another-tenant": (
        lambda w: {"keyVaultRef": f"{REF}globex-key"},
        [(REF_FIELD, "SECRET_NOT_FOUND")],
    ),
    "secret-untagged": (
        lambda w: {"keyVaultRef": f"{REF}untagged"},
        [(REF_FIELD, "SECRET_NOT_FOUND")],
    ),
    "version-of-another-tenant": (
        lambda w: {"keyVaultRef": f"{REF}mixed/{w.foreign_version}"},
        [(REF_FIELD, "SECRET_NOT_FOUND")],
    ),
    "version-unknown": (
        lambda w: {"keyVaultRef": f"{LOCAL_REF}/{'0' * 32}"},
        [(REF_FIELD, "SECRET_NOT_FOUND")],
    ),
    "version-disabled": (
        lambda w: {"keyVaultRef": f"{LOCAL_REF}/{w.disabled_version}"},
        [(REF_FIELD, "SECRET_VERSION_DISABLED")],
    ),
    "no-enabled-version": (
        lambda w: {"keyVaultRef": f"{REF}all-disabled"},
        [(REF_FIELD, "SECRET_VERSION_DISABLED")],
    ),
    "version-expired": (
        lambda w: {"keyVaultRef": f"{REF}expired"},
        [(REF_FIELD, "SECRET_VERSION_DISABLED")],
    ),
    "duplicate": (
        lambda w: {"keyVaultRef": f"{REF}registered"},
        [(REF_FIELD, "DUPLICATE_CREDENTIAL")],
    ),
    "duplicate-spelled-differently": (
        lambda w: {"keyVaultRef": " local://vault/secrets/registered/ "},
        [(REF_FIELD, "DUPLICATE_CREDENTIAL")],
    ),
    "cadence-zero": (lambda w: _policy(0, 1), [(CADENCE, "OUT_OF_RANGE")]),
    "cadence-too-long": (lambda w: _policy(731, 14), [(CADENCE, "OUT_OF_RANGE")]),
    "warning-zero": (lambda w: _policy(90, 0), [(WARNING, "OUT_OF_RANGE")]),
    "warning-too-long": (lambda w: _policy(730, 366), [(WARNING, "OUT_OF_RANGE")]),
    "warning-not-shorter-than-cadence": (lambda w: _policy(30, 30), [(WARNING, "OUT_OF_RANGE")]),
    "expires-in-the-past": (
        lambda w: {"expiresAt": in_days(-1)},
        [("input.expiresAt", "IN_THE_PAST")],
    ),
    "name-too-long": (lambda w: {"name": "n" * 201}, [("input.name", "TOO_LONG")]),
    "everything-at-once": (
        lambda w: {"keyVaultRef": f"{REF}nope", "expiresAt": in_days(-1), **_policy(0, 0)},
        [
            (REF_FIELD, "SECRET_NOT_FOUND"),
            ("input.expiresAt", "IN_THE_PAST"),
            (CADENCE, "OUT_OF_RANGE"),
            (WARNING, "OUT_OF_RANGE"),
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_a_user_error_and_changes_nothing(
    shared: SharedApp, world: World, case: str
) -> None:
    overrides, expected = CASES[case]
    before = await counts(shared.services.db)

    body = await gql(
        shared.http,
        REGISTER_CREDENTIAL,
        {"input": credential_input(**overrides(world))},
        token=world.token,
    )

    assert "errors" not in body, body
    payload = body["data"]["registerCredential"]
    assert payload["credential"] is None
    assert sorted((e["field"], e["code"]) for e in payload["userErrors"]) == sorted(expected)
    assert all(e["message"] for e in payload["userErrors"])
    assert await counts(shared.services.db) == before


async def test_another_tenants_secret_is_indistinguishable_from_a_missing_one(
    shared: SharedApp, world: World
) -> None:
    http, make_token = shared.http, shared.make_token

    async def error_for(name: str) -> dict[str, Any]:
        body = await gql(
            http,
            REGISTER_CREDENTIAL,
            {"input": credential_input(keyVaultRef=f"{REF}{name}")},
            token=world.token,
        )
        [error] = body["data"]["registerCredential"]["userErrors"]
        return {k: str(v).replace(name, "NAME") for k, v in error.items()}

    missing = await error_for("nope")
    assert missing["code"] == "SECRET_NOT_FOUND"
    assert await error_for("globex-key") == missing
    assert await error_for("untagged") == missing
    # The secret is there all along: its own tenant binds it.
    body = await gql(
        http,
        REGISTER_CREDENTIAL,
        {"input": credential_input(keyVaultRef=f"{REF}globex-key")},
        token=make_token(tenant="globex"),
    )
    assert body["data"]["registerCredential"]["userErrors"] == []
