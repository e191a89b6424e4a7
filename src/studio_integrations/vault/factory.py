"""Which ``SecretStore`` this process uses (``STUDIO_SECRET_STORE``, DESIGN §9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio_integrations.persistence.db import Database
    from studio_integrations.settings import Settings
    from studio_integrations.vault.base import SecretStore


def make_secret_store(settings: Settings, db: Database) -> SecretStore:
    """The configured store: the embedded ``local://vault`` or Azure Key Vault.

    ``azure`` needs ``STUDIO_KEYVAULT_URL`` and authenticates with ``DefaultAzureCredential``
    (see ``vault.azure``); it never touches ``db``. The stores are imported here, not at module
    level, so a local-only deployment never loads the Azure SDK.
    """
    if settings.secret_store == "azure":
        from studio_integrations.vault.azure import AzureKeyVaultStore

        return AzureKeyVaultStore.from_settings(settings)
    from studio_integrations.vault.local import LocalSecretStore

    return LocalSecretStore(db, settings.resolved_master_key)
