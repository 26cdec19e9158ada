"""The installs a user makes from the built wheels, each in a clean virtual environment.

``uv build --all-packages`` builds the wheelhouse; every venv installs from it
and from the folder holding torch's CPU wheel, never from the workspace:

- ``pip install vllm-npu`` with CPU torch pulls the registry's torchvision (a CUDA
  build on x86): the doctor names it and exits 1, and vLLM indeed fails to import;
  after the README's fix (uninstall it) the doctor is healthy and ``vllm serve``
  answers the OpenAI client, token for token with transformers.
- platform + worker + comm + patches, without vllm-npu-attention, plus a
  researcher's backend built on vLLM's base classes only: the doctor is healthy
  and generation equals transformers; without any attention backend, the
  one-line error names vllm-npu-attention.
- each component wheel alone installs (with the platform it depends on) and
  imports; what it lacks is an error naming the distribution.

Each venv costs about 5 GB and a minute: they run when ``VLLM_NPU_INSTALL_TESTS=1``
(``.ci/run`` sets it), and each is deleted when its tests end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate_ids

ENABLE_ENV = "VLLM_NPU_INSTALL_TESTS"
pytestmark = pytest.mark.skipif(
    os.environ.get(ENABLE_ENV) != "1",
    reason=f"installs from built wheels into clean venvs (~5 GB, minutes): set {ENABLE_ENV}=1",
)

ROOT = Path(__file__).resolve().parents[2]
RESEARCHER_PROJECT = Path(__file__).with_name("researcher_attention")
TORCH_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
COMPONENTS = (
    "vllm-npu-platform",
    "vllm-npu-worker",
    "vllm-npu-attention",
    "vllm-npu-comm",
    "vllm-npu-patches",
)
MAX_TOKENS = 8
STARTUP_TIMEOUT_S = 420
RUN_TIMEOUT_S = 600
HOST_ENV = {
    "VLLM_NPU_DEVICE": "host",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "VLLM_NPU_HOST_KV_CACHE_GB": "0.25",
}


def _torch_wheel_folder() -> str:
    """The folder pip takes torch's CPU wheel from (as ./dev reads it)."""
    for name in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
        if os.environ.get(name):
            return os.environ[name]
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found:
        found = subprocess.run(
            ["python3", "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    if not found:
        pytest.fail("no folder with torch's CPU wheel: set PIP_FIND_LINKS")
    return found


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed (./dev installs it)")
    return found


@dataclass
class Venv:
    path: Path
    find_links: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def pip(self, *args: str, excludes: bool = True) -> None:
        """``uv pip`` into this venv (the wheelhouse and torch's folder as find-links)."""
        command = [_uv(), "pip", args[0], "--python", str(self.python), "--no-config"]
        if args[0] == "install":
            command += [arg for link in self.find_links for arg in ("--find-links", link)]
            if excludes:
                command += ["--excludes", str(self.path / "excludes.txt")]
        _run([*command, *args[1:]], timeout=RUN_TIMEOUT_S)

    def uninstall_ours(self) -> None:
        installed = self.installed()
        ours = [name for name in (*COMPONENTS, "vllm-npu", "researcher-attention")
                if name in installed]
        if ours:
            self.pip("uninstall", *ours)

    def installed(self) -> set[str]:
        out = subprocess.run(
            [_uv(), "pip", "list", "--python", str(self.python), "--format", "json"],
            capture_output=True, text=True, check=True,
        ).stdout
        return {row["name"] for row in json.loads(out)}

    def run(
        self, *args: str, timeout: float = RUN_TIMEOUT_S, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout,
            env={**_clean_environ(), **HOST_ENV, **env}, cwd=self.path,
        )

    def doctor(self, **env: str) -> tuple[int, dict]:
        result = self.run(self.bin("vllm-npu"), "doctor", "--json", **env)
        assert result.stdout, result.stderr[-3000:]
        return result.returncode, json.loads(result.stdout)


def _clean_environ() -> dict[str, str]:
    """This process's environment minus what points into the workspace."""
    return {
        key: value for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        and not key.startswith("VLLM_NPU_")
    }


def _run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr[-3000:]}"
    return result


def _problems(report: dict) -> list[str]:
    return [row["problem"] for row in report["rows"] if row["problem"]]


def _vllm_release() -> str:
    return version("vllm")


def _release_requires() -> list[str]:
    """What compat.toml's row adds beside vLLM for the workspace's release (README)."""
    releases = tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
    return list(releases[_vllm_release()].get("requires", []))


def _is_cpu_build(torch_version: str) -> bool:
    """torch's CPU build (``+cpu``), next to which the registry's torchvision breaks."""
    return torch_version.endswith("+cpu")


def _torch_requirement() -> str:
    """The torch the workspace runs (CPU build from the find-links folder)."""
    return f"torch=={version('torch')}"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every distribution's wheel, the meta-package built for the workspace's vLLM."""
    out = tmp_path_factory.mktemp("wheelhouse")
    env = {**os.environ, "VLLM_NPU_BUILD_FOR_VLLM": _vllm_release()}
    _run([_uv(), "build", "--all-packages", "--wheel", "-q", "-o", str(out)],
         timeout=RUN_TIMEOUT_S, cwd=ROOT, env=env)
    _run([_uv(), "build", "--wheel", "-q", "-o", str(out), str(RESEARCHER_PROJECT)],
         timeout=RUN_TIMEOUT_S, cwd=ROOT)
    return out



@contextmanager
def clean_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Venv]:
    """A new venv (this Python), deleted afterwards: about 5 GB once vLLM is in."""
    path = tmp_path_factory.mktemp("venv")
    _run([_uv(), "venv", "-q", "--python", sys.executable, str(path)], timeout=120)
    (path / "excludes.txt").write_text("\n".join(TORCH_COMPANIONS) + "\n")
    try:
        yield Venv(path, (str(wheelhouse), _torch_wheel_folder()))
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vllm_npu.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "llama", TinyModelSpec("llama"))


GENERATE = textwrap.dedent("""
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512,
                  max_num_seqs=8, seed=0, kv_cache_memory_bytes=64 << 20)
        params = SamplingParams(temperature=0.0, max_tokens=int(sys.argv[2]), ignore_eos=True)
        prompts = json.loads(sys.argv[3])
        outputs = llm.generate(prompts, params, use_tqdm=False)
        print("TOKENS=" + json.dumps([list(o.outputs[0].token_ids) for o in outputs]))
        print("PROMPTS=" + json.dumps([list(o.prompt_token_ids) for o in outputs]))
