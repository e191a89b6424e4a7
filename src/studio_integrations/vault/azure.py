"""Azure Key Vault as the secret store (``STUDIO_SECRET_STORE=azure``).

Built on ``azure.keyvault.secrets.aio.SecretClient`` with an ``azure-identity`` async
credential. ``from_settings`` uses ``DefaultAzureCredential``, so the process authenticates the
way any Azure workload does: a managed identity or workload identity in Azure, the
``AZURE_TENANT_ID`` / ``AZURE_CLIENT_ID`` / ``AZURE_CLIENT_SECRET`` service principal of
``EnvironmentCredential``, or a developer's ``az login``. Set ``AZURE_TOKEN_CREDENTIALS`` (for
example ``EnvironmentCredential`` or ``prod``) to pin which of those it tries.

The SDK's errors become the project's own; see ``_translate`` for the table. No message this
module builds contains a secret value, and a translated error is raised with no chained SDK
exception: the SDK's error holds the HTTP request, whose body on ``set_secret`` *is* the value.

Transient failures (429, 408, 5xx, connection errors) are first retried by the SDK's retry
policy (``retry_total``, ``retry_backoff_factor``, … can be passed as client options) and only
then reported as ``VaultUnavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretProperties as AzureSecretProperties
from azure.keyvault.secrets.aio import SecretClient

from studio_integrations.core.errors import StudioError, UserInputError
from studio_integrations.vault.base import (
    SECRET_NAME,
    SECRET_VERSION,
    SecretNotFound,
    SecretProperties,
    SecretValue,
    VaultAccessDenied,
    VaultUnavailable,
    check_new_secret,
)

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from studio_integrations.settings import Settings

T = TypeVar("T")

# Key Vault answers 403 for a get on a version it will not hand out, with these inner codes
# ("Operation get is not allowed on a disabled secret."). To the caller that version does not
# exist, as in the local store.
_UNUSABLE = {"SecretDisabled": "is disabled", "SecretExpired": "has expired"}
_MAX_DETAIL = 300


class VaultMisconfigured(StudioError):
    """The Key Vault settings cannot work (no URL, not HTTPS, …)."""

    code = "VAULT_MISCONFIGURED"


def normalize_vault_url(raw: str | None) -> str:
    """``https://<vault>``: no path, no trailing slash, host in lower case (as ``parse_secret_ref``
    spells a reference's vault, so references and the store compare equal)."""
    parts = urlsplit((raw or "").strip())
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
        raise VaultMisconfigured(
            "STUDIO_KEYVAULT_URL must be the vault's HTTPS URL, e.g. https://myvault.vault.azure.net"
        )
    return f"https://{parts.netloc.lower()}"


def _aware(moment: datetime | None) -> datetime | None:
    """Key Vault keeps UTC seconds; a naive datetime is taken as UTC (the SDK's reading too)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _properties(props: AzureSecretProperties) -> SecretProperties:
    created = props.created_on or props.updated_on
    updated = props.updated_on or props.created_on
    if not props.name or not props.version or created is None or updated is None:
        raise StudioError(
            f"Key Vault answered with an incomplete secret identifier or attributes ({props.id})",
            code="VAULT_ERROR",
        )
    return SecretProperties(
        name=props.name,
        version=props.version,
        enabled=props.enabled is not False,
        created_at=created,
        updated_at=updated,
        expires_at=props.expires_on,
        not_before=props.not_before,
        content_type=props.content_type,
        tags=dict(props.tags or {}),
    )


def _identifies(name: str, version: str | None) -> bool:
    """Whether name (and version) can name a Key Vault secret at all; others cannot exist."""
    return bool(SECRET_NAME.match(name)) and (
        version is None or bool(SECRET_VERSION.match(version))
    )


def _detail(exc: AzureError) -> str:
    """The service's error code and message (Key Vault never echoes a value in them)."""
    if isinstance(exc, HttpResponseError) and exc.error is not None:
        code, message = exc.error.code, exc.error.message
    else:
        code, message = None, exc.message
    text = " ".join(str(message or "").split())
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return f"{code}: {text}" if code and text else (code or text or type(exc).__name__)


def _inner_code(exc: HttpResponseError) -> str | None:
    inner = exc.error.innererror if exc.error is not None else None
    code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) else None


