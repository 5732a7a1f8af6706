"""The layer table holds: every import between avworld's parts (lazy ones inside functions included) is an allowed arrow.

:data:`ALLOWED` is the table of README.md's "Layout" (and docs/architecture.md), one entry per part: the parts it may
import. An arrow not listed fails the test, naming the file and the import, so a new dependency is a decision made in the
table, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "avworld": ROOT / "avworld",
    "avworld.envs": ROOT / "envs",
    "avworld.policies": ROOT / "policies",
    "avworld.bench": ROOT / "bench",
}
"""Import name → folder (setuptools ``package-dir`` in pyproject.toml)."""
UTIL = {"jsonfile", "files"}
"""Modules of ``avworld/`` itself that import only the standard library (layer ``util``)."""
COMMANDS = {"cli", "cli_eval", "cli_config", "demo", "pipeline", "__main__"}
"""Modules of ``avworld/`` itself that make up the command line (layer ``cli``)."""

ALLOWED: dict[str, set[str]] = {
    "sim": {"util"},  # numpy, scipy, pyroomacoustics: no torch, nothing else of avworld but the stdlib helpers
    "models": set(),  # torch only: the imagination core included (it keeps its own copies of the util helpers)
    "viz": {"util"},  # arrays in, files out
    "util": set(),  # avworld.jsonfile, avworld.files: standard library only (standard JSON, files written atomically)
    "registration": {"envs"},  # `import avworld` registers the env ids
    "envs": {"sim", "models"},
    "data": {"sim", "envs", "registration", "util"},
    "train": {"models", "data", "util"},
    "policies": {"envs", "models", "sim", "data"},  # sim: actions, settings, the simulator a planner branches; data: PPO's dataset starts
    "eval": {"models", "envs", "policies", "sim", "data", "viz", "registration"},  # sim: real episodes; data: windows; viz: rollout videos
    "bench": {"sim", "models", "envs", "data", "train", "policies", "eval", "registration", "util"},
    "cli": {"sim", "models", "viz", "util", "registration", "envs", "data", "train", "policies", "eval", "bench", "cli"},
}


def layer(module: str) -> str | None:
    """The part a dotted module name belongs to (None outside avworld)."""
    parts = module.split(".")
    if parts[0] != "avworld":
        return None
    if len(parts) == 1:
        return "registration"
    name = parts[1]
    if name in COMMANDS:
        return "cli"
    if name in UTIL:
        return "util"
    if name == "configs":
        return "cli"
    return name


def modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of every module of the installed packages."""
    found = []
    for package, folder in PACKAGES.items():
        for file in sorted(folder.rglob("*.py")):
            parts = file.relative_to(folder).with_suffix("").parts
            if package == "avworld" and parts[0] in ("envs", "policies", "bench"):
                continue
            found.append((".".join((package, *parts)).removesuffix(".__init__"), file))
    return found


def imports(name: str, file: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement of ``file``, at any depth; relative imports resolved."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            out += [(node.lineno, f"{target}.{alias.name}" if node.module is None else target) for alias in node.names]
    return out


def test_every_part_is_in_the_table() -> None:
    parts = {layer(name) for name, _ in modules()}
    assert parts <= set(ALLOWED), f"parts missing from the layer table: {sorted(parts - set(ALLOWED))}"


def test_imports_follow_the_layer_table() -> None:
    wrong = []
    for name, file in modules():
        source = layer(name)
        assert source is not None
        for line, target in imports(name, file):
            to = layer(target)
            if to is not None and to != source and to not in ALLOWED[source]:
                wrong.append(f"{file.relative_to(ROOT)}:{line}: {source} → {to} ({target})")
    assert not wrong, "imports the layer table does not allow:\n" + "\n".join(wrong)


def test_the_walker_sees_lazy_imports(tmp_path: Path) -> None:
    file = tmp_path / "mod.py"
    file.write_text("def f():\n    from avworld.data.storage import flatten\n    import avworld.sim.scenes.scene\n\nfrom . import other\n")
    found = {target for _, target in imports("avworld.envs.mod", file)}
    assert found == {"avworld.data.storage", "avworld.sim.scenes.scene", "avworld.envs.other"}
    assert [layer(t) for t in sorted(found)] == ["data", "envs", "sim"]