""")


def _generate(
    venv: Venv, model: Path, prompts: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    script = venv.path / "generate.py"
    script.write_text(GENERATE)
    return venv.run(str(venv.python), str(script), str(model), str(MAX_TOKENS),
                    json.dumps(prompts), **env)


def _parsed(result: subprocess.CompletedProcess[str], key: str) -> list[list[int]]:
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{key}="))
    return json.loads(line.partition("=")[2])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(venv: Venv, model: Path) -> Iterator[str]:
    port = _free_port()
    log = venv.path / "serve.log"
    command = [
        venv.bin("vllm"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
        "--served-model-name", "tiny", "--seed", "0",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=venv.path,
            env={**_clean_environ(), **HOST_ENV}, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vllm serve exited:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"vllm serve not healthy:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_vllm_npu_from_the_wheelhouse(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, model: Path
) -> None:
    """A user's ``pip install vllm-npu``: with CPU torch the torchvision trap and its
    fix; with the registry's torch (its companions match it) no false alarm; then
    serving."""
    import openai

    with clean_venv(tmp_path_factory, wheelhouse) as venv:
        venv.pip("install", "vllm-npu", _torch_requirement(), excludes=False)
        assert "torchvision" in venv.installed(), "the registry no longer pulls torchvision"

        code, report = venv.doctor()
        if _is_cpu_build(version("torch")):
            trap = [p for p in _problems(report) if p.startswith("torchvision ")]
            assert code == 1 and trap, _problems(report)
            assert "pip uninstall -y torchvision" in trap[0]
            broken = venv.run(
                str(venv.python), "-c", "import vllm.entrypoints.openai.api_server"
            )
            assert broken.returncode != 0 and "torchvision" in broken.stderr, (
                broken.stderr[-2000:]
            )
            # The README's fix on an x86 host with CPU torch.
            venv.pip(
                "uninstall", *(name for name in TORCH_COMPANIONS if name in venv.installed())
            )
            code, report = venv.doctor()
        assert (code, _problems(report)) == (0, [])

        with _serving(venv, model) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                   timeout=120)
            response = client.completions.create(
                model="tiny", prompt=DEFAULT_PROMPTS[0], max_tokens=MAX_TOKENS,
                temperature=0.0, extra_body={"return_token_ids": True, "ignore_eos": True},
            )
        choice = response.choices[0]
        prompt_ids = list(choice.prompt_token_ids)  # type: ignore[attr-defined]
        expected = hf_greedy_generate_ids(model, [prompt_ids], MAX_TOKENS)[0]
        assert list(choice.token_ids) == expected  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def components_venv(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path
) -> Iterator[Venv]:
    """vLLM and CPU torch, without torch's companions, with what the release's row
    requires (README), and none of ours yet."""
    with clean_venv(tmp_path_factory, wheelhouse) as venv:
        venv.pip("install", f"vllm=={_vllm_release()}", _torch_requirement(), *_release_requires())
        yield venv


def test_selective_install_with_a_researchers_backend(components_venv: Venv, model: Path) -> None:
    venv = components_venv
    venv.uninstall_ours()
    venv.pip("install", "vllm-npu-platform", "vllm-npu-worker", "vllm-npu-comm",
             "vllm-npu-patches")
    prompts = list(DEFAULT_PROMPTS[:4])

    missing = _generate(venv, model, prompts)
    assert missing.returncode != 0
    assert "No attention backend is installed: install vllm-npu-attention" in missing.stderr

    venv.pip("install", "researcher-attention")
    selected = {"VLLM_NPU_ATTENTION_BACKEND": "researcher"}
    code, report = venv.doctor(**selected)
    assert (code, _problems(report)) == (0, [])
    rows = {(row["section"], row["item"]): row["value"] for row in report["rows"]}
    assert rows[("components", "attention backend")] == (
        "researcher = researcher_attention:ResearcherBackend (from researcher-attention 1.0)"
    )
    assert rows[("distributions", "vllm-npu-attention")].startswith("not installed (not needed")

    result = _generate(venv, model, prompts, **selected)
    generated, prompt_ids = _parsed(result, "TOKENS"), _parsed(result, "PROMPTS")
    assert generated == hf_greedy_generate_ids(model, prompt_ids, MAX_TOKENS)


LOAD_ENTRY_POINTS = textwrap.dedent("""
    import sys
    from importlib.metadata import distribution
    for entry_point in distribution(sys.argv[1]).entry_points:
        entry_point.load()
        print("loaded", entry_point.group, entry_point.name)
