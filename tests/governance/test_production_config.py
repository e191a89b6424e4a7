"""Production never runs on made-up keys: no dev tokens, no state-dir master key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from studio_integrations.auth.tokens import make_verifier
from studio_integrations.cli import main
from studio_integrations.settings import Settings
from tests.conftest import TokenFactory, make_settings
from tests.governance.conftest import ServerFactory, client
from tests.support.backends import Backend
from tests.support.graphql import error_codes, gql

REQUIRED = {
    "jwt_jwks_url": "STUDIO_JWT_JWKS_URL",
    "jwt_issuer": "STUDIO_JWT_ISSUER",
    "jwt_audience": "STUDIO_JWT_AUDIENCE",
    "master_key": "STUDIO_MASTER_KEY",
}
COMPLETE = {
    "jwt_jwks_url": "https://login.example/keys",
    "jwt_issuer": "https://login.example/",
    "jwt_audience": "api://studio",
    "master_key": "m" * 43,
}


@pytest.mark.parametrize("missing", [*REQUIRED, "all"])
def test_production_refuses_to_start_without_each_setting(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in REQUIRED.values():
        monkeypatch.delenv(key, raising=False)
    absent = list(REQUIRED) if missing == "all" else [missing]
    values = {k: v for k, v in COMPLETE.items() if k not in absent}
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production", state_dir=tmp_path, **values)  # type: ignore[arg-type]
    message = str(raised.value)
    for field, env in REQUIRED.items():
        assert (env in message) is (field in absent), message
    assert not (tmp_path / "master.key").exists()
    assert not (tmp_path / "dev-signing-key").exists()


def test_production_with_azure_needs_no_master_key(tmp_path: Path) -> None:
    values = {k: v for k, v in COMPLETE.items() if k != "master_key"}
    settings = Settings(
        environment="production",
        secret_store="azure",
        keyvault_url="https://acme.vault.azure.net",
        state_dir=tmp_path,
        **values,  # type: ignore[arg-type]
    )
    assert settings.missing_for_production() == []
    with pytest.raises(RuntimeError):
        _ = settings.resolved_dev_signing_key


def test_the_cli_names_the_missing_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for key in [*REQUIRED.values(), "STUDIO_SECRET_STORE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("STUDIO_ENVIRONMENT", "production")
    monkeypatch.setenv("STUDIO_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("STUDIO_JWT_ISSUER", "https://login.example/")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "STUDIO_JWT_JWKS_URL" in err and "STUDIO_JWT_AUDIENCE" in err
    assert "STUDIO_MASTER_KEY" in err and "STUDIO_JWT_ISSUER" not in err


@pytest.mark.backends
async def test_production_accepts_identity_provider_tokens_only(
    production_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A dev token signed with the very key the dev verifier would use is refused."""
    async with production_server() as prod, client(prod.live) as http:
        dev = await http.post(
            "/graphql",
            json={"query": "{ viewer { subject } }"},
            headers={"Authorization": f"Bearer {make_token()}"},
        )
        assert dev.status_code == 401
        assert error_codes(dev.json()) == ["UNAUTHENTICATED"]
        body = await gql(http, "{ viewer { subject tenantId } }", token=prod.token())
        assert body["data"] == {"viewer": {"subject": "alice", "tenantId": "acme"}}


def test_compose_runs_production_shaped() -> None:
    compose = yaml.safe_load(Path("docker-compose.yml").read_text())
    env = compose["services"]["api"]["environment"]
    assert env["STUDIO_ENVIRONMENT"] == "production"
    for name in ("STUDIO_JWT_JWKS_URL", "STUDIO_JWT_ISSUER", "STUDIO_JWT_AUDIENCE"):
        # ${NAME:?message}: compose itself refuses to start without it.
        assert env[name].startswith("${" + name + ":?"), env[name]
    assert compose["services"]["migrate"]["environment"] == env


@pytest.mark.backends
async def test_production_without_idp_settings_does_not_start(
    backend: Backend, tmp_path: Path
) -> None:
    """Before, this server started and accepted HS256 dev tokens signed with a key made up in
    its state directory (one per replica, lost with it)."""
    with pytest.raises(ValidationError, match="STUDIO_JWT_JWKS_URL"):
        make_settings(backend, tmp_path, environment="production")
    settings = make_settings(backend, tmp_path)
    with pytest.raises(ValueError, match="JWKS"):  # a production verifier is never a dev one
        make_verifier(settings.model_copy(update={"environment": "production"}))
