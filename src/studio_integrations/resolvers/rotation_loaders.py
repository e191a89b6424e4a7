"""DataLoaders of the rotation types: a credential's newest rotations and a rotation's
verification runs, one statement per batch.

They live beside the request's ``Loaders`` (keyed by it, so they share its lifetime: one HTTP
request, or one subscription event) rather than inside it, so this area adds loaders without
editing the shared class.
"""

from __future__ import annotations

from collections import defaultdict
from weakref import WeakKeyDictionary

from strawberry.dataloader import DataLoader

from studio_integrations.persistence.db import Database, TenantScope
from studio_integrations.persistence.models import CredentialRotation, IntegrationRun
from studio_integrations.persistence.rotations import RotationRepository
from studio_integrations.resolvers.loaders import Loaders, SessionOpener

# (credential id, how many of its newest rotations)
RotationsKey = tuple[str, int]


class RotationLoaders:
    def __init__(self, read: SessionOpener) -> None:
        self._read = read
        self.rotations_by_credential: DataLoader[RotationsKey, list[CredentialRotation]] = (
            DataLoader(load_fn=self._rotations)
        )
        self.runs_by_rotation: DataLoader[str, list[IntegrationRun]] = DataLoader(
            load_fn=self._runs
        )

    async def _rotations(self, keys: list[RotationsKey]) -> list[list[CredentialRotation]]:
        by_limit: dict[int, list[str]] = defaultdict(list)
        for credential_id, limit in keys:
            by_limit[limit].append(credential_id)
        found: dict[RotationsKey, list[CredentialRotation]] = {}
        async with self._read() as session:
            for limit, ids in by_limit.items():
                rows = await RotationRepository(session).for_credentials(ids, limit)
                for credential_id in ids:
                    found[(credential_id, limit)] = rows.get(credential_id, [])
        return [found[k] for k in keys]

    async def _runs(self, rotation_ids: list[str]) -> list[list[IntegrationRun]]:
        async with self._read() as session:
            found = await RotationRepository(session).runs_for(rotation_ids)
        return [found.get(i, []) for i in rotation_ids]


_BY_REQUEST: WeakKeyDictionary[Loaders, RotationLoaders] = WeakKeyDictionary()


def rotation_loaders(loaders: Loaders, db: Database, scope: TenantScope) -> RotationLoaders:
    """The rotation loaders of the request whose ``Loaders`` these are."""
    found = _BY_REQUEST.get(loaders)
    if found is None:
        found = _BY_REQUEST[loaders] = RotationLoaders(loaders.read)
    return found