""")
PROBE = textwrap.dedent("""
    import sys
    from vllm_npu.platform import discovery
    for kind in (discovery.WORKER, discovery.ATTENTION_BACKEND, discovery.COMMUNICATOR):
        try:
            discovery.find(kind)
        except discovery.ComponentError as error:
            print(error)
""")


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_installs_alone(components_venv: Venv, component: str) -> None:
    venv = components_venv
    venv.uninstall_ours()
    venv.pip("install", component)
    installed = venv.installed()
    ours = {name for name in (*COMPONENTS, "vllm-npu") if name in installed}
    assert ours == {component, "vllm-npu-platform"}, ours

    loaded = venv.run(str(venv.python), "-c", LOAD_ENTRY_POINTS, component)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "loaded " in loaded.stdout, f"{component} registers no entry point"

    probe = venv.run(str(venv.python), "-c", PROBE)
    assert probe.returncode == 0, probe.stderr[-3000:]
    for kind, provider in (
        ("worker", "vllm-npu-worker"),
        ("attention backend", "vllm-npu-attention"),
        ("communicator", "vllm-npu-comm"),
    ):
        message = f"No {kind} is installed: install {provider} (pip install {provider})"
        assert (message in probe.stdout) == (provider != component), probe.stdout

    code, report = venv.doctor()
    expected = {f"missing: pip install {name}" for name in COMPONENTS if name not in ours}
    assert code == 1 and expected <= set(_problems(report)), _problems(report)
