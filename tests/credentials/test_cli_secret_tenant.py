"""`studio-integrations secret set NAME --tenant T`: the tag that lets tenant T bind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio_integrations.core.errors import UserInputError
from studio_integrations.domain.credentials import TENANT_TAG, pin_version
from studio_integrations.persistence.db import Database
from studio_integrations.settings import Settings
from studio_integrations.vault.base import parse_secret_ref
from studio_integrations.vault.local import LocalSecretStore
from tests.test_cli import cli


async def test_secret_set_with_tenant_tags_the_version_for_that_tenant(tmp_path: Path) -> None:
    env = {
        "STUDIO_STATE_DIR": str(tmp_path / "state"),
        "STUDIO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
    }
    assert cli("migrate", env=env).returncode == 0
    tagged = cli("secret", "set", "deputy-api-key", "--tenant", "acme", env=env, stdin="v1\n")
    assert tagged.returncode == 0, tagged.stderr
    lines = dict(line.split(": ", 1) for line in tagged.stdout.strip().splitlines())
    untagged = cli("secret", "set", "plain-key", env=env, stdin="v2")
    assert untagged.returncode == 0, untagged.stderr

    settings = Settings(state_dir=tmp_path / "state", database_url=env["STUDIO_DATABASE_URL"])
    db = Database(settings.database_url)
    try:
        store = LocalSecretStore(db, settings.resolved_master_key)
        [version] = await store.list_versions("deputy-api-key")
        assert version.version == lines["version"]
        assert version.tags == {TENANT_TAG: "acme"}
        [plain] = await store.list_versions("plain-key")
        assert plain.tags == {}

        ref = parse_secret_ref(lines["reference"])
        pinned = await pin_version(store, ref, tenant_id="acme", field="input.keyVaultRef")
        assert pinned.version == lines["version"]
        for tenant, name in (("globex", "deputy-api-key"), ("acme", "plain-key")):
            with pytest.raises(UserInputError) as refused:
                await pin_version(
                    store,
                    parse_secret_ref(f"local://vault/secrets/{name}"),
                    tenant_id=tenant,
                    field="input.keyVaultRef",
                )
            assert refused.value.code == "SECRET_NOT_FOUND"
    finally:
        await db.dispose()
