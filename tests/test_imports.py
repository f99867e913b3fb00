"""helpers/ is layered: each module imports only modules below it, counting the imports inside functions (a cycle
there works until someone moves an import to the top, and it hides which module is the foundation)."""
from __future__ import annotations

import ast

from helpers.config import REPO_ROOT

HELPERS = REPO_ROOT / "helpers"


def module_name(path) -> str:
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Each helpers module and the helpers modules it imports anywhere in its code (`from helpers import x` counts
    as importing the submodule x where there is one, else the package's __init__)."""
    modules = {module_name(path): path for path in HELPERS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""  # `from . import x`, `from .. import`
                module = ".".join(filter(None, (base, node.module)))
                if module.split(".")[0] != "helpers":
                    continue
                imported |= {f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                             for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.split(".")[0] == "helpers"}
        graph[name] = imported - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] if there is none (depth-first search)."""
    visiting, done = [], set()

    def visit(name: str) -> list[str]:
        visiting.append(name)
        for imported in sorted(graph.get(name, ())):
            if imported in visiting:
                return visiting[visiting.index(imported):] + [imported]
            if imported not in done and (cycle := visit(imported)):
                return cycle
        done.add(visiting.pop())
        return []

    for name in sorted(graph):
        if name not in done and (cycle := visit(name)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    graph = import_graph()
    assert "helpers.execution" in graph["helpers.data"]  # ensure_tables' import inside the function is seen
    assert "helpers.config" in graph["helpers.checks.lab09"] or "helpers" in graph["helpers.checks.lab09"]


def test_helpers_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, f"import cycle in helpers/: {' -> '.join(cycle)}; move what both need to a lower module"
