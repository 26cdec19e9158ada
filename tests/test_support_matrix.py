"""docs/support_matrix.md is what the tests' ``support`` marks say (regenerated and
compared), and marks outside the vocabulary of vllm_npu.testing.support_marks fail."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_npu.platform.refusals import START_UP_REFUSALS
from vllm_npu.testing.support_marks import FEATURES, SupportMark, mark_problems

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "support_matrix.py"


def _script():
    spec = importlib.util.spec_from_file_location("support_matrix", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_support_matrix_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]


def test_every_refusal_is_of_a_known_feature() -> None:
    assert set(START_UP_REFUSALS) <= set(FEATURES)
    for message in START_UP_REFUSALS.values():
        assert message.startswith("vllm-npu: ") and "\n" not in message


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        (("flash_attention", "host"), {}, "unknown support feature 'flash_attention'"),
        (("tp", "cuda"), {}, "unknown support backend 'cuda'"),
        (("tp",), {}, "names no backend"),
        (("tp", "host"), {"refused": "yes"}, "takes only refused=True/False"),
        ((), {}, "without a feature"),
    ],
)
def test_a_mark_outside_the_vocabulary_is_a_problem(args, kwargs, problem) -> None:
    mark = pytest.mark.support(*args, **kwargs).mark
    assert any(problem in found for found in mark_problems("t.py::test", mark))


def test_a_mark_in_the_vocabulary_is_no_problem() -> None:
    mark = pytest.mark.support("tp", "host", "ascend", refused=True).mark
    assert mark_problems("t.py::test", mark) == []


def test_the_matrix_shows_each_cell_as_its_marks_say() -> None:
    matrix = _script()
    marks = [
        SupportMark("t.py::test_tp[a]", "tp", ("host",), False),
        SupportMark("t.py::test_tp[b]", "tp", ("host",), False),
        SupportMark("t.py::test_sleep", "sleep_mode", ("host", "ascend"), True),
    ]
    text = matrix.render(marks, {"sleep_mode": "vllm-npu: no sleep for {method!r} here."})
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert rows[FEATURES["tp"]] == (
        f"| {FEATURES['tp']} | tested: `t.py::test_tp[a]`<br>`t.py::test_tp[b]` | untested |"
    )
    refused = "refused: vllm-npu: no sleep for <method> here."
    assert rows[FEATURES["sleep_mode"]] == f"| {FEATURES['sleep_mode']} | {refused} | {refused} |"
    assert f"Cells: 1 tested, 2 refused, {2 * len(FEATURES) - 3} untested." in text


@pytest.mark.parametrize(
    ("marks", "problem"),
    [
        ([SupportMark("t.py::a", "sleep_mode", ("host",), True)], "has no refusal"),
        (
            [
                SupportMark("t.py::a", "tp", ("host",), False),
                SupportMark("t.py::b", "tp", ("host",), True),
            ],
            "marked both tested",
        ),
    ],
)
def test_contradictory_or_unexplained_marks_fail(marks, problem) -> None:
    refusals = {} if problem == "has no refusal" else {"tp": "vllm-npu: no."}
    with pytest.raises(SystemExit, match=problem):
        _script().render(marks, refusals)
