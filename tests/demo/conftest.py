from tests.health.conftest import clock  # noqa: F401  (fixtures)
