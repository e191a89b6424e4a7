"""`secret set` without `--tenant` says that no tenant can use the secret (it used to succeed
silently, and registerCredential then answered SECRET_NOT_FOUND for it)."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import cli


def test_secret_set_without_tenant_says_the_secret_is_unusable(tmp_path: Path) -> None:
    env = {
        "STUDIO_STATE_DIR": str(tmp_path / "state"),
        "STUDIO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
    }
    assert cli("migrate", env=env).returncode == 0
    untagged = cli("secret", "set", "plain-key", env=env, stdin="v2")
    assert untagged.returncode == 0, untagged.stderr
    printed = dict(line.split(": ", 1) for line in untagged.stdout.strip().splitlines())
    assert printed["tenant"] == "none"
    assert "plain-key is not tagged with a tenant, so no tenant can use it" in untagged.stderr
    assert "SECRET_NOT_FOUND" in untagged.stderr and "--tenant" in untagged.stderr

    tagged = cli("secret", "set", "deputy-key", "--tenant", "acme", env=env, stdin="v1")
    assert tagged.returncode == 0, tagged.stderr
    assert (
        dict(line.split(": ", 1) for line in tagged.stdout.strip().splitlines())["tenant"] == "acme"
    )
    assert "warning" not in tagged.stderr
    assert "v1" not in tagged.stdout + tagged.stderr and "v2" not in untagged.stdout
