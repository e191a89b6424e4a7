"""``userErrors``: domain validation failures returned in a mutation's payload."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Why a mutation changed nothing: which input, which rule.")
class UserError:
    field: str | None = strawberry.field(
        description="The input field at fault, e.g. `input.version`."
    )
    code: str = strawberry.field(description="Machine-readable, e.g. `INVALID_SEMVER`.")
    message: str
