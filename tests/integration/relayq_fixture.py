"""
The relayq fixture: start the real relayqd with a private config, queue
and port, drive the relayq CLI against it, and check at teardown that it
did not die by a signal the test never sent (a crash).

Binaries come from $RELAYQ_BUILD (default <repo>/build): daemon/relayqd
and cli/relayq.
"""

import copy
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

STATES = ("queued", "deferred", "sending", "held", "sent", "uncertain", "failed")

# Short client timeouts, so that fault tests finish in seconds.
DEFAULT_TIMEOUTS = {
    "connect": "2s",
    "greeting": "5s",
    "command": "5s",
    "mail": "5s",
    "rcpt": "5s",
    "data_init": "5s",
    "data_block": "5s",
    "data_end": "10s",
}

LOG_TAIL_LINES = 80


def build_dir() -> Path:
    return Path(os.environ.get("RELAYQ_BUILD", REPO / "build"))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the kernel reports as unused at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deep_merge(base: dict, override: dict) -> dict:
    """Merge OVERRIDE into a copy of BASE: dicts recursively, other values replaced, None deletes."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_queue_id(reply_text: str) -> int:
    """The integer id from relayqd's "2.0.0 Ok: queued as ID" DATA reply."""
    match = re.search(r"queued as (\d+)", reply_text)
    if match is None:
        pytest.fail(f"no queue id in the DATA reply {reply_text!r}")
    return int(match.group(1))


