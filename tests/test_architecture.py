"""The package's shape, read with the standard library's ``ast`` (no import is executed).

* no import cycle among the modules of ``interp/`` (a module-level or lazy import both count:
  a lazy import hides a cycle, it does not remove it);
* no ``from interp.x import _private`` across modules (a private name belongs to its module);
* no re-export shim (an import kept only to be re-exported, marked ``re-exported``);
* no ``model: Any`` in ``interp/taskvectors/``: a model is an :class:`interp.models.PromptModel`;
* no module above ``interp/models`` reaches into the MAE-VQGAN's internals (``config.mae``,
  ``config.fingerprint()``, ``encoder.blocks``, ``decoder.blocks``, ``model.vqgan``): it asks the protocol.

``PENDING_*`` list the files still to be cleaned by work in progress; the lists only shrink
(a file that is clean but still listed fails, so the list is emptied as the work lands).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"

# files of the search / scoring unification (issue 21 items 1-4), the explorer's controls, the
# code lens / path patching and the weight-space bases, cleaned as that work lands
PENDING_CYCLES: set[str] = set()
PENDING_PRIVATE: set[str] = set()
PENDING_ELSEWHERE: set[str] = set()
PENDING_MODEL_ANY: set[str] = set()
PENDING_REACH_INS: set[str] = set()

# resolving a model's layout or device by hand (model.layout(...), model.device instead)
PENDING_RESOLVERS: set[str] = set()
RESOLVER = re.compile(r"next\([\w.]*parameters\(\)\)|get_layout\([^)]*\bmodel\.grid\)")

REACH_IN = re.compile(r"\.config\.(?:mae\b|fingerprint\()|\.(?:encoder|decoder)\.blocks\b|\bmodel\.vqgan\b"
                      r"|\.vqgan\.(?:encode_to_codes|decode_codes)")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def _target(name: str, imported: list[str]) -> list[str]:
    """The interp modules an import statement loads (a submodule imported by name counts)."""
    if not name.startswith("interp"):
        return []
    found = []
    for n in imported:
        if f"{name}.{n}" in MODULES:
            found.append(f"{name}.{n}")
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    if name and not found:
        found.append(name)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, names, _ in _imports(module, path):
            for dep in _target(name, names):
                if dep != module and not module.startswith(dep + ".") and dep != "interp":
                    graph[module].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = _cycles(_graph())
    cycles = [c for c in found if not set(c) <= PENDING_CYCLES]
    assert not cycles, "import cycles (split the shared concept into its own module): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )
    stale = sorted(PENDING_CYCLES - {m for c in found for m in c})
    assert not stale, f"no longer in a cycle, remove from PENDING_CYCLES: {stale}"


def test_no_private_name_imported_across_modules():
    bad, pending = [], set()
    for module, path in MODULES.items():
        for name, names, line in _imports(module, path):
            if name.startswith("interp"):
                found = [f"{_rel(path)}:{line} imports {n} from {name}" for n in names
                         if n.startswith("_") and not n.startswith("__")]
                if found and _rel(path) in PENDING_PRIVATE:
                    pending.add(_rel(path))
                elif found:
                    bad += found
    assert pending == PENDING_PRIVATE, f"clean now, remove from PENDING_PRIVATE: {sorted(PENDING_PRIVATE - pending)}"
    assert not bad, "private names imported across modules (make them public or move the code):\n" + "\n".join(bad)


def _top_level_names(path: Path) -> tuple[set[str], set[str]]:
    """Names a module defines at top level, and names it imports."""
    defined, imported = set(), set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {a.asname or a.name.split(".")[0] for a in node.names}
    return defined, imported


def test_names_imported_from_where_they_live():
    """``from interp.x import name`` names a module that defines ``name``, not one that imports it
    (packages' ``__init__`` are the public surface and may gather names)."""
    names = {m: _top_level_names(p) for m, p in MODULES.items() if p.name != "__init__.py"}
    bad, pending = [], set()
    for module, path in MODULES.items():
        for source, imported, line in _imports(module, path):
            if source not in names:
                continue
            defined, its_imports = names[source]
            wrong = [n for n in imported if n in its_imports and n not in defined]
            if wrong and _rel(path) in PENDING_ELSEWHERE:
                pending.add(_rel(path))
            elif wrong:
                bad.append(f"{_rel(path)}:{line} imports {wrong} from {source}, which only imports them")
    assert pending == PENDING_ELSEWHERE, f"clean now, remove from PENDING_ELSEWHERE: {sorted(PENDING_ELSEWHERE - pending)}"
    assert not bad, "import names from the module that defines them:\n" + "\n".join(bad)


def test_no_reexport_shim():
    bad = [f"{_rel(p)}:{i}" for p in MODULES.values()
           for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"re-export", line)]
    assert not bad, "re-export shims (import from where the name lives): " + ", ".join(bad)


def _model_any(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in ("model", "base") and node.annotation is not None:
            if ast.unparse(node.annotation) in ("Any", "typing.Any"):
                lines.append(node.lineno)
    return lines


def test_no_model_any_in_taskvectors():
    files = sorted((PACKAGE / "taskvectors").rglob("*.py"))
    bad = {_rel(p): _model_any(p) for p in files}
    bad = {k: v for k, v in bad.items() if v}
    new = {k: v for k, v in bad.items() if k not in PENDING_MODEL_ANY}
    assert not new, f"`model: Any` in taskvectors (annotate it as interp.models.PromptModel): {new}"
    stale = sorted(PENDING_MODEL_ANY - set(bad))
    assert not stale, f"clean now, remove from PENDING_MODEL_ANY: {stale}"


def _scan(pattern: re.Pattern, pending: set[str], what: str) -> None:
    top = ("taskvectors", "pipeline.py", "compare_search.py", "scoring.py", "viz", "cli", "comparison", "provenance.py")
    bad: dict[str, list[int]] = {}
    for path in MODULES.values():
        if not path.relative_to(PACKAGE).as_posix().startswith(top):
            continue
        hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
        if hits:
            bad[_rel(path)] = hits
    new = {k: v for k, v in bad.items() if k not in pending}
    assert not new, f"{what}: {new}"
    stale = sorted(pending - set(bad))
    assert not stale, f"clean now, remove from the pending list: {stale}"


def test_layout_and_device_from_the_protocol():
    """``model.layout(l)`` and ``model.device``, not ``get_layout(l, model.grid)`` / ``next(model.parameters())``."""
    _scan(RESOLVER, PENDING_RESOLVERS, "layout or device resolved by hand (use model.layout(...) / model.device)")


def test_no_reach_into_model_internals():
    """Above ``interp/models`` a model is used through the protocol, not its MAE attributes."""
    _scan(REACH_IN, PENDING_REACH_INS, "reach-ins into MAE-VQGAN internals (use the PromptModel protocol)")


@pytest.mark.parametrize("module", ["interp.taskvectors.collect", "interp.taskvectors.units"])
def test_graph_sees_real_edges(module):
    """The checker reads this package: collect imports stats, units imports unit."""
    assert _graph()[module], module
