"""kgd's import graph: no circle, nothing reaching up a layer, settings seen only at the top.

The graph is read from the source with ``ast``: every ``import`` and
``from ... import`` of a ``kgd`` module counts, at module level or inside a
function (a deferred import is still a dependency).  ``from kgd.x import y``
is an edge to ``kgd.x.y`` when that is a module, else to ``kgd.x``.

The layers, lowest first; a module may import modules of its own layer or of
a lower one, never of a higher one:

0. ``kgd`` (the version) and ``kgd.interfaces``: the seams, importing no kgd module.
1. ``kgd.logs``, ``kgd.readiness``, ``kgd.systemd``, ``kgd.metrics``
   (and ``kgd.timestamps`` once it exists): cross-cutting, so they import
   nothing above this layer, not even kernels.
2. ``kgd.kernels.*``: running kernels; knows nothing of HTTP, personalities or settings.
3. ``kgd.gateway``, ``kgd.policies``: the running parts handed to personalities,
   and the kernel policies built from plain values.
4. ``kgd.web.*``: HTTP plumbing shared by personalities.
5. ``kgd.personalities`` and ``kgd.personalities.*``: the plugins' code.
6. ``kgd.options``: the SETTINGS table and the settings type (imports no kgd module).
7. ``kgd.service``: reads the settings once and builds the service tree.
8. ``kgd.tap``: twistd's entry point.

Only ``kgd.service`` and ``kgd.tap`` may import ``kgd.options`` (and so see
``GatewaySettings``); every other part gets plain values.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.daemon import REPO_ROOT

PACKAGE_ROOT = os.path.join(REPO_ROOT, "kgd")

#: Layers, lowest first: (name, module prefixes).  A prefix ending in "." names a package's modules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interfaces", ("kgd", "kgd.interfaces")),
    ("cross-cutting", ("kgd.timestamps", "kgd.logs", "kgd.readiness", "kgd.systemd", "kgd.metrics", "kgd.limits")),
    ("kernels", ("kgd.kernels", "kgd.kernels.")),
    ("gateway", ("kgd.gateway", "kgd.policies")),
    ("web", ("kgd.web", "kgd.web.")),
    ("personalities", ("kgd.personalities", "kgd.personalities.")),
    ("options", ("kgd.options",)),
    ("service", ("kgd.service",)),
    ("tap", ("kgd.tap",)),
)

#: Modules allowed to import kgd.options and so to see the settings object.
SETTINGS_READERS = frozenset({"kgd.service", "kgd.tap"})

def module_name(path: str) -> str:
    relative = os.path.relpath(path, REPO_ROOT)[: -len(".py")]
    parts = relative.split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kgd_modules() -> dict[str, str]:
    """Every module of the kgd package, by dotted name, with its file."""
    modules = {}
    for directory, _, files in os.walk(PACKAGE_ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                modules[module_name(path)] = path
    return modules


def imported(module: str, path: str, modules: dict[str, str]) -> Iterator[str]:
    """The kgd modules ``module`` imports, anywhere in its file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield submodule if submodule in modules else source


def import_graph() -> dict[str, set[str]]:
    """kgd module -> the kgd modules it imports (itself excluded)."""
    modules = kgd_modules()
    return {module: set(imported(module, path, modules)) - {module} for module, path in modules.items()}


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix.endswith(".") and module.startswith(prefix)):
                return index
    raise LookupError(f"{module} is in no layer: add it to LAYERS and to this module's docstring")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the list of modules around it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module) :] + [module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


class ImportGraphTests(SynchronousTestCase):
    """The rules in this module's docstring hold for kgd as it is."""

    def setUp(self) -> None:
        self.graph = import_graph()

    def test_graph_is_read(self) -> None:
        """The walk finds the modules and their imports, deferred ones too (the tap imports the service in a function)."""
        self.assertIn("kgd.kernels.kernels", self.graph["kgd.service"])
        self.assertIn("kgd.service", self.graph["kgd.tap"])

    def test_no_circle(self) -> None:
        """No module imports itself through others."""
        self.assertIsNone(find_cycle(self.graph))

    def test_every_module_has_a_layer(self) -> None:
        """Each kgd module belongs to one of the layers, so a new one must be placed deliberately."""
        for module in self.graph:
            layer_of(module)

    def test_nothing_reaches_up(self) -> None:
        """No module imports one of a higher layer."""
        upward = sorted(
            f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
            for module, targets in self.graph.items()
            for target in targets
            if layer_of(target) > layer_of(module)
        )
        self.assertEqual(upward, [])

    def test_only_the_top_sees_the_settings(self) -> None:
        """Only the service and the tap import kgd.options; everything else is handed plain values."""
        readers = sorted(module for module, targets in self.graph.items() if "kgd.options" in targets)
        self.assertEqual(readers, sorted(SETTINGS_READERS))

    def test_settings_type_named_only_at_the_top(self) -> None:
        """The name GatewaySettings appears only in kgd.options, kgd.service and kgd.tap."""
        named = set()
        for module, path in kgd_modules().items():
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
                if isinstance(node, ast.alias):
                    name = node.name
                if name == "GatewaySettings":
                    named.add(module)
        self.assertLessEqual(named, SETTINGS_READERS | {"kgd.options"})
