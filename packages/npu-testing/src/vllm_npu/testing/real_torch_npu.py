"""The real torch-npu wheel, downloaded (never installed, never imported) and read.

``fetch(version)`` downloads ``torch-npu==version`` for Linux x86_64 / CPython 3.11
with pip, extracts the few files the checks read and keeps them in a cache folder
(``$VLLM_NPU_TORCH_NPU_CACHE``, else ``$XDG_CACHE_HOME/vllm-npu/torch-npu``, else
``~/.cache/vllm-npu/torch-npu``), one subfolder per version; later calls read the
cache and need no network. What it reads:

- the registered op schemas: every string of ``lib/libtorch_npu.so`` that
  ``torch._C.parse_schema`` accepts (the schema ``torch_npu.<op>`` binds against,
  since torch_npu exports ``torch.ops.npu.<op>`` as ``torch_npu.<op>``);
- the ATB ops: the names ``op_plugin/atb/_atb_ops.py`` exports as ``torch_npu.<op>``
  that ``lib/libop_plugin_atb.so`` registers, and their C++ declarations in
  ``AtbOpsInterface.h`` (their schemas are not in the wheel as text); the schemas of
  the ``torch_npu.atb.<op>`` ops that the .so holds as text;
- the meta (shape) kernels' sources, ``op_plugin/meta/_meta_registrations.py`` and
  ``op_plugin/atb/_atb_meta_registrations.py``;
- ``torch.npu``: the functions and classes of ``torch_npu/npu/*.py`` (by ``ast``).

``python -m vllm_npu.testing.real_torch_npu [VERSION]`` fetches into the cache
(default: the newest row of ./compat.toml; CI runs it first, so that a registry
problem is one clear line).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import tomllib
import torch
from packaging.version import Version

CACHE_ENV = "VLLM_NPU_TORCH_NPU_CACHE"
"""Folder that holds the extracted wheels (one subfolder per version)."""
PIP_ENV = "VLLM_NPU_PIP"
"""Command that runs pip, e.g. ``python3 -m pip`` (default: this Python's pip, else
``python3 -m pip`` from PATH)."""
PLATFORM = "manylinux_2_28_x86_64"
PYTHON_VERSION = "3.11"

SCHEMA_LIBRARY = "torch_npu/lib/libtorch_npu.so"
ATB_LIBRARY = "torch_npu/lib/libop_plugin_atb.so"
ATB_OPS = "torch_npu/op_plugin/atb/_atb_ops.py"
ATB_HEADER = "torch_npu/include/third_party/op-plugin/op_plugin/include/AtbOpsInterface.h"
META_REGISTRATIONS = "torch_npu/op_plugin/meta/_meta_registrations.py"
ATB_META_REGISTRATIONS = "torch_npu/op_plugin/atb/_atb_meta_registrations.py"
NPU_PACKAGE = "torch_npu/npu/"
_EXTRACTED = (ATB_OPS, ATB_HEADER, META_REGISTRATIONS, ATB_META_REGISTRATIONS)
_INDEX = "index.json"
"""Written last into a version's folder: the schemas and ATB names read from the .so files."""
_INDEX_FORMAT = 2
"""Bumped when the index holds something new: older caches are read again from the wheel."""

_SCHEMA = re.compile(
    rb"(?<![\x20-\x7e])"  # a whole printable string: name[.overload](...) -> ...
    rb"(_?[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?\([\x20-\x7e]*\) -> [\x20-\x7e]+)"
)
_IDENTIFIER = re.compile(rb"(?<![\x20-\x7e])(_?[a-z][a-z0-9_]*)(?![\x20-\x7e])")


class WheelUnavailable(RuntimeError):
    """The real torch-npu wheel could not be downloaded or read."""


@dataclass(frozen=True)
class NpuFunction:
    """A ``torch.npu`` function (or a class's constructor) of the real wheel, from its source."""

    name: str
    file: str
    parameters: tuple[tuple[str, str, str | None], ...]
    """(name, kind, default's source or None): kind as ``inspect.Parameter.kind.name``."""


