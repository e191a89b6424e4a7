"""The tenant guard in the session: every read and write is confined to the caller's tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update

from studio_integrations.core.enums import ActorKind, AuthMode, RotationStrategy
from studio_integrations.core.errors import TenantWriteViolation, UnscopedQueryError
from studio_integrations.persistence.db import TenantScope, _tenant_criteria
from studio_integrations.persistence.models import AuditEvent, Credential, Provider
from studio_integrations.persistence.repository import PageRequest, TenantRepository
from studio_integrations.services import Services

ACME, GLOBEX = TenantScope.of("acme"), TenantScope.of("globex")


def _credential(name: str) -> Credential:
    return Credential(
        key_vault_ref=f"local://vault/secrets/{name}",
        auth_mode=AuthMode.API_KEY,
        current_version="v1",
        rotation_strategy=RotationStrategy.EXTERNAL,
    )


def _provider(key: str, tenant_id: str | None) -> Provider:
    return Provider(
        key=key,
        name=key.title(),
        category="HR",
        base_url="https://example.com",
        tenant_id=tenant_id,
    )


async def _seed(services: Services) -> tuple[str, str, str]:
    db = services.db
    async with db.transaction(ACME) as s:
        acme = _credential("acme-key")
        s.add(acme)
    async with db.transaction(GLOBEX) as s:
        globex = _credential("globex-key")
        s.add(globex)
    async with db.transaction(TenantScope.system_scope()) as s:
        shared = _provider("deputy", None)
        s.add(shared)
    return acme.id, globex.id, shared.id


async def test_reads_see_only_the_callers_tenant(services: Services) -> None:
    acme_id, globex_id, _ = await _seed(services)
    async with services.db.session(ACME) as s:
        rows = (await s.execute(select(Credential))).scalars().all()
        assert [r.id for r in rows] == [acme_id]
        assert await s.get(Credential, globex_id) is None
        assert (await s.execute(select(func.count()).select_from(Credential))).scalar_one() == 1
        repo = TenantRepository(s, Credential)
        assert await repo.get(globex_id) is None
        assert [c.id if c else None for c in await repo.get_many([globex_id, acme_id])] == [
            None,
            acme_id,
        ]
        page = await repo.page(repo.select(), PageRequest(first=10))
        assert [c.id for c in page.items] == [acme_id]


async def test_new_rows_take_the_session_tenant(services: Services) -> None:
    async with services.db.transaction(GLOBEX) as s:
        cred = _credential("auto")
        s.add(cred)
    assert cred.tenant_id == "globex"


async def test_global_rows_are_readable_by_every_tenant_and_writable_by_none(
    services: Services,
) -> None:
    _, _, shared_id = await _seed(services)
    async with services.db.transaction(ACME) as s:
        s.add(_provider("acme-own", "acme"))
    for scope in (ACME, GLOBEX):
        async with services.db.session(scope) as s:
            keys = set((await s.execute(select(Provider.key))).scalars())
        assert "deputy" in keys
        assert ("acme-own" in keys) == (scope == ACME)

    with pytest.raises(TenantWriteViolation):
        async with services.db.transaction(ACME) as s:
            shared = await s.get(Provider, shared_id)
            assert shared is not None
            shared.name = "Hijacked"
    with pytest.raises(TenantWriteViolation):
        async with services.db.transaction(ACME) as s:
            s.add(_provider("pretend-global", None))
    # Bulk UPDATE/DELETE statements are confined too: they cannot reach the global row.
    async with services.db.transaction(ACME) as s:
        result = await s.execute(
            update(Provider).where(Provider.id == shared_id).values(name="Hijacked")
        )
        assert result.rowcount == 0
        result = await s.execute(delete(Provider).where(Provider.id == shared_id))
        assert result.rowcount == 0
    async with services.db.session(TenantScope.system_scope()) as s:
        shared = await s.get(Provider, shared_id)
        assert shared is not None and shared.name == "Deputy"


async def test_another_tenants_rows_cannot_be_written(services: Services) -> None:
    _, globex_id, _ = await _seed(services)
    with pytest.raises(TenantWriteViolation):
        async with services.db.transaction(ACME) as s:
            s.add(_sneaky())
    async with services.db.transaction(ACME) as s:
        result = await s.execute(
            update(Credential).where(Credential.id == globex_id).values(current_version="owned")
        )
        assert result.rowcount == 0
    async with services.db.session(GLOBEX) as s:
        row = await s.get(Credential, globex_id)
        assert row is not None and row.current_version == "v1"


def _sneaky() -> Credential:
    cred = _credential("sneaky")
    cred.tenant_id = "globex"
    return cred


async def test_a_session_bound_to_no_tenant_cannot_touch_tenant_data(services: Services) -> None:
    async with services.db.session(None) as s:
        with pytest.raises(UnscopedQueryError):
            await s.execute(select(Credential))
        with pytest.raises(UnscopedQueryError):
            await s.execute(
                select(AuditEvent).join(Credential, Credential.id == AuditEvent.subject_id)
            )
    with pytest.raises(UnscopedQueryError):
        async with services.db.transaction(None) as s:
            s.add(_credential("orphan"))


async def test_joins_and_aliases_are_filtered(services: Services) -> None:
    from sqlalchemy.orm import aliased

    acme_id, globex_id, _ = await _seed(services)
    other = aliased(Credential)
    async with services.db.session(ACME) as s:
        pairs = (
            await s.execute(select(Credential.id, other.id).join(other, other.id != Credential.id))
        ).all()
        assert pairs == []  # the only visible credential has no visible partner
        ids = set((await s.execute(select(other.id))).scalars())
        assert ids == {acme_id}
    assert globex_id not in ids


async def test_criteria_made_once_per_tenant_keep_each_tenant_to_its_rows(
    services: Services,
) -> None:
    """The tenant criteria are made once per tenant and reused by every statement; the
    same statement objects, run for one tenant then another and back, in entity and column
    form, still see only the running tenant's rows (and the shared catalog's global rows)."""
    acme_id, globex_id, shared_id = await _seed(services)
    async with services.db.transaction(ACME) as s:
        s.add(own := _provider("acme-only", "acme"))
    statements = (
        select(Credential),
        select(Credential.id, Credential.tenant_id),
        select(Provider.id).order_by(Provider.key),
    )
    expected = {
        "acme": ([acme_id], [(acme_id, "acme")], [own.id, shared_id]),
        "globex": ([globex_id], [(globex_id, "globex")], [shared_id]),
    }
    for scope in (ACME, GLOBEX, ACME, GLOBEX, ACME):
        async with services.db.read_session(scope) as s:
            entities = [c.id for c in (await s.execute(statements[0])).scalars()]
            columns = [tuple(row) for row in await s.execute(statements[1])]
            providers = list((await s.execute(statements[2])).scalars())
        assert scope.tenant_id is not None
        assert (entities, columns, providers) == expected[scope.tenant_id]
    assert _tenant_criteria("acme", readable_shared=True) is _tenant_criteria(
        "acme", readable_shared=True
    )


async def test_system_scope_sees_everything(services: Services) -> None:
    await _seed(services)
    async with services.db.session(TenantScope.system_scope()) as s:
        tenants = set((await s.execute(select(Credential.tenant_id))).scalars())
    assert tenants == {"acme", "globex"}


def test_actor_kind_values_are_stable() -> None:
    # Stored as text: renaming a member would orphan stored rows.
    assert [k.value for k in ActorKind] == ["USER", "SERVICE", "SYSTEM"]
