"""Provider-registry fixtures: the loaded catalogue, row counts, valid inputs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from studio_integrations.persistence.db import Database
from studio_integrations.persistence.models import (
    AuditEvent,
    ExternalApiClient,
    OutboxMessage,
    Provider,
)
from studio_integrations.seed.catalogue import CatalogueLoad, load_catalogue
from studio_integrations.services import Services
from tests.support.rows import row_counts

PROVIDER_FIELDS = """
  id key name category description capabilities authModes status global baseUrl
  verification { method path expectStatus }
  configurationSchema authScheme latencyThresholdMs documentationUrl readyToUse
  viewerCan { registerApiClient }
  apiClients { id assembly version capabilities status global readyToUse }
"""

REGISTER_PROVIDER = f"""
mutation ($input: RegisterProviderInput!) {{
  registerProvider(input: $input) {{
    provider {{ {PROVIDER_FIELDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

REGISTER_API_CLIENT = """
mutation ($input: RegisterApiClientInput!) {
  registerApiClient(input: $input) {
    apiClient { id assembly version capabilities status global readyToUse provider { id key } }
    userErrors { field code message }
  }
}
"""

PROVIDERS = f"""
query ($filter: ProviderFilter, $first: Int! = 100, $after: String) {{
  providers(filter: $filter, first: $first, after: $after) {{
    nodes {{ {PROVIDER_FIELDS} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

API_CLIENTS = """
query ($filter: ApiClientFilter, $first: Int! = 100, $after: String) {
  apiClients(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id assembly version status provider { key } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""

CAPABILITY_MATRIX = """
query ($ids: [ID!]) {
  capabilityMatrix(providerIds: $ids) {
    capabilities
    rows {
      label
      provider { id key global readyToUse apiClients { version } }
      apiClient { id version provider { key } }
      cells { capability supported }
    }
  }
}
"""

CATALOGUE_KEYS = {"deputy", "braze", "bill", "twilio", "vonage", "sinch", "messagebird"}

_VALID_PROVIDER: dict[str, Any] = {
    "key": "acme-hr",
    "name": "Acme HR",
    "category": "HR",
    "description": "The in-house HR system.",
    "capabilities": ["employees.read", "employees.write", "timesheets.read"],
    "authModes": ["BEARER_TOKEN", "API_KEY"],
    "baseUrl": "https://{tenantHost}/api",
    "verification": {"method": "GET", "path": "/v2/me", "expectStatus": 200},
    "configurationSchema": {
        "type": "object",
        "properties": {"tenantHost": {"type": "string", "minLength": 3}},
        "required": ["tenantHost"],
        "additionalProperties": False,
    },
    "latencyThresholdMs": 800,
    "documentationUrl": "https://docs.acme.example/hr",
}


def provider_input(**overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_VALID_PROVIDER)
    doc.update(overrides)
    return doc


@dataclass(frozen=True)
class Counts:
    providers: int
    clients: int
    audit_events: int
    outbox: int


async def counts(db: Database) -> Counts:
    """Every row of the registry and its events, across tenants."""
    return Counts(
        **await row_counts(
            db,
            providers=Provider,
            clients=ExternalApiClient,
            audit_events=AuditEvent,
            outbox=OutboxMessage,
        )
    )


@pytest.fixture
async def catalogue(services: Services) -> CatalogueLoad:
    """The shipped catalogue, loaded the way ``migrate`` loads it."""
    return await load_catalogue(services.db)
