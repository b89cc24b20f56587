"""Running Node's test runner on vectors the Python side made, for the JS parity tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tap_count(output: str, key: str) -> int:
    match = re.search(rf"^# {key} (\d+)$", output, re.MULTILINE)
    assert match, f"Node's report has no '# {key}' line:\n{output}"
    return int(match.group(1))


def run_node_tests(test_file: Path, env_var: str, vectors: Path, *, min_passes: int) -> str:
    """Run ``node --test`` on ``test_file`` with the vectors' path in ``env_var``; fail the
    calling test on any failure, skip or todo, or when fewer than ``min_passes`` tests pass.
    Skips the calling test only when node is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node is not on PATH, so {test_file.name} cannot run")
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(test_file)],
        cwd=ROOT,
        env={**os.environ, env_var: str(vectors)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"Node's tests failed:\n{output}"
    assert tap_count(output, "fail") == 0, output
    assert tap_count(output, "skipped") == 0, f"Some Node tests were skipped:\n{output}"
    assert tap_count(output, "todo") == 0, f"Some Node tests are marked todo:\n{output}"
    assert tap_count(output, "pass") >= min_passes, f"Fewer Node tests ran than expected:\n{output}"
    return output
