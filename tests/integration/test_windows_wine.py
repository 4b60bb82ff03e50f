"""
relayqd.exe and relayq.exe, cross-built for Windows, under Wine: a message
submitted with swaks on Linux is relayed to the fake smart host with
STARTTLS and AUTH, and relayq.exe reports it as sent. Also covers the control
pipe, the pickup directory, password_command through cmd.exe, binary
standard input and the Ctrl+C shutdown.

The tests are skipped unless RELAYQ_WIN_BUILD names a Windows build
directory (packaging/windows/build.sh sets it when it runs this file).
Wine runs in $WINEPREFIX, by default the prefix that build.sh keeps in its
cache.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from relayq_fixture import DEFAULT_TIMEOUTS, free_port

SENDER = "app@example.com"
RECIPIENT = "customer@example.net"
USERNAME = "relayq"
PASSWORD = "pw-wine-7Hq2-relayq"

WIN_BUILD = os.environ.get("RELAYQ_WIN_BUILD")
WINE = shutil.which("wine")


def win_binary(name: str) -> Path:
    return Path(WIN_BUILD or "") / name


def skip_reason():
    if not WIN_BUILD:
        return ("RELAYQ_WIN_BUILD is not set; packaging/windows/build.sh sets it "
                "to the cross build directory when it runs this test")
    for name in ("daemon/relayqd.exe", "cli/relayq.exe"):
        if not win_binary(name).exists():
            return f"{win_binary(name)} not found; run packaging/windows/build.sh"
    if WINE is None:
        return "wine is not installed"
    return None


pytestmark = pytest.mark.skipif(skip_reason() is not None,
                                reason=skip_reason() or "")


def win_path(path) -> str:
    """The Windows name of a Linux path: Wine maps drive Z: to /."""
    return "Z:" + str(Path(path).resolve())


def run_wine(*args, input=None, timeout=120) -> subprocess.CompletedProcess:
    """
    Run wine ARGS and return its output as bytes. The output goes through
    files, not pipes: the first Wine command of a session starts Wine's
    services, which inherit its handles and would keep a pipe open.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([WINE, *args], input=input, stdout=out, stderr=err,
                              timeout=timeout, env=wine_env())
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           out.read(), err.read())


def wine_env() -> dict:
    env = dict(os.environ)
    if "WINEPREFIX" not in env:
        cache = env.get("RELAYQ_WIN_CACHE") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "relayq-win")
        env["WINEPREFIX"] = os.path.join(cache, "wineprefix")
    env.setdefault("WINEDEBUG", "-all")
    env.setdefault("WINEDLLOVERRIDES", "mscoree,mshtml=")
    return env


