"""The crash loop in its CI mode: 20 SIGKILLs under load, nothing acknowledged is lost."""

import os
import re
import subprocess
import sys
from pathlib import Path

from relayq_fixture import build_dir

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_RE = re.compile(r"^crashloop: kills=(\d+) survived=(\d+) .*acknowledged=(\d+) "
                        r"delivered=(\d+) lost=(\d+) duplicates=(\d+) "
                        r"\(reply_lost_window=(\d+) unexplained=(\d+)\) corrupt=(\d+) "
                        r"phantom=(\d+)", re.MULTILINE)


def test_crashloop_loses_nothing(tmp_path):
    env = dict(os.environ, RELAYQ_BUILD=str(build_dir()))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests/stress/crashloop.py"), "--kills", "20", "--ci",
         "--workdir", str(tmp_path / "crashloop")],
        capture_output=True, text=True, timeout=240, env=env)
    output = result.stdout + result.stderr
    match = SUMMARY_RE.search(result.stdout)
    assert match is not None, f"no summary line in the output:\n{output[-4000:]}"

    kills, survived, acked, delivered, lost, duplicates, explained, unexplained, corrupt, \
        phantom = map(int, match.groups())
    assert kills == 20, output[-4000:]
    assert survived == 20, output[-4000:]
    assert acked > 0, output[-4000:]
    assert lost == 0, output[-4000:]
    assert delivered == acked, output[-4000:]
    assert unexplained == 0, output[-4000:]
    assert duplicates == explained, output[-4000:]
    assert corrupt == 0, output[-4000:]
    assert phantom == 0, output[-4000:]
    assert result.returncode == 0, output[-4000:]