@dataclass(frozen=True)
class RealTorchNpu:
    """The files of one extracted torch-npu wheel (see the module docstring)."""

    version: str
    root: Path

    @cached_property
    def _index(self) -> dict:
        return json.loads((self.root / _INDEX).read_text())

    @property
    def schemas(self) -> dict[str, list[str]]:
        """Op name (no overload) -> every registered schema string of it, sorted."""
        return self._index["schemas"]

    @property
    def atb_ops(self) -> list[str]:
        """The ATB ops torch_npu exports as ``torch_npu.<op>`` and libop_plugin_atb.so has."""
        return self._index["atb_ops"]

    @property
    def atb_module_schemas(self) -> dict[str, list[str]]:
        """The ops of ``torch_npu.atb`` -> their schemas, as libop_plugin_atb.so holds them
        as text (the short ones it does not: those ops are missing here)."""
        return self._index["atb_module_schemas"]

    def op_schemas(self, op: str) -> list[str] | None:
        """The text schemas of ``torch_npu.<op>`` (``op`` may be ``atb.<name>``), if any."""
        if op.startswith("atb."):
            return self.atb_module_schemas.get(op.removeprefix("atb."))
        return self.schemas.get(op)

    def read(self, member: str) -> str:
        """The text of one extracted file, e.g. ``META_REGISTRATIONS``."""
        return (self.root / member).read_text()

    @cached_property
    def atb_declarations(self) -> dict[str, list[str]]:
        """ATB op -> its C++ parameter types from AtbOpsInterface.h (``const at::Tensor&``...)."""
        text = self.read(ATB_HEADER)
        found: dict[str, list[str]] = {}
        for match in re.finditer(r"TORCH_NPU_API\s+[^;(]*?\b(\w+)\s*\(([^)]*)\)\s*;", text):
            name, parameters = match.groups()
            types = [re.sub(r"\s*\w+\s*$", "", p.strip()) for p in _split_top(parameters)]
            found[name] = [re.sub(r"\s+", " ", t).replace(" &", "&") for t in types if t]
        return found

    @cached_property
    def npu_functions(self) -> dict[str, NpuFunction]:
        """``torch.npu`` names defined at the top of ``torch_npu/npu/*.py`` (classes: their
        ``__init__``, else ``__new__``); a name defined in several files keeps the first
        in ``__init__.py``, then file name order."""
        folder = self.root / NPU_PACKAGE
        files = sorted(folder.glob("*.py"), key=lambda p: (p.name != "__init__.py", p.name))
        found: dict[str, NpuFunction] = {}
        for path in files:
            for node in ast.parse(path.read_text()).body:
                function = _constructor(node) if isinstance(node, ast.ClassDef) else node
                is_function = isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
                if is_function and node.name not in found:
                    where = f"torch_npu/npu/{path.name}"
                    found[node.name] = NpuFunction(node.name, where, _parameters(function))
        return found


def _split_top(parameters: str) -> list[str]:
    """Split a C++ parameter list at the commas outside ``<...>``."""
    parts, depth, current = [], 0, ""
    for char in parameters:
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current] if current.strip() else parts


def _constructor(node: ast.ClassDef) -> ast.FunctionDef | None:
    methods = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
    return methods.get("__init__") or methods.get("__new__")