class AzureKeyVaultStore:
    """``SecretStore`` on Azure Key Vault.

    ``credential`` defaults to ``DefaultAzureCredential()``; a credential created here is closed
    by ``close()``, an injected one belongs to the caller. ``client_kwargs`` go to
    ``SecretClient`` (``api_version``, ``verify_challenge_resource``, ``connection_verify``,
    ``retry_total``, ``transport``, …).
    """

    def __init__(
        self,
        vault_url: str,
        credential: AsyncTokenCredential | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.vault_url = normalize_vault_url(vault_url)
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
            self._owned_credential: AsyncTokenCredential | None = credential
        else:
            self._owned_credential = None
        self._client = SecretClient(self.vault_url, credential, **client_kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, **client_kwargs: Any) -> AzureKeyVaultStore:
        if not settings.keyvault_url:
            raise VaultMisconfigured(
                "STUDIO_SECRET_STORE=azure needs STUDIO_KEYVAULT_URL (https://<vault>.vault.azure.net)"
            )
        return cls(settings.keyvault_url, **client_kwargs)

    def __repr__(self) -> str:
        return f"AzureKeyVaultStore({self.vault_url!r})"

    async def __aenter__(self) -> AzureKeyVaultStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- error translation ------------------------------------------------------------------

    def _translate(self, exc: AzureError, action: str, target: str) -> StudioError:
        """SDK error -> project error.

        ===============================================  ==================
        ResourceNotFoundError (404)                      SecretNotFound
        403 with inner code SecretDisabled/SecretExpired SecretNotFound
        ClientAuthenticationError (401, token failure)   VaultAccessDenied
        other 401 / 403                                  VaultAccessDenied
        408, 429, 5xx                                    VaultUnavailable
        ServiceRequestError / ServiceResponseError       VaultUnavailable
        400                                              UserInputError
        anything else                                    StudioError VAULT_ERROR
        ===============================================  ==================
        """
        where = f"Key Vault {self.vault_url}"
        if isinstance(exc, ResourceNotFoundError):
            return SecretNotFound(f"secret {target} not found in {where}")
        if isinstance(exc, ClientAuthenticationError):
            # A 401 that survived the challenge flow, or no token at all from the credential.
            return VaultAccessDenied(
                f"could not authenticate to {where} ({action} {target}); check the Azure"
                f" credential: {_detail(exc)}"
            )
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            status = exc.status_code
            if status == 403:
                unusable = _UNUSABLE.get(_inner_code(exc) or "")
                message = (exc.error.message if exc.error is not None else None) or ""
                if unusable is None and "disabled secret" in message.lower():
                    unusable = _UNUSABLE["SecretDisabled"]
                if unusable is not None:
                    return SecretNotFound(f"secret {target} {unusable} in {where}")
                return VaultAccessDenied(
                    f"{where} denied {action} {target} (HTTP 403): {_detail(exc)}"
                )
            if status == 401:
                return VaultAccessDenied(f"{where} refused {action} {target} (HTTP 401)")
            if status in (408, 429) or status >= 500:
                kind = "is throttling requests" if status == 429 else "is unavailable"
                return VaultUnavailable(
                    f"{where} {kind} ({action} {target}, HTTP {status} after retries): "
                    f"{_detail(exc)}"
                )
            if status == 400:
                return UserInputError(
                    f"{where} rejected {action} {target}: {_detail(exc)}",
                    field="name",
                    code="VAULT_BAD_REQUEST",
                )
            return StudioError(
                f"{where} failed {action} {target} (HTTP {status}): {_detail(exc)}",
                code="VAULT_ERROR",
            )
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return VaultUnavailable(
                f"{where} cannot be reached ({action} {target}): {_detail(exc)}"
            )
        return StudioError(f"{where} failed {action} {target}: {_detail(exc)}", code="VAULT_ERROR")

    async def _call(self, awaitable: Awaitable[T], action: str, target: str) -> T:
        try:
            return await awaitable
        except AzureError as exc:
            error = self._translate(exc, action, target)
        # Raised outside the except block, so neither __cause__ nor __context__ keeps the SDK
        # error (and with it the request that carried the value) alive.
        raise error

    # -- SecretStore ------------------------------------------------------------------------

    async def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        target = f"{name}/{version}" if version else name
        if not _identifies(name, version):
            raise SecretNotFound(f"secret {target} not found: not a Key Vault secret identifier")
        secret = await self._call(self._client.get_secret(name, version), "reading", target)
        if secret.value is None:
            raise StudioError(f"Key Vault returned no value for {target}", code="VAULT_ERROR")
        return SecretValue(properties=_properties(secret.properties), value=secret.value)

    async def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        expires_at: datetime | None = None,
        tags: dict[str, str] | None = None,
    ) -> SecretProperties:
        check_new_secret(name, value)
        secret = await self._call(
            self._client.set_secret(
                name, value, content_type=content_type, expires_on=_aware(expires_at), tags=tags
            ),
            "writing",
            name,
        )
        return _properties(secret.properties)

    async def list_versions(self, name: str) -> list[SecretProperties]:
        """Every version, oldest first (Key Vault lists them unordered, dated to the second)."""
        if not SECRET_NAME.match(name):
            return []

        async def collect() -> list[AzureSecretProperties]:
            return [p async for p in self._client.list_properties_of_secret_versions(name)]

        found = await self._call(collect(), "listing versions of", name)
        versions = [_properties(p) for p in found]
        return sorted(versions, key=lambda p: (p.created_at, p.version))

    async def update_properties(
        self,
        name: str,
        version: str,
        *,
        enabled: bool | None = None,
        expires_at: datetime | None = None,
    ) -> SecretProperties:
        target = f"{name}/{version}"
        if not _identifies(name, version):
            raise SecretNotFound(f"secret {target} not found: not a Key Vault secret identifier")
        props = await self._call(
            self._client.update_secret_properties(
                name, version, enabled=enabled, expires_on=_aware(expires_at)
            ),
            "updating",
            target,
        )
        return _properties(props)

    async def close(self) -> None:
        try:
            await self._client.close()
        finally:
            if self._owned_credential is not None:
                await self._owned_credential.close()
