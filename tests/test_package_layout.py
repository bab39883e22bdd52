"""The launcher's packages as README describes them: the names its scripting example calls exist,
each package says what lives in it, no module runs over 400 lines, and no module imports itself
back through another."""
import ast
import importlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "launcher"


def _scripting_block():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Scripting the launcher"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def test_every_name_the_readme_scripting_example_calls_exists():
    block = _scripting_block()
    modules = {}
    for line in block.splitlines():
        match = re.match(r"from ([\w.]+) import ([\w, ]+?)\s*(#.*)?$", line)
        if match:
            for name in match.group(2).split(","):
                name = name.strip()
                package = importlib.import_module(match.group(1))
                modules[name] = getattr(package, name, None) or importlib.import_module(match.group(1) + "." + name)
    assert {"backends", "training", "compare", "promotion", "scores", "leaderboard", "steps", "convert",
            "commands"} <= set(modules)
    called = set(re.findall(r"\b(\w+)\.(\w+)\(", block))
    for owner, attribute in called:
        if owner in modules:
            assert hasattr(modules[owner], attribute), "README calls %s.%s, which does not exist" % (owner, attribute)


def test_the_launcher_is_a_few_packages_of_small_modules():
    top = sorted(p.name for p in LAUNCHER.glob("*.py"))
    assert len(top) <= 4, top
    packages = sorted(p.parent.name for p in LAUNCHER.glob("*/__init__.py"))
    assert packages == ["cloud", "commands", "decide", "jobs", "pipeline"]
    for package in packages:
        assert ast.get_docstring(ast.parse((LAUNCHER / package / "__init__.py").read_text())), package
    long = {str(p.relative_to(ROOT)): n for p in LAUNCHER.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def _imports(path):
    """The launcher modules ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("launcher"):
            for alias in node.names:
                candidate = node.module + "." + alias.name
                found.add(candidate if (ROOT / (candidate.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("launcher"))
    return found


def test_no_import_cycle_among_the_launchers_modules():
    graph = {}
    for path in LAUNCHER.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        graph[name.removesuffix(".__init__")] = _imports(path)
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if target in graph:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])