def _parameters(function: ast.FunctionDef) -> tuple[tuple[str, str, str | None], ...]:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults = [None] * (len(positional) - len(arguments.defaults)) + arguments.defaults
    found = []
    for index, (argument, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if index < len(arguments.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        found.append((argument.arg, kind, None if default is None else ast.unparse(default)))
    if arguments.vararg:
        found.append((arguments.vararg.arg, "VAR_POSITIONAL", None))
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        source = None if default is None else ast.unparse(default)
        found.append((argument.arg, "KEYWORD_ONLY", source))
    if arguments.kwarg:
        found.append((arguments.kwarg.arg, "VAR_KEYWORD", None))
    if found and found[0][0] in ("self", "cls"):
        found = found[1:]
    return tuple(found)


def newest_torch_npu(compat: Path) -> str:
    """The ``torch-npu`` of the newest vLLM release in a compat.toml."""
    try:
        releases = tomllib.loads(compat.read_text())["vllm"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as error:
        raise WheelUnavailable(f"cannot read the vLLM releases of {compat}: {error}") from error
    return releases[max(releases, key=Version)]["torch-npu"]


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vllm-npu" / "torch-npu"


def fetch(version: str) -> RealTorchNpu:
    """The wheel of ``torch-npu==version``, from the cache or downloaded into it.

    Raises ``WheelUnavailable`` (saying what to do) when it cannot be had."""
    folder = cache_root() / version
    if _is_current(folder / _INDEX):
        return RealTorchNpu(version, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{version}-") as work:
        wheel = _download(version, Path(work) / "download")
        staging = Path(work) / "extracted"
        _extract(wheel, staging)
        if not _is_current(folder / _INDEX):  # another process may have finished first
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
    return RealTorchNpu(version, folder)


def _is_current(index: Path) -> bool:
    try:
        return json.loads(index.read_text()).get("format") == _INDEX_FORMAT
    except (OSError, ValueError):
        return False


def _pip() -> list[str]:
    if os.environ.get(PIP_ENV):
        return shlex.split(os.environ[PIP_ENV])
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    python3 = shutil.which("python3")
    if python3 is None:
        raise WheelUnavailable(
            f"no pip to download the torch-npu wheel with: set {PIP_ENV} (e.g. 'python3 -m pip')"
        )
    return [python3, "-m", "pip"]


def _download(version: str, destination: Path) -> Path:
    command = [
        *_pip(), "download", "--no-deps", "--only-binary=:all:", "--platform", PLATFORM,
        "--python-version", PYTHON_VERSION, f"torch-npu=={version}", "-d", str(destination),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(destination.glob("torch_npu-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise WheelUnavailable(
            f"cannot download the real torch-npu=={version} wheel ({shlex.join(command)}): "
            + " | ".join(tail)
            + f". Check that pip reaches a registry with torch-npu, or set {PIP_ENV}."
        )
    return wheels[0]


def _extract(wheel: Path, staging: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            npu_files = [n for n in names if n.startswith(NPU_PACKAGE) and n.count("/") == 2]
            wanted = [*_EXTRACTED, *(n for n in npu_files if n.endswith(".py"))]
            missing = [m for m in (*wanted, SCHEMA_LIBRARY, ATB_LIBRARY) if m not in names]
            if missing:
                raise WheelUnavailable(f"{wheel.name} lacks {', '.join(missing)}")
            for member in wanted:
                archive.extract(member, staging)
            schemas = _registered_schemas(archive.read(SCHEMA_LIBRARY))
            atb_library = archive.read(ATB_LIBRARY)
            atb_names = {m.decode() for m in _IDENTIFIER.findall(atb_library)}
            atb_schemas = _registered_schemas(atb_library)
    except zipfile.BadZipFile as error:
        raise WheelUnavailable(f"{wheel.name} is not a readable wheel: {error}") from error
    atb_ops = (staging / ATB_OPS).read_text()
    exported = _string_list(atb_ops, "API_LIST")  # the ATB ops that become torch_npu.<op>
    in_module = _string_list(atb_ops, "ATB_API_LIST")  # those of torch_npu.atb
    index = {
        "format": _INDEX_FORMAT,
        "schemas": schemas,
        "atb_ops": sorted(set(exported) & atb_names),
        "atb_module_schemas": {k: v for k, v in atb_schemas.items() if k in in_module},
    }
    (staging / _INDEX).write_text(json.dumps(index, indent=1, sort_keys=True))


def _registered_schemas(library: bytes) -> dict[str, list[str]]:
    schemas: dict[str, set[str]] = {}
    for match in _SCHEMA.finditer(library):
        text = match.group(1).decode()
        try:
            name = torch._C.parse_schema(text).name
        except RuntimeError:
            continue  # a C++ signature or message that only looks like a schema
        schemas.setdefault(name, set()).add(text)
    return {name: sorted(texts) for name, texts in sorted(schemas.items())}


def _string_list(source: str, variable: str) -> list[str]:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise WheelUnavailable(f"{ATB_OPS} has no {variable} list")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"usage: python -m {__spec__.name} [VERSION]", file=sys.stderr)
        return 2
    try:
        version = argv[0] if argv else newest_torch_npu(Path("compat.toml"))
        wheel = fetch(version)
    except WheelUnavailable as error:
        print(f"torch-npu wheel: {error}", file=sys.stderr)
        return 1
    print(f"real torch-npu {wheel.version}: {len(wheel.schemas)} ops, in {wheel.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
