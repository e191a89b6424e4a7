"""The demo's sandbox provider, served in-app at ``/sandbox/<scenario>/…`` when
``STUDIO_DEMO_SANDBOX`` is on (``make run``), so the demo connections have something to call
without the internet. Scenarios (``seed.demo.SANDBOX_SCENARIOS``) decide the answers:
healthy, flaky (every third call rate limited) or failing (503). Like a real API it wants an
``Authorization`` header (401 without one) and answers with an ``X-Request-Id``; it never
sees a real secret, only the demo's random ones.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from studio_integrations.seed.demo import SANDBOX_PATH, SANDBOX_SCENARIOS, SandboxScenario

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class SandboxProvider:
    def __init__(self, scenarios: dict[str, SandboxScenario] | None = None) -> None:
        self._scenarios = SANDBOX_SCENARIOS if scenarios is None else scenarios
        self._calls: Counter[str] = Counter()

    async def answer(self, request: Request) -> Response:
        scenario = self._scenarios.get(request.path_params["scenario"])
        if scenario is None:
            return JSONResponse({"error": "no such sandbox scenario"}, status_code=404)
        if not request.headers.get("authorization"):
            return JSONResponse({"error": "missing credentials"}, status_code=401)
        self._calls[scenario.name] += 1
        number = self._calls[scenario.name]
        # Demo latency, not security: the standard generator is right here.
        await asyncio.sleep(random.uniform(*scenario.latency_ms) / 1000)  # noqa: S311
        headers = {"X-Request-Id": f"sandbox-{scenario.name}-{number}"}
        if scenario.fail_every and (number - 1) % scenario.fail_every == 0:
            if scenario.failure_status == 429:
                headers["Retry-After"] = "1"
            return JSONResponse(
                {"error": f"sandbox scenario '{scenario.name}' fails this call"},
                status_code=scenario.failure_status,
                headers=headers,
            )
        path = request.path_params["path"]
        return JSONResponse(
            {"ok": True, "sandbox": scenario.name, "path": f"/{path}"}, headers=headers
        )


def sandbox_routes() -> list[BaseRoute]:
    return [
        Route(
            f"{SANDBOX_PATH}/{{scenario}}/{{path:path}}", SandboxProvider().answer, methods=_METHODS
        )
    ]
