"""Whether an entry point would load, checked without running heavy modules.

Loading some of our entry points (the worker) imports most of vLLM's GPU stack,
which would make ``vllm-npu doctor`` slower than ``import vllm``. The static check
finds the module, reads its source, checks that the attribute is defined at top
level (or that the module resolves names lazily, with ``__getattr__``) and that
every module it imports unconditionally is installed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Collection
from importlib.machinery import ModuleSpec, PathFinder
from importlib.metadata import EntryPoint


def load_problem(entry_point: EntryPoint, *, load: bool = False) -> str | None:
    """Why ``entry_point`` would not load, or None; ``load`` imports it for real."""
    module_name, _, attribute = entry_point.value.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    try:
        if load:
            entry_point.load()
            return None
        loaded = sys.modules.get(module_name)
        if loaded is not None and attribute.split(".")[0] in vars(loaded):
            return None
        return _static_problem(module_name, attribute)
    except Exception as error:
        return f"fails to load: {error}"


def _locate(module_name: str) -> ModuleSpec | None:
    """The module's spec, found without running any package's ``__init__``.

    ``importlib.util.find_spec`` imports the parent packages (``vllm``'s takes
    seconds); walking the path finder down the package folders does not. Modules
    behind other finders (or already imported parents) go through ``find_spec``.
    """
    parts = module_name.split(".")
    spec = None if parts[0] in sys.modules else PathFinder.find_spec(parts[0])
    if spec is None:
        return importlib.util.find_spec(module_name)
    for depth in range(1, len(parts)):
        if spec.submodule_search_locations is None:
            return None  # a plain module has no submodules
        spec = PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations)
        )
        if spec is None:
            return None
    return spec


def _static_problem(module_name: str, attribute: str) -> str | None:
    spec = _locate(module_name)
    if spec is None or spec.loader is None:
        return f"fails to load: no module named {module_name!r}"
    get_source = getattr(spec.loader, "get_source", None)
    source = get_source(module_name) if get_source else None
    if source is None:  # an extension module or the like: only a real import can tell
        importlib.import_module(module_name)
        return _missing_attribute(module_name, attribute, dir(sys.modules[module_name]))
    tree = ast.parse(source, filename=spec.origin or module_name)
    package = module_name if spec.submodule_search_locations else module_name.rpartition(".")[0]
    for imported in _unconditional_imports(tree, package):
        if _locate(imported) is None:
            return f"fails to load: {module_name} imports {imported}, which is not installed"
    return _missing_attribute(module_name, attribute, _top_level_names(tree))


def _missing_attribute(
    module_name: str, attribute: str, names: Collection[str]
) -> str | None:
    head = attribute.split(".")[0]
    if not head or head in names or "__getattr__" in names:
        return None
    return f"fails to load: {module_name} has no attribute {head!r}"


def _unconditional_imports(tree: ast.Module, package: str) -> list[str]:
    modules: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            modules.append(base)
    return modules


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names
