"""The house's layers: every import in `pipeline/` and `stages/` points down, none in a circle.

From the top: the command line, the driver, the outputs (report, mix file, statistics,
shards, validation, tables, card, smoke trainer), config and inputs (and the Spark session),
the Spark stages, the pure per-partition logic. Imports inside functions count too: they
keep a command's start fast, not its dependencies hidden.
"""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = [  # lowest first: a module may import only from its own layer or below
    ("logic", ["stages.logic"]),
    ("stages", ["stages"]),
    (
        "config and inputs",
        [
            "pipeline.__init__",
            "pipeline.config",
            "pipeline.presets",
            "pipeline.specs",
            "pipeline.inputs",
            "pipeline.input_versions",
            "pipeline.corpus",
            "pipeline.demo",
            "pipeline.java",
            "pipeline.jvm_classes",
            "pipeline.spark",
            "pipeline.progress",
            "pipeline.ownership",
            "pipeline.lock",
        ],
    ),
    (
        "outputs",
        [
            "pipeline.report",
            "pipeline.summary",
            "pipeline.mixfile",
            "pipeline.shards",
            "pipeline.stats",
            "pipeline.validate",
            "pipeline.peek",
            "pipeline.plots",
            "pipeline.tables",
            "pipeline.trainer",
            "pipeline.card",
        ],
    ),
    ("driver", ["pipeline.driver"]),
    ("command line", ["pipeline.commands", "pipeline.cli", "pipeline.main"]),
    ("python api", ["longmix"]),
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix."""
    best, rank = -1, None
    for k, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), k
    assert rank is not None, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (`from pipeline import x` counts as
    `pipeline.x` when that is a module, else as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in modules else node.module for n in names]
        for name in map(within_repository, names):
            if name in modules:
                found.add(name)
            elif f"{name}.__init__" in modules:
                found.add(f"{name}.__init__")
    return found


def within_repository(name: str) -> str:
    """The repository's name for an imported module: `longmix.pipeline.x` is `pipeline/x.py`
    (the package's `pipeline` and `stages` are links to the repository's folders)."""
    return re.sub(r"^longmix\.(?=(pipeline|stages)\b)", "", name)


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for d in ("pipeline", "stages") for p in (REPO / d).rglob("*.py")}
    paths |= {module_name(p): p for p in (REPO / "longmix").glob("*.py")}
    modules = set(paths)
    return {name: project_imports(path, modules) - {name} for name, path in paths.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]


def circles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, str] = {}
    found = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_every_import_points_down():
    assert upward_imports(import_graph()) == []


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_checks_find_a_planted_upward_import_and_circle():
    graph = import_graph()
    assert "pipeline.driver" in graph["pipeline.commands"]  # imports inside functions count
    planted = {**graph, "stages.logic.pack": graph["stages.logic.pack"] | {"pipeline.config"}}
    assert upward_imports(planted) == [
        "stages.logic.pack (logic) imports pipeline.config (config and inputs)"
    ]
    planted = {**graph, "pipeline.config": graph["pipeline.config"] | {"pipeline.specs"}}
    assert circles(planted) == ["pipeline.config -> pipeline.specs -> pipeline.config"]


def test_the_architecture_tour_names_every_module_and_only_modules_that_exist():
    tour = (REPO / "docs/ARCHITECTURE.md").read_text()
    modules = {
        p.name
        for d in ("longmix", "pipeline", "pipeline/trainer", "stages", "stages/logic")
        for p in (REPO / d).glob("*.py")
        if p.name != "__init__.py"
    }
    named = set(re.findall(r"`(?:[\w/]+/)?(\w+\.py)`", tour))
    assert modules - named == set(), "modules the tour does not name"
    existing = {p.name for p in REPO.rglob("*.py") if ".venv" not in p.parts}
    assert named - existing == set(), "the tour names files that do not exist"
    for folder in re.findall(r"^- `(\w+)/`", tour, flags=re.M):
        assert (REPO / folder).is_dir(), folder
