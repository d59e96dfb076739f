"""The package's shape: imports inside jaxfw/ run one way (no cycle, counting imports made
inside functions too), a function-local import says why it is there, `jaxfw.train` stays
the training function whatever is imported, and nothing points outside the repository."""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import jaxfw

PACKAGE = Path(jaxfw.__file__).parent
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The jaxfw modules an import statement runs (a submodule named in `from pkg import
    sub` counts as that submodule)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{alias.name}" for alias in node.names]
        names = [n if n in MODULES else base for n in names]
    found = []
    for name in names:
        while name and name not in MODULES:  # `import jaxfw.data.x.y` -> the deepest module
            name = name.rpartition(".")[0]
        if name.startswith("jaxfw") and name != module:
            found.append(name)
    return found


def _imports() -> dict[str, list[tuple[str, ast.stmt, bool]]]:
    """module -> [(imported jaxfw module, statement, inside a function)]."""
    graph: dict[str, list[tuple[str, ast.stmt, bool]]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        inner = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for sub in ast.walk(node)
        }
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                if _is_type_checking_only(tree, node):
                    continue
                for target in _targets(node, module):
                    edges.append((target, node, id(node) in inner))
        graph[module] = edges
    return graph


def _is_type_checking_only(tree: ast.Module, node: ast.stmt) -> bool:
    return any(
        isinstance(block, ast.If)
        and "TYPE_CHECKING" in ast.unparse(block.test)
        and any(sub is node for stmt in block.body for sub in ast.walk(stmt))
        for block in ast.walk(tree)
    )


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_imports_inside_the_package_form_no_cycle():
    graph = {m: sorted({t for t, _, _ in edges}) for m, edges in _imports().items()}
    # A package's __init__ re-exports its modules: an edge *into* the package from its own
    # modules is how Python resolves `from jaxfw.data.x import ...`, not a design cycle.
    for module, targets in graph.items():
        graph[module] = [t for t in targets if not module.startswith(f"{t}.")]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": ["c"], "c": []}) is None


def test_every_function_local_import_says_why():
    """Imports belong at the top of a module; one inside a function (to keep JAX out of a
    command's argument checks, or for an optional package) carries a comment with its
    reason on its own line or the line above."""
    missing = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            imports = sorted(
                (n for n in ast.walk(function) if isinstance(n, ast.Import | ast.ImportFrom)),
                key=lambda n: n.lineno,
            )
            explained_until = -1  # a run of imports shares the reason above its first
            for node in imports:
                here, above = lines[node.lineno - 1], lines[node.lineno - 2]
                if (
                    "#" in here
                    or above.strip().startswith("#")
                    or explained_until == node.lineno - 1
                ):
                    explained_until = node.end_lineno
                else:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not sorted(set(missing)), sorted(set(missing))


def test_jaxfw_train_stays_the_function_whatever_is_imported():
    for info in pkgutil.walk_packages([str(PACKAGE)], "jaxfw."):
        if info.name != "jaxfw.__main__":
            importlib.import_module(info.name)
    assert callable(jaxfw.train) and jaxfw.train.__module__ == "jaxfw.trainer"
    assert "jaxfw.train" not in MODULES


def test_nothing_points_outside_the_repository():
    texts = [p.read_text() for p in [*PACKAGE.rglob("*.py"), *REPO.glob("*.md")]]
    texts += [p.read_text() for p in (REPO / "docs").glob("*.md")]
    for text in texts:
        # The names are spelled in pieces so that this check does not match itself.
        assert not re.search(
            "|".join([r"\.\./" + "shared", "DESIGN" + r"\.md", "NOTES" + "-stack"]), text
        )


def test_the_architecture_page_names_every_module():
    page = (REPO / "docs" / "architecture.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in MODULES.values()
        if path.name != "__init__.py" and path.stem not in page
    ]
    assert not missing, f"docs/architecture.md does not mention {missing}"
