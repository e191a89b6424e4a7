"""GraphQL enums: the domain enums, registered with Strawberry under their own names.

``strawberry.enum`` marks the class in place, so schema types annotate fields with the
domain enums directly; importing this module is what registers them.
"""

from __future__ import annotations

import strawberry

from studio_integrations.core import enums

for _enum in (
    enums.ActorKind,
    enums.ProviderCategory,
    enums.ProviderStatus,
    enums.ApiClientStatus,
    enums.AuthMode,
    enums.RotationStrategy,
    enums.ConnectionStatus,
    enums.RunKind,
    enums.RunStatus,
    enums.RotationStatus,
    enums.EscalationStatus,
    enums.HealthStatus,
    enums.CircuitState,
    enums.FailureCategory,
    enums.DeliveryDirection,
    enums.DeliveryStatus,
    enums.SignatureStatus,
):
    strawberry.enum(_enum)
