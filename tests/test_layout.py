"""The layers' arrows (DESIGN §2), read from the source: every ``import`` of the package,
module level or inside a function, is checked against what its layer may import."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import studio_integrations

PACKAGE = Path(studio_integrations.__file__).parent

# layer -> the internal layers it may import (its own is always allowed). Layers not named
# here (app, services, cli, schema, resolvers, rest, workers, ...) are checked by NEVER only.
ONLY: dict[str, set[str]] = {
    "core": set(),
    "persistence": {"core"},
    "auth": {"core"},
    "events": {"core", "persistence"},
    "outbound": {"core", "vault", "telemetry"},
    "telemetry": {"core"},
}
NEVER: dict[str, set[str]] = {
    "domain": {"schema", "resolvers", "subscriptions", "workers", "rest", "app", "services"},
    "subscriptions": {"workers"},
    "resolvers": {"workers"},
    "schema": {"workers"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "studio_integrations" or len(parts) < 2:
        return None
    return parts[1]


def imports() -> dict[tuple[str, str], set[str]]:
    """(importing layer, imported layer) -> the files where it happens."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                target = layer_of(name)
                if target is not None and target != layer:
                    found[(layer, target)].add(str(relative))
    return found


def test_layers_import_only_what_they_may() -> None:
    wrong = []
    for (layer, target), files in sorted(imports().items()):
        if layer in ONLY and target not in ONLY[layer]:
            wrong.append(f"{layer} -> {target}: {sorted(files)}")
        if target in NEVER.get(layer, ()):
            wrong.append(f"{layer} -> {target}: {sorted(files)}")
    assert wrong == []


def test_the_scan_sees_imports_in_functions_too() -> None:
    """A check that cannot fail proves nothing: the scan must see the CLI's lazy imports."""
    found = imports()
    assert "cli.py" in found[("cli", "seed")]
    assert "app.py" in found[("app", "schema")]
