"""Hostile inputs to `rocket serve` and `rocket eval --policy`: one error line, exit 2, before any model is built."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.harness import Case, check

CASES = [
    Case("serve-port-out-of-range", "--port 70000 is out of range", ("serve", "--port", "70000")),
    Case("serve-negative-port", "out of range", ("serve", "--port", "-1")),
    Case("serve-unknown-device", "unknown --device 'tpu:9'", ("serve", "--device", "tpu:9")),
    Case("serve-missing-cuda", "--device cuda:9", ("serve", "--device", "cuda:9")),
    Case("serve-public-without-token", "refusing to listen on 0.0.0.0 without a token", ("serve", "--host", "0.0.0.0")),
    Case("serve-short-token", "at least 16", ("serve", "--token", "secret")),
    Case("serve-short-token-env", "at least 16", ("serve",), env={"ROCKET_SERVE_TOKEN": "secret"}),
    Case("eval-nothing-listening", "cannot connect to the policy server at ws://127.0.0.1:1",
         ("eval", "--benchmark", "toy", "--policy", "ws://127.0.0.1:1")),
    Case("eval-port-out-of-range", "bad policy url", ("eval", "--benchmark", "toy", "--policy", "ws://127.0.0.1:70000")),
    Case("eval-url-without-host", "bad policy url", ("eval", "--benchmark", "toy", "--policy", "ws://:8000")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_serve_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