class WineRelayq:
    """relayqd.exe under Wine with its own config, queue, port and control pipe."""

    def __init__(self, directory: Path, smarthost: dict, **sections):
        self.dir = directory
        self.port = free_port()
        self.config_path = directory / "relayq.yaml"
        self.log_path = directory / "relayqd.log"
        self.proc = None
        self.config = {
            "queue": {"path": win_path(directory / "queue.db")},
            "listen": [f"127.0.0.1:{self.port}"],
            # A pipe name of its own: the default \\.\pipe\relayq is one per Wine prefix.
            "control": {"socket": "\\\\.\\pipe\\relayq-test-" + secrets.token_hex(6)},
            "smarthost": {"timeouts": dict(DEFAULT_TIMEOUTS), **smarthost},
            "retry": {"initial": "1s", "max": "2s", "max_age": "1h"},
            "log": {"level": "debug"},
        }
        self.config.update(sections)

    def start(self, timeout=60.0):
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [WINE, str(win_binary("daemon/relayqd.exe")), "-f", "-c",
                 win_path(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir,
                env=wine_env())
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"relayqd.exe exited with status {self.proc.returncode} "
                            f"before listening\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"relayqd.exe is not listening on port {self.port} after "
                            f"{timeout}s\n{self.log_text()}")
            time.sleep(0.1)

    def stop(self, timeout=30.0) -> int:
        """Ctrl+C: Wine turns SIGINT into a console CTRL_C_EVENT. Returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"relayqd.exe did not exit within {timeout}s of Ctrl+C\n"
                        f"{self.log_text()}")

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def cli(self, *args, input=None, check=True) -> subprocess.CompletedProcess:
        result = run_wine(str(win_binary("cli/relayq.exe")), "-c",
                          win_path(self.config_path), *args, input=input)
        if check and result.returncode != 0:
            pytest.fail(f"relayq.exe {' '.join(args)} exited with {result.returncode}\n"
                        f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}")
        return result

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_for_state(self, msg_id, state, timeout=60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            details = self.cli_json("show", str(msg_id))
            if details["state"] == state:
                return details
            if time.monotonic() > deadline:
                pytest.fail(f"message {msg_id} is {details['state']}, not {state}, "
                            f"after {timeout}s\n{self.log_text()}")
            time.sleep(0.5)


@pytest.fixture
def wine_relayq(tmp_path):
    started = []

    def make(smarthost, **sections):
        daemon = WineRelayq(tmp_path / f"relayqd-{len(started)}", smarthost, **sections)
        daemon.dir.mkdir()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            status = daemon.stop()
            assert status == 0, f"relayqd.exe exited with {status}\n{daemon.log_text()}"
            assert "event=stopped" in daemon.log_text()


def windows_smarthost_config(srv) -> dict:
    """srv.smarthost_config() with Linux paths turned into Windows paths."""
    config = srv.smarthost_config()
    for key in ("ca_file", "password_file"):
        if key in config:
            config[key] = win_path(config[key])
    return config


def message_bytes(subject: str, body: bytes) -> bytes:
    return (f"From: Payments <{SENDER}>\r\n"
            f"To: Customer <{RECIPIENT}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n"
            f"\r\n").encode() + body


def swaks(port: int, data_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test",
         "--from", SENDER, "--to", RECIPIENT, "--data", f"@{data_file}",
         "--timeout", "30"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def queue_id(swaks_output: str) -> int:
    for line in swaks_output.splitlines():
        if "queued as" in line:
            return int(line.rsplit("queued as", 1)[1].strip())
    pytest.fail(f"no queue id in the swaks output:\n{swaks_output}")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_wine_relay_starttls_auth(wine_relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USERNAME, PASSWORD))
    daemon = wine_relayq(windows_smarthost_config(srv)).start()
    original = message_bytes("wine relay", b"line one\r\n.leading dot\r\nlast line\r\n")
    data_file = tmp_path / "message.eml"
    data_file.write_bytes(original)

    result = swaks(daemon.port, data_file)
    assert result.returncode == 0, result.stdout + result.stderr
    msg_id = queue_id(result.stdout)
    [message] = srv.wait_for_messages(1, timeout=60)

    assert message.mail_from == SENDER
    assert message.rcpt_tos == [RECIPIENT]
    assert message.tls
    assert message.auth_user == USERNAME
    # swaks ends the data with an empty line after the file's last line.
    assert message.content.endswith(original + b"\r\n")
    assert message.content.startswith(b"Received: ")

    details = daemon.wait_for_state(msg_id, "sent")
    assert details["recipients"][0]["state"] == "sent"
    assert details["attempts"][-1]["code"] == 250
    listed = daemon.cli_json("list", "--state", "all")
    assert [(m["id"], m["state"]) for m in listed["messages"]] == [(msg_id, "sent")]


def test_wine_retry_wakes_daemon_over_pipe(wine_relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["data_end"] = ["451 4.3.0 try later"]
    daemon = wine_relayq(windows_smarthost_config(srv),
                         retry={"initial": "1h", "max": "1h", "max_age": "1d"}).start()

    daemon.cli("send", "--from", SENDER, "--to", RECIPIENT, "--subject", "pipe",
               "-", input=b"retried after a wake over the control pipe\r\n")
    srv.wait_for(lambda: len(srv.transactions) == 1, timeout=60)
    [listed] = daemon.cli_json("list")["messages"]
    details = daemon.wait_for_state(listed["id"], "deferred")
    assert details["attempts"][0]["code"] == 451

    daemon.cli("retry", str(listed["id"]))
    daemon.wait_for_state(listed["id"], "sent", timeout=30)
    assert "event=control request=wake" in daemon.log_text()
    assert len(srv.messages) == 1


def test_wine_pickup_directory(wine_relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost()
    pickup = tmp_path / "pickup"
    daemon = wine_relayq(windows_smarthost_config(srv),
                         pickup={"path": win_path(pickup)}).start()
    original = message_bytes("wine pickup", b"from the pickup directory\r\n")
    (pickup / "one.tmp").write_bytes(original)
    (pickup / "one.tmp").rename(pickup / "one.eml")

    [message] = srv.wait_for_messages(1, timeout=60)
    assert message.rcpt_tos == [RECIPIENT]
    assert message.content.endswith(original)
    deadline = time.monotonic() + 30
    while (pickup / "one.eml").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (pickup / "one.eml").exists()


def test_wine_password_command(wine_relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USERNAME, PASSWORD))
    config = windows_smarthost_config(srv)
    del config["password_file"]
    config["password_command"] = f"echo {PASSWORD}"
    daemon = wine_relayq(config).start()

    daemon.cli("send", "--from", SENDER, "--to", RECIPIENT, "--subject", "command",
               "-", input=b"password from cmd.exe\r\n")
    [message] = srv.wait_for_messages(1, timeout=60)
    assert message.auth_user == USERNAME
    assert [a.password for a in srv.auth_attempts] == [PASSWORD]
    assert "event=password_command_done" in daemon.log_text()


def test_wine_sendmail_stdin_is_binary(wine_relayq, fake_smarthost):
    srv = fake_smarthost()
    daemon = wine_relayq(windows_smarthost_config(srv)).start()
    # In text mode the C runtime would end the input at Ctrl+Z (0x1a).
    body = b"before ctrl-z \x1a after it\r\nsecond line\r\n"
    original = message_bytes("wine stdin", body)

    daemon.cli("sendmail", "-t", "-i", input=original)
    [message] = srv.wait_for_messages(1, timeout=60)
    assert message.content.endswith(body)



def test_wine_diagnose(wine_relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USERNAME, PASSWORD))
    daemon = wine_relayq(windows_smarthost_config(srv))
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))

    result = daemon.cli("diagnose", "--json", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    steps = {step["step"]: step["result"] for step in report["endpoints"][0]["steps"]}
    assert steps.get("connect") == "ok", report
    assert steps.get("tls") == "ok", report
    assert steps.get("auth") == "ok", report

    # A port where nothing listens: the connect step fails with a refusal.
    daemon.config["smarthost"]["port"] = free_port()
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    result = daemon.cli("diagnose", "--json", check=False)
    assert result.returncode == 69, result.stdout + result.stderr
    report = json.loads(result.stdout)
    [failed] = [step for step in report["endpoints"][0]["steps"]
                if step["result"] == "failed"]
    assert failed["step"] == "connect", report


def wine_run(*args) -> subprocess.CompletedProcess:
    """run_wine() with the output as text."""
    result = run_wine(*args)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def wait_port(port: int, listening: bool, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                up = True
        except OSError:
            up = False
        if up == listening:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"port {port} is {'not ' if listening else ''}listening "
                        f"after {timeout}s")
        time.sleep(0.2)


def service_log_path() -> Path:
    """The service's log file in the Wine prefix, C:\\ProgramData\\relayq\\log\\relayqd.log."""
    return (Path(wine_env()["WINEPREFIX"]) / "drive_c" / "ProgramData" / "relayq" /
            "log" / "relayqd.log")


