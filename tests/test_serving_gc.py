"""The serving process's garbage-collector settings (``create_app(freeze_gc=True)``, which
``serve`` uses): start-up's objects frozen, the young generation's threshold raised while
serving, both undone at shutdown."""

from __future__ import annotations

import gc

from studio_integrations.app import GC_YOUNG_THRESHOLD, create_app
from studio_integrations.settings import Settings


async def test_serving_freezes_start_up_and_raises_the_young_threshold(
    settings: Settings,
) -> None:
    before = gc.get_threshold()
    assert before[0] < GC_YOUNG_THRESHOLD
    app = create_app(settings, freeze_gc=True)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_an_app_built_without_it_leaves_the_collector_alone(settings: Settings) -> None:
    before = gc.get_threshold()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
