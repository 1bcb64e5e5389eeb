"""The import graph between apps follows DESIGN.md's dependency direction (docs/architecture.md).

Imports are read with ``ast`` from every module of the project's packages,
lazy imports inside functions included (they are arrows too: a lazy import
only hides a cycle). Relative imports stay inside their package.

    aladdin.lib  <-  aladdin.accounts, aladdin.cluster  <-  billing  <-  storage
        <-  aladdin.workloads  <-  workshops, gpu_jobs

(each may import anything to its left). The project package (settings,
urls, routing, asgi) and aladdin.ops (the platform's own metrics) sit above
all of it and may import anything. So does the back office: aladdin.backoffice
and every app's ``admin`` module (its pages in the back office), which act
through the apps' services and record each act in the audit log. No app
module imports an admin module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aladdin.lib import timeutil

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["aladdin", "billing", "storage", "workshops", "gpu_jobs"]

# Each layer and what it may import (besides itself and third-party code).
# aladdin.wsauth is the websockets' counterpart of aladdin.lib.api: it lives
# in the project package but imports no app, so every layer may use it.
ALLOWED = {
    "lib": set(),
    "wsauth": {"lib"},
    "accounts": {"lib", "wsauth"},
    "cluster": {"lib"},
    "billing": {"lib", "accounts", "cluster"},
    "storage": {"lib", "accounts", "cluster", "billing"},
    "workloads": {"lib", "wsauth", "accounts", "cluster", "billing", "storage"},
    "workshops": {"lib", "wsauth", "accounts", "cluster", "billing", "storage", "workloads"},
    "gpu_jobs": {"lib", "wsauth", "accounts", "cluster", "billing", "storage", "workloads"},
}
# What other apps may import from billing: its own domain (plans, grants,
# the ledger's services, reads). Helpers every app uses live in aladdin.lib.
BILLING_PUBLIC = {"billing.models", "billing.choices", "billing.selectors", "billing.services"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if "admin" in parts[1:] or parts[:2] == ["aladdin", "backoffice"]:
        return "backoffice"
    if parts[0] == "aladdin":
        if len(parts) == 1:
            return None
        if parts[1] in ("lib", "accounts", "cluster", "workloads", "wsauth"):
            return parts[1]
        return "project"  # settings, urls, routing, asgi, ops, health…
    return parts[0] if parts[0] in PACKAGES else None


def _imports(path: Path) -> set[str]:
    """Absolute modules a file imports; ``from a import b`` counts as ``a.b`` too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> list[tuple[str, str]]:
    """(importing module, imported module) for every import of a project module."""
    edges = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            edges += [(module, target) for target in sorted(_imports(path)) if _layer(target)]
    return edges


EDGES = _graph()


def _arrows(source: str, target: str) -> list[str]:
    return [f"{a} -> {b}" for a, b in EDGES if _layer(a) == source and _layer(b) == target]


def test_the_graph_was_read():
    # Guards the rules below against passing on an empty graph.
    assert "aladdin.workloads.quota" in {b for _a, b in EDGES}
    assert len(EDGES) > 100


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = [
        f"{a} -> {b}"
        for a, b in EDGES
        if _layer(a) == layer and _layer(b) not in ALLOWED[layer] | {layer}
    ]
    assert wrong == []


def test_no_app_module_imports_the_back_office():
    # The back office sits above the apps: an app that imported it would
    # close a cycle through the services the back office calls.
    assert [
        f"{a} -> {b}" for a, b in EDGES if _layer(a) in ALLOWED and _layer(b) == "backoffice"
    ] == []


def test_gpu_jobs_never_imports_workshops():
    # Siblings: what both need lives in aladdin.workloads.
    assert _arrows("gpu_jobs", "workshops") == []
    assert _arrows("workshops", "gpu_jobs") == []


def test_billing_imports_no_workload_app():
    for app in ("workloads", "storage", "workshops", "gpu_jobs"):
        assert _arrows("billing", app) == []


def test_lib_imports_no_app():
    assert [f"{a} -> {b}" for a, b in EDGES if _layer(a) == "lib" and _layer(b) != "lib"] == []
    assert _arrows("lib", "accounts") == []


def test_no_module_outside_billing_takes_a_helper_from_billing():
    borrowed = [
        f"{a} -> {b}"
        for a, b in EDGES
        if _layer(a) != "billing"
        and _layer(b) == "billing"
        and b != "billing"
        and ".".join(b.split(".")[:2]) not in BILLING_PUBLIC
        # The URL conf mounts every app's API.
        and not (a == "aladdin.urls" and b == "billing.api")
        # The metrics read every app's tables.
        and not (a.startswith("aladdin.ops.") and b == "billing.models")
        # Staff refund an order through the payment flows, as billing's admin does.
        and not (_layer(a) == "backoffice" and b.startswith("billing.payments"))
    ]
    assert borrowed == []
    assert not (REPO / "billing" / "units.py").exists()
    assert timeutil.parse_as_of.__module__ == "aladdin.lib.timeutil"
