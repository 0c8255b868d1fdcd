"""The shape of the code: no import circle between the project's own modules
(function-local imports included), so each module can be read, and loaded,
after the ones it names."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("project", "live", "sessions_app", "logs_app", "operations")
SKIP = {"tests", "migrations", "management"}


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if SKIP.intersection(parts):
                continue
            found[".".join(parts).removesuffix(".__init__")] = path
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in files.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                if any(target not in files for target in targets):
                    targets.append(node.module)  # a name defined in the module itself
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    named.add(target)
        graph[name] = named
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return path[path.index(other) :] + [other]
            if other not in state and (circle := visit(other)):
                return circle
        path.pop()
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (circle := visit(name)):
            return circle
    return None


def test_the_projects_modules_import_each_other_without_a_circle():
    circle = find_circle(import_graph(module_files(ROOT)))
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_a_circle_through_a_function_local_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later():\n    from pkg.c import thing\n")
    (package / "c.py").write_text("import pkg.a\nthing = 1\n")
    (package / "d.py").write_text("from pkg import a\n")

    graph = import_graph(module_files(tmp_path, ("pkg",)))

    assert graph["pkg.d"] == {"pkg.a"}
    assert find_circle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    graph["pkg.c"].discard("pkg.a")
    assert find_circle(graph) is None


CORE = "live"
FEATURES = ("sessions_app", "logs_app", "operations")
LINES_MAX = 400


def feature_imports(graph: dict[str, set[str]], core: str = CORE, features=FEATURES) -> list:
    """(core module, feature module) for each import from the core into a feature."""
    return sorted(
        (name, target)
        for name, targets in graph.items()
        if name.split(".")[0] == core
        for target in targets
        if target.split(".")[0] in features
    )


def test_the_core_imports_no_feature():
    # Features plug into the core from their app configs (streams, actions,
    # loaders, sweepers); the core names none of them, test modules included.
    files = module_files(ROOT)
    for path in (ROOT / CORE / "tests").rglob("*.py"):
        files[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    graph = import_graph(files)
    # The core's tests may use a feature to make events; its code may not.
    code = {name: targets for name, targets in graph.items() if ".tests" not in name}
    assert feature_imports(code) == []


def test_an_import_from_the_core_into_a_feature_is_found(tmp_path):
    for package, source in (("core", "def f():\n    from feat.x import y\n"), ("feat", "")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "x.py").write_text(source or "y = 1\nimport core.x\n")

    graph = import_graph(module_files(tmp_path, ("core", "feat")))

    assert feature_imports(graph, "core", ("feat",)) == [("core.x", "feat.x")]
    assert feature_imports({"feat.x": {"core.x"}}, "core", ("feat",)) == []


def test_no_module_of_application_code_is_over_400_lines():
    long = {
        name: lines
        for name, path in module_files(ROOT).items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > LINES_MAX
    }
    assert long == {}, f"modules over {LINES_MAX} lines: {long}"