def service_log_size() -> int:
    path = service_log_path()
    return path.stat().st_size if path.exists() else 0


def service_log_since(offset: int) -> str:
    """The service's log from byte OFFSET on: earlier runs in the prefix wrote the rest."""
    with open(service_log_path(), "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def programdata_dir() -> Path:
    """C:\\ProgramData\\relayq in the Wine prefix."""
    return Path(wine_env()["WINEPREFIX"]) / "drive_c" / "ProgramData" / "relayq"


def end_wine_session(keeper, programdata_existed: bool):
    """
    Let KEEPER exit, which stops the services, then remove the
    C:\\ProgramData\\relayq that a service test created (relayqd install and
    the service log create it), so that the installer test finds the
    prefix as a fresh machine would.
    """
    keeper.stdin.close()
    try:
        keeper.wait(30)
    except subprocess.TimeoutExpired:
        keeper.kill()
        keeper.wait()
    if not programdata_existed:
        shutil.rmtree(programdata_dir(), ignore_errors=True)


@pytest.fixture
def wine_session():
    """
    A Wine process that lives for the whole test. Wine stops its services
    (with SERVICE_CONTROL_SHUTDOWN) once no other Wine process is left.
    """
    existed = programdata_dir().exists()
    keeper = subprocess.Popen([WINE, "cmd.exe"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=wine_env())
    yield keeper
    end_wine_session(keeper, existed)


def service_state() -> str:
    """The STATE word of "sc query relayq", or "" when the service does not exist."""
    result = wine_run("sc", "query", "relayq")
    if result.returncode != 0:
        return ""
    for line in result.stdout.splitlines():
        if line.strip().startswith("STATE"):
            return line.split()[-1]
    pytest.fail(f"no STATE line in the output of sc query relayq:\n{result.stdout}")


def wait_service_state(state: str, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        current = service_state()
        if current == state:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the service relayq is {current or 'not installed'}, "
                        f"not {state or 'removed'}, after {timeout}s")
        time.sleep(0.5)


def stop_service(port=None):
    """net stop relayq, then wait until PORT is closed and the service is STOPPED."""
    stopped = wine_run("net", "stop", "relayq")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    if port is not None:
        wait_port(port, listening=False)
    # Wine's net stop can return while the service still reports STOP_PENDING.
    wait_service_state("STOPPED")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_wine_service_install_start_stop(wine_relayq, wine_session, fake_smarthost,
                                         tmp_path):
    srv = fake_smarthost()
    daemon = wine_relayq(windows_smarthost_config(srv))
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    relayqd = str(win_binary("daemon/relayqd.exe"))
    if wine_run("sc", "query", "relayq").returncode == 0:
        pytest.skip("a service named relayq is already installed in this Wine prefix")

    log_offset = service_log_size()
    installed = wine_run(relayqd, "install", "--config", win_path(daemon.config_path))
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # The binary path is quoted, and the config path is absolute.
        assert (f'"{win_path(win_binary("daemon/relayqd.exe")).replace("/", chr(92))}" '
                f'--service -c "{win_path(daemon.config_path).replace("/", chr(92))}"'
                in installed.stdout), installed.stdout

        started = wine_run("net", "start", "relayq")
        assert started.returncode == 0, started.stdout + started.stderr
        wait_port(daemon.port, listening=True)

        data_file = tmp_path / "service.eml"
        data_file.write_bytes(message_bytes("wine service", b"relayed by the service\r\n"))
        result = swaks(daemon.port, data_file)
        assert result.returncode == 0, result.stdout + result.stderr
        msg_id = queue_id(result.stdout)
        srv.wait_for_messages(1, timeout=60)
        daemon.wait_for_state(msg_id, "sent")

        # With the smart host down, a second message stays queued across
        # a stop of the service and goes out once it runs again.
        srv.stop()
        data_file.write_bytes(message_bytes("wine service queued", b"kept over a stop\r\n"))
        result = swaks(daemon.port, data_file)
        assert result.returncode == 0, result.stdout + result.stderr
        queued_id = queue_id(result.stdout)

        stop_service(daemon.port)
        assert daemon.cli_json("show", str(queued_id))["state"] in ("queued", "deferred")
        srv.start()
        started = wine_run("net", "start", "relayq")
        assert started.returncode == 0, started.stdout + started.stderr
        srv.wait_for_messages(2, timeout=60)
        daemon.wait_for_state(queued_id, "sent")
        assert b"kept over a stop" in srv.messages[-1].content

        stop_service(daemon.port)
        log = service_log_since(log_offset)
        assert log.count("event=started") == 2
        assert log.count("event=stopped") == 2
    finally:
        removed = wine_run(relayqd, "uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Removed the service relayq" in removed.stdout
    assert wine_run("sc", "query", "relayq").returncode != 0
