"""Short libFuzzer runs of every parser target, so the fuzz build stays working."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed (scripts/install-deps installs it)")
def test_fuzz_targets_run_clean():
    result = subprocess.run([str(ROOT / "tests/fuzz/run"), "5"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for target in ("smtp_data", "smtp_reply", "smtp_command", "address", "message", "config",
                   "header"):
        assert f"fuzz: {target} stat::number_of_executed_units" in result.stdout, result.stdout
