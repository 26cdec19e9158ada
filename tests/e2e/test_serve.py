"""``vllm serve`` through the plugin on host, driven with the official OpenAI client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate_ids

MAX_TOKENS = 12
STARTUP_TIMEOUT_S = 300


@dataclass
class Server:
    model: Path
    client: openai.OpenAI
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-4000:]
            raise RuntimeError(f"vllm serve exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    tail = log.read_text()[-4000:]
    raise TimeoutError(f"vllm serve not healthy after {STARTUP_TIMEOUT_S}s:\n{tail}")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = tiny_model_dir(TinyModelSpec(arch="llama"))
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    command = [
        str(Path(sys.executable).with_name("vllm")), "serve", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
        "--served-model-name", "tiny", "--seed", "0",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=dict(os.environ),
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        yield Server(model, client, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _complete(client: openai.OpenAI, prompt: str, **kwargs) -> openai.types.Completion:
    return client.completions.create(
        model="tiny", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0.0,
        extra_body={"return_token_ids": True, "ignore_eos": True}, **kwargs,
    )


def _expected(server: Server, prompt_token_ids: list[list[int]]) -> list[list[int]]:
    return hf_greedy_generate_ids(server.model, prompt_token_ids, MAX_TOKENS)


def test_completion_matches_transformers(server: Server) -> None:
    response = _complete(server.client, DEFAULT_PROMPTS[3])
    choice = response.choices[0]
    prompt_ids = list(response.choices[0].prompt_token_ids)  # type: ignore[attr-defined]
    assert list(choice.token_ids) == _expected(server, [prompt_ids])[0]  # type: ignore[attr-defined]
    assert response.usage is not None and response.usage.completion_tokens == MAX_TOKENS


def test_chat_completion_matches_transformers(server: Server) -> None:
    from transformers import AutoTokenizer

    messages = [{"role": "user", "content": "Tell me about the sea."}]
    response = server.client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=MAX_TOKENS, temperature=0.0,
        extra_body={"return_token_ids": True, "ignore_eos": True},
    )
    tokenizer = AutoTokenizer.from_pretrained(server.model)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = list(response.prompt_token_ids)  # type: ignore[attr-defined]
    assert prompt_ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    choice = response.choices[0]
    assert list(choice.token_ids) == _expected(server, [prompt_ids])[0]  # type: ignore[attr-defined]


def test_streamed_completion_reassembles(server: Server) -> None:
    whole = _complete(server.client, DEFAULT_PROMPTS[5]).choices[0].text
    pieces = [
        chunk.choices[0].text
        for chunk in _complete(server.client, DEFAULT_PROMPTS[5], stream=True)
        if chunk.choices
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == whole


def test_concurrent_clients(server: Server) -> None:
    prompts = list(DEFAULT_PROMPTS[:8])
    reference = {p: _complete(server.client, p) for p in prompts}
    expected = {p: list(r.choices[0].token_ids) for p, r in reference.items()}  # type: ignore[attr-defined]
    assert list(expected.values()) == _expected(
        server, [list(r.choices[0].prompt_token_ids) for r in reference.values()]  # type: ignore[attr-defined]
    )

    def client_session(client_index: int) -> list[bool]:
        client = openai.OpenAI(base_url=server.client.base_url, api_key="unused",
                               max_retries=0, timeout=120)
        results = []
        for request_index in range(8):
            prompt = prompts[(client_index + request_index) % len(prompts)]
            choice = _complete(client, prompt).choices[0]
            results.append(list(choice.token_ids) == expected[prompt])  # type: ignore[attr-defined]
        return results

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = [ok for result in pool.map(client_session, range(16)) for ok in result]
    assert len(outcomes) == 128 and all(outcomes)


def test_invalid_request_gets_400_and_server_keeps_serving(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        server.client.completions.create(
            model="tiny", prompt="Hello", max_tokens=8, temperature=-1.0
        )
    assert raised.value.status_code == 400
    assert "temperature" in str(raised.value)
    assert server.process.poll() is None
    assert _complete(server.client, "Hello").choices[0].text
