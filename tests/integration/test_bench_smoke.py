"""Run bench/run --smoke so that the benchmark script keeps working.

The smoke mode measures every workload at a tiny size, and its figures
mean nothing. These tests check only that the run succeeds and that the
report has its tables.
"""

import os
import subprocess
from pathlib import Path

import pytest

from relayq_fixture import REPO, build_dir

SMOKE_TIMEOUT = 300

REPORT_SECTIONS = (
    "## Results",
    "### Intake",
    "### Relay drain",
    "### Latency",
    "### Memory",
    "### Scale",
    "### Targets",
)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    """Run the smoke benchmark once for this module and return its report."""
    tmp_path = tmp_path_factory.mktemp("bench")
    for tool in ("/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"):
        if not os.access(tool, os.X_OK):
            pytest.skip(f"{tool} is missing; run scripts/install-deps")
    output = tmp_path / "results.md"
    # No --workdir under tmp_path: pytest makes its directories 0700, and
    # smtp-sink and Postfix's daemons run as other users.
    result = subprocess.run(
        ["/usr/bin/python3", str(REPO / "bench" / "run"), "--smoke",
         "--build", str(build_dir()), "--output", str(output)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        errors="replace", timeout=SMOKE_TIMEOUT)
    assert result.returncode == 0, (
        f"bench/run --smoke exited {result.returncode}\n"
        f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-2000:]}")
    return output.read_text()


def test_bench_smoke_writes_report(smoke_report):
    for section in REPORT_SECTIONS:
        assert section in smoke_report, f"section {section!r} missing:\n{smoke_report}"


def test_bench_smoke_intake_row(smoke_report):
    rows = [line for line in smoke_report.splitlines() if line.startswith("| 10 | 4 KiB |")]
    assert rows, f"no intake row for 10 sessions and 4 KiB:\n{smoke_report}"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    # sink direct, then relayqd with the smart host down, up, and relayed.
    for index in (3, 4, 5, 6):
        assert cells[index] != "n/a", f"intake cell {index} not measured: {rows[0]}"


def test_bench_smoke_targets_table(smoke_report):
    targets = smoke_report.split("### Targets", 1)[1]
    assert "| target | measured | goal | met |" in targets
    assert "latency p50 submit-to-delivered" in targets