class RelayqDaemon:
    """One relayqd instance with its own directory, config, queue and SMTP port."""

    def __init__(self, directory: Path, **sections):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.smtp_port = free_port()
        self.config_path = self.dir / "relayq.yaml"
        self.log_path = self.dir / "relayqd.log"
        self.relayqd_path = build_dir() / "daemon" / "relayqd"
        self.relayq_path = build_dir() / "cli" / "relayq"

        defaults = {
            "queue": {"path": str(self.dir / "queue.db")},
            "listen": [f"127.0.0.1:{self.smtp_port}"],
            "smarthost": {"timeouts": dict(DEFAULT_TIMEOUTS)},
            "retry": {"initial": "1s", "max": "2s", "max_age": "1h"},
            "log": {"level": "debug"},
        }
        self.config = deep_merge(defaults, sections)

        self.proc = None
        # Every process started, with the signals this fixture sent it.
        self.history = []

    def __repr__(self):
        return f"<RelayqDaemon {self.dir} port={self.smtp_port}>"

    # Process control.

    def write_config(self):
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self, wait=True):
        """Start relayqd -f. With WAIT, return once the SMTP port accepts connections."""
        if self.running():
            pytest.fail(f"{self!r} is already running")
        if not self.relayqd_path.exists():
            pytest.fail(f"{self.relayqd_path} not found: build with "
                        f"`ninja -C {build_dir()}` or set RELAYQ_BUILD")
        self.write_config()

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.relayqd_path), "-f", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir)
        self.history.append((self.proc, set()))
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"relayqd exited with status {self.proc.returncode} "
                            f"before listening on port {self.smtp_port}\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"relayqd is not listening on port {self.smtp_port} "
                            f"after {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum):
        """Send SIGNUM to the running daemon and remember that it was sent."""
        self.history[-1][1].add(signum)
        self.proc.send_signal(signum)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, and require exit status 0."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"relayqd did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
        assert self.proc.returncode == 0, (
            f"relayqd exited with status {self.proc.returncode} after SIGTERM\n{self.log_tail()}")

    def kill(self):
        """SIGKILL and wait: a crash or power loss as far as the queue can tell."""
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self, wait=True):
        """Start again with the same config, port and queue (after stop() or kill())."""
        if self.running():
            self.stop()
        return self.start(wait=wait)

    def teardown(self) -> list:
        """Stop a running daemon. Returns one line per process that died by a signal the fixture never sent."""
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()

        crashes = []
        for proc, sent in self.history:
            status = proc.poll()
            if status is not None and status < 0 and -status not in sent:
                name = signal.Signals(-status).name
                crashes.append(f"relayqd pid {proc.pid} ({self.dir.name}) died by {name}")
        return crashes

    # Logs.

    def log_text(self) -> str:
        """Everything relayqd wrote to stderr so far, over all starts."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines=LOG_TAIL_LINES) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    # The CLI.

    def cli(self, *args, check=False, input=None, timeout=60) -> subprocess.CompletedProcess:
        """Run relayq -c CONFIG ARGS. With CHECK, require exit status 0."""
        argv = [str(self.relayq_path), "-c", str(self.config_path), *map(str, args)]
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                errors="replace", timeout=timeout, cwd=self.dir)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited with status {result.returncode}\n"
                        f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def cli_json(self, *args):
        """Run relayq ARGS --json, require status 0 and return the parsed output."""
        if "--json" not in args:
            args = (*args, "--json")
        result = self.cli(*args)
        assert result.returncode == 0, (
            f"relayq {' '.join(map(str, args))} exited with status {result.returncode}\n"
            f"stderr: {result.stderr}")
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as error:
            pytest.fail(f"relayq {' '.join(map(str, args))} printed invalid JSON ({error}):\n"
                        f"{result.stdout}")

    def show(self, msg_id) -> dict:
        return self.cli_json("show", msg_id)

    def wait_for_state(self, msg_id, state, timeout=15.0) -> dict:
        """Poll `show ID --json` until the state is STATE (or one of a tuple of states). Returns the show output."""
        expected_states = {state} if isinstance(state, str) else set(state)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            result = self.cli("show", msg_id, "--json")
            last = result
            if result.returncode == 0:
                details = json.loads(result.stdout)
                if details.get("state") in expected_states:
                    return details
            if time.monotonic() > deadline:
                pytest.fail(f"message {msg_id} did not reach state {sorted(expected_states)} within "
                            f"{timeout}s; last show (status {last.returncode}):\n"
                            f"{last.stdout}{last.stderr}\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_for(self, predicate, timeout=15.0, interval=0.05, message=""):
        """Poll PREDICATE() until it returns a true value, which is returned."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for "
                            f"{message or predicate}\n{self.log_tail()}")
            time.sleep(interval)

    # SMTP submission.

    def send(self, sender, recipients, data_bytes, timeout=30) -> int:
        """
        Submit one message over SMTP and return its queue id. DATA_BYTES go
        out as given apart from dot-stuffing, so they should use CRLF.
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        if isinstance(data_bytes, str):
            data_bytes = data_bytes.encode("utf-8")

        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test",
                          timeout=timeout) as client:
            code, text = client.ehlo()
            assert code == 250, f"EHLO: {code} {text!r}"
            code, text = client.mail(sender)
            assert code == 250, f"MAIL FROM:<{sender}>: {code} {text!r}"
            for recipient in recipients:
                code, text = client.rcpt(recipient)
                assert code in (250, 251), f"RCPT TO:<{recipient}>: {code} {text!r}"
            code, text = client.data(data_bytes)
            assert code == 250, f"DATA: {code} {text!r}\n{self.log_tail()}"
        return parse_queue_id(text.decode("utf-8", "replace"))


class RelayqFactory:
    """relayq.daemon(**sections) creates a daemon. Its config file is written when it starts."""

    def __init__(self, tmp_path: Path, node):
        self.tmp_path = tmp_path
        self.node = node
        self.daemons = []
        node._relayq_daemons = self.daemons

    def daemon(self, **sections) -> RelayqDaemon:
        directory = self.tmp_path / f"relayq-{len(self.daemons) + 1}"
        daemon = RelayqDaemon(directory, **sections)
        self.daemons.append(daemon)
        return daemon

    def teardown(self) -> list:
        crashes = []
        for daemon in self.daemons:
            crashes += daemon.teardown()
        return crashes


@pytest.fixture
def relayq(request, tmp_path):
    factory = RelayqFactory(tmp_path, request.node)
    yield factory
    crashes = factory.teardown()
    if crashes:
        tails = "\n".join(d.log_tail() for d in factory.daemons)
        pytest.fail("; ".join(crashes) + "\n" + tails)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach each daemon's log tail to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when != "call":
        return
    for daemon in getattr(item, "_relayq_daemons", []):
        report.sections.append((f"relayqd log {daemon.dir.name}", daemon.log_tail()))
