"""The shape of the code: imports run one way, and the bot's processes never pay for torch.

Kept in a folder of its own: a test file directly in tests/ would put tests/ on sys.path,
where the folder tests/stylizer would shadow the stylizer package in subprocesses.

Read from the source with `ast`, so a cycle is caught even where it is hidden inside a
function (an import at use is still a cycle a reader has to untie); imports under
`if TYPE_CHECKING:` are for the type checker only and are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "stylizer", "migrations")
LONG_FILE_LINES = 400
LONG_FILE_REASON = "Long because"


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import mod` names `pkg.mod`)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_project_modules() -> None:
    graph = import_graph()
    assert len(graph) > 40  # the walk found the project
    assert cycles(graph) == []


def test_the_engine_library_never_imports_the_bot() -> None:
    graph = import_graph()
    offenders = {m: sorted(t for t in deps if t.split(".")[0] == "bot")
                 for m, deps in graph.items() if m.startswith("stylizer")}
    assert {m: d for m, d in offenders.items() if d} == {}


# The Discord front end, top first: each layer imports only the layers below it.
DISCORD_LAYERS = ("bot.discord.cogs", "bot.discord.jobflow", "bot.discord.delivery",
                  "bot.discord.views", "bot.discord.errors")


def _discord_layer(module: str) -> int | None:
    for rank, layer in enumerate(DISCORD_LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def test_the_discord_front_end_imports_run_one_way() -> None:
    graph = import_graph()
    assert {_discord_layer(m) for m in graph} >= set(range(len(DISCORD_LAYERS)))
    upward = sorted((m, t) for m, deps in graph.items() for t in deps
                    if (low := _discord_layer(m)) is not None
                    and (high := _discord_layer(t)) is not None and high < low)
    assert upward == []


def test_package_inits_are_docstrings_only() -> None:
    for name, path in project_modules().items():
        if path.name != "__init__.py":
            continue
        body = ast.parse(path.read_text()).body
        code = [n for n in body if not (isinstance(n, ast.Expr)
                                        and isinstance(n.value, ast.Constant))]
        assert code == [], f"{name}/__init__.py holds code; keep it to a docstring"


def test_long_modules_say_why_at_the_top() -> None:
    for name, path in project_modules().items():
        text = path.read_text()
        if text.count("\n") > LONG_FILE_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert LONG_FILE_REASON in doc, (
                f"{name} has {text.count(chr(10))} lines: split it, or say at its top "
                f"'{LONG_FILE_REASON} ...'")


def _console_script_module() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return str(scripts["stylebot"]).partition(":")[0]


def test_the_bot_and_its_cli_load_neither_torch_nor_the_engine() -> None:
    """The bot process hands painting to worker processes; loading torch would cost it
    seconds at start and hundreds of MB, and CUDA in the parent would break the workers."""
    code = (f"import sys, bot.app, {_console_script_module()}\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', "
            "'torchvision') or m == 'stylizer.engine')\n"
            "print(heavy)\n"
            "sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_makefile_names_only_scripts_that_exist() -> None:
    import re

    named = re.findall(r"benchmarks/[\w/]+\.py", (ROOT / "Makefile").read_text())
    assert named
    assert [n for n in named if not (ROOT / n).exists()] == []
