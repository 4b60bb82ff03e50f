"""
Security checks against the running relayqd: certificate verification by
default, a password that never leaks, owner-only files, bounded input,
slow clients, many connections and relayqd's own descriptor limit.
"""

import base64
import contextlib
import os
import resource
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

SENDER = "app@example.com"
RECIPIENT = "customer@example.net"


def message(subject: str, body: str = "hello\r\n") -> bytes:
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\n{body}").encode()


class RawSMTP:
    """A line-level SMTP client on a plain socket, for input smtplib refuses to send."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple:
        """Read one reply. Returns (code, text of all lines)."""
        lines = []
        while True:
            line = self.read_line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def command(self, line: bytes) -> tuple:
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_server(self, timeout: float) -> bool:
        """True when the server closes the connection within TIMEOUT seconds (pending input is dropped)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of PID, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def rlimit(which, soft):
    """Set the soft limit WHICH for this process (and so for children started meanwhile)."""
    old_soft, hard = resource.getrlimit(which)
    resource.setrlimit(which, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(which, (old_soft, hard))


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- TLS ---------------------------------------------------------------------


class SelfSignedCertificate:
    """A self-signed certificate for 127.0.0.1, in the shape FakeSmarthost expects."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_file = directory / "self-signed.pem"
        self.key_file = directory / "self-signed.key"
        self.ca_file = self.cert_file
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(self.key_file),
                        "-out", str(self.cert_file), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName = DNS:localhost, IP:127.0.0.1"],
                       check=True, capture_output=True)


def test_tls_verify_rejects_self_signed_host(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", certificates=SelfSignedCertificate(tmp_path / "pki"))
    config = srv.smarthost_config(ca_file=None)
    assert "tls_verify" not in config
    d = relayq.daemon(smarthost=config)
    d.start()
    msg_id = d.send(SENDER, [RECIPIENT], message("self-signed"))

    details = d.wait_for_state(msg_id, "deferred", timeout=30)
    assert "certificate" in (details["last_error"] or "").lower(), details
    assert srv.commands_starting("STARTTLS"), srv.summary()
    assert not srv.commands_starting("MAIL"), srv.summary()
    assert srv.messages == []


# --- the password --------------------------------------------------------------


def secret_forms(username: str, password: str) -> dict:
    """The password as it could leak: plain, and inside AUTH PLAIN or AUTH LOGIN."""
    plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return {
        "plain": password,
        "AUTH PLAIN": plain,
        "AUTH LOGIN": base64.b64encode(password.encode()).decode(),
    }


def find_secret(text: str, forms: dict) -> list:
    return [name for name, form in forms.items() if form in text]


def core_files(directory: Path) -> list:
    return [p for p in directory.iterdir() if p.name == "core" or p.name.startswith("core.")]


def test_password_never_leaks(relayq, fake_smarthost):
    username = "relayq-user"
    password = f"planted-{uuid.uuid4().hex}"
    forms = secret_forms(username, password)
    srv = fake_smarthost(tls="starttls", auth=(username, password))
    # The first AUTH fails, so the error paths log too.
    srv.auth_reply = ["535 5.7.8 Authentication credentials invalid"]
    d = relayq.daemon(smarthost=srv.smarthost_config())

    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    with rlimit(resource.RLIMIT_CORE, resource.RLIM_INFINITY):
        d.start()
    ids = [d.send(SENDER, [RECIPIENT], message(f"secret {i}")) for i in range(2)]
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent", timeout=30)
    assert any(a.reply.startswith("535") for a in srv.auth_attempts), srv.auth_attempts
    assert any(a.password == password and a.reply.startswith("235")
               for a in srv.auth_attempts), srv.auth_attempts

    outputs = {}
    commands = [("list",), ("list", "--json"), ("list", "--state", "all", "--json"),
                ("stats",), ("stats", "--json"), ("history",), ("history", "--json"),
                ("diagnose",), ("diagnose", "--json"), ("config", "check")]
    for msg_id in ids:
        commands += [("show", msg_id), ("show", msg_id, "--json"), ("show", msg_id, "--body")]
    for args in commands:
        result = d.cli(*args)
        outputs[" ".join(map(str, args))] = result.stdout + result.stderr
    assert "235" in outputs["diagnose"] or "auth" in outputs["diagnose"].lower(), \
        outputs["diagnose"]
    for name, text in outputs.items():
        assert find_secret(text, forms) == [], f"relayq {name} printed the password"

    # A crash must not leave the password in a core file either.
    d.signal(signal.SIGABRT)
    d.proc.wait(15)
    log = d.log_text()
    assert find_secret(log, forms) == [], "the relayqd log contains the password"
    if core_pattern.startswith("|") or "/" in core_pattern:
        pytest.skip(f"core files go to {core_pattern!r}, not to the working directory")
    for core in core_files(d.dir):
        data = core.read_bytes()
        leaked = [name for name, form in forms.items() if form.encode() in data]
        core.unlink()
        assert leaked == [], f"core file {core.name} contains the password ({leaked})"


# --- file permissions ----------------------------------------------------------


def test_files_are_owner_only(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(start=False)
    queue_dir = tmp_path / "new-queue-dir"
    d = relayq.daemon(queue={"path": str(queue_dir / "queue.db")},
                      control={"socket": str(queue_dir / "relayqd.sock")},
                      smarthost=srv.smarthost_config())
    with umask(0):
        d.start()
    d.send(SENDER, [RECIPIENT], message("modes"))

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(queue_dir) == 0o700, oct(mode(queue_dir))
    for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
        path = queue_dir / name
        if path.exists():
            assert mode(path) & 0o077 == 0, f"{name}: {oct(mode(path))}"
    socket_path = queue_dir / "relayqd.sock"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert mode(socket_path) & 0o077 == 0, oct(mode(socket_path))
    d.stop()


def test_readable_password_file_is_refused(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=("user", "secret-password"))
    d = relayq.daemon(smarthost=srv.smarthost_config())
    secret = Path(d.config["smarthost"]["password_file"])
    secret.chmod(0o644)
    d.start(wait=False)
    status = d.proc.wait(15)
    assert status == 78, d.log_tail()
    assert str(secret) in d.log_text()
    assert "secret-password" not in d.log_text()

    secret.chmod(0o600)
    d.start()
    d.stop()


# --- bounded input -------------------------------------------------------------


@pytest.fixture
def bounded_daemon(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"max_message_size": "100K"})
    d.start()
    return d


def start_session(d) -> RawSMTP:
    client = RawSMTP(d.smtp_port)
    assert client.reply()[0] == 220
    assert client.command(b"EHLO client.test")[0] == 250
    return client


def test_overlong_command_gets_500(bounded_daemon):
    client = start_session(bounded_daemon)
    code, text = client.command(b"NOOP " + b"x" * 5000)
    assert 500 <= code < 600, text
    assert client.command(b"NOOP")[0] == 250

    # 100 KB without a line end: one error, then the session goes on.
    client.send(b"y" * 100_000)
    client.send(b"\r\n")
    code, text = client.reply()
    assert 500 <= code < 600, text
    assert client.command(b"NOOP")[0] == 250
    client.close()


def test_overlong_addresses_get_500(bounded_daemon):
    client = start_session(bounded_daemon)
    code, text = client.command(b"MAIL FROM:<" + b"a" * 300 + b"@example.com>")
    assert 500 <= code < 600, text
    assert client.command(b"MAIL FROM:<app@example.com>")[0] == 250
    code, text = client.command(b"RCPT TO:<" + b"b" * 300 + b"@example.net>")
    assert 500 <= code < 600, text
    assert client.command(b"RCPT TO:<customer@example.net>")[0] == 250
    assert client.command(b"RSET")[0] == 250
    client.close()


def test_oversized_header_block_gets_552(bounded_daemon):
    client = start_session(bounded_daemon)
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"z" * 70) for i in range(3000))
    assert client.command(b"MAIL FROM:<app@example.com>")[0] == 250
    assert client.command(b"RCPT TO:<customer@example.net>")[0] == 250
    assert client.command(b"DATA")[0] == 354
    client.send(headers + b"\r\nbody\r\n.\r\n")
    code, text = client.reply()
    assert code == 552, text

    # One header line of 50 KB, under the size limit: stored, to be folded when relayed.
    assert client.command(b"MAIL FROM:<app@example.com>")[0] == 250
    assert client.command(b"RCPT TO:<customer@example.net>")[0] == 250
    assert client.command(b"DATA")[0] == 354
    client.send(b"Subject: " + b"s" * 50_000 + b"\r\n\r\nbody\r\n.\r\n")
    code, text = client.reply()
    assert code == 250, text

    assert client.command(b"NOOP")[0] == 250
    assert client.command(b"QUIT")[0] == 221
    client.close()
    listed = bounded_daemon.cli_json("list", "--state", "all")["messages"]
    assert len(listed) == 1, listed


def test_error_flood_closes_cleanly(bounded_daemon):
    client = start_session(bounded_daemon)
    codes = []
    with pytest.raises(ConnectionError):
        for _ in range(100):
            codes.append(client.command(b"BOGUS")[0])
    assert codes and codes[-1] == 421, codes
    assert all(500 <= c < 600 for c in codes[:-1]), codes
    client.close()
    assert bounded_daemon.send(SENDER, [RECIPIENT], message("after the flood")) > 0


# --- slow clients ----------------------------------------------------------------


def trickle(client: RawSMTP, data: bytes, stop: threading.Event, interval=1.0):
    """Send DATA one byte per INTERVAL until STOP is set or the server closes."""
    for byte in data:
        if stop.is_set():
            return
        try:
            client.send(bytes([byte]))
        except OSError:
            return
        time.sleep(interval)


def test_slow_client_is_cut_off(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"timeout": "3s", "data_timeout": "5s"})
    d.start()
    stop = threading.Event()
    threads = []
    try:
        # A command sent one byte per second never completes within smtpd.timeout.
        command_client = RawSMTP(d.smtp_port)
        assert command_client.reply()[0] == 220
        started = time.monotonic()
        thread = threading.Thread(target=trickle, args=(command_client, b"HELO " + b"a" * 60,
                                                        stop), daemon=True)
        thread.start()
        threads.append(thread)

        # The body sent one byte per second never completes within smtpd.data_timeout.
        data_client = start_session(d)
        assert data_client.command(b"MAIL FROM:<app@example.com>")[0] == 250
        assert data_client.command(b"RCPT TO:<customer@example.net>")[0] == 250
        assert data_client.command(b"DATA")[0] == 354
        data_started = time.monotonic()
        thread = threading.Thread(target=trickle, args=(data_client, b"Subject: slow\r\n" * 10,
                                                        stop), daemon=True)
        thread.start()
        threads.append(thread)

        # Meanwhile other clients are served at once.
        begin = time.monotonic()
        assert d.send(SENDER, [RECIPIENT], message("not held up")) > 0
        assert time.monotonic() - begin < 5

        assert command_client.closed_by_server(15), "the trickling command client was not cut off"
        command_elapsed = time.monotonic() - started
        assert data_client.closed_by_server(15), "the trickling DATA client was not cut off"
        data_elapsed = time.monotonic() - data_started
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)

    assert command_elapsed < 3 + 4, command_elapsed
    assert data_elapsed < 5 + 4, data_elapsed
    assert d.cli_json("list")["messages"] and len(d.cli_json("list")["messages"]) == 1
    assert d.running()


def test_one_client_cannot_take_every_connection(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"timeout": "3s", "max_connections": 20,
                             "max_connections_per_client": 5})
    d.start()
    idle = []
    for _ in range(5):
        client = RawSMTP(d.smtp_port)
        assert client.reply()[0] == 220
        idle.append(client)
    extra = RawSMTP(d.smtp_port)
    code, text = extra.reply()
    assert code == 421, text
    assert extra.closed_by_server(5)
    extra.close()

    # The idle ones run out of time; then the client gets in again.
    for client in idle:
        assert client.closed_by_server(10)
        client.close()
    assert d.send(SENDER, [RECIPIENT], message("after the idle sessions")) > 0


# --- many connections and the descriptor limit -----------------------------------


def open_many(port: int, count: int) -> list:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sockets.append(sock)
    return sockets


def test_thousand_connections_do_not_stop_delivery(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    with rlimit(resource.RLIMIT_NOFILE, 4096):
        d.start()
        queued = d.send(SENDER, [RECIPIENT], message("queued before the flood"))
        sockets = open_many(d.smtp_port, 1000)
        try:
            assert len(sockets) >= 900, len(sockets)
            srv.start()
            d.wait_for_state(queued, "sent", timeout=30)
            # Sessions beyond smtpd.max_connections are refused and closed at once.
            assert open_fds(d.proc.pid) < 300, open_fds(d.proc.pid)
            assert d.running()
        finally:
            for sock in sockets:
                sock.close()

    late = d.wait_for(lambda: _try_send(d), timeout=30, message="a client accepted again")
    d.wait_for_state(late, "sent", timeout=30)


def _try_send(d):
    try:
        return d.send(SENDER, [RECIPIENT], message("after the flood"), timeout=10)
    except (OSError, AssertionError):
        return None


def test_descriptor_limit_does_not_spin_or_kill(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"max_connections": 1000, "max_connections_per_client": 1000})
    with rlimit(resource.RLIMIT_NOFILE, 64):
        d.start()
    queued = d.send(SENDER, [RECIPIENT], message("queued before the limit"))
    with rlimit(resource.RLIMIT_NOFILE, 4096):
        sockets = open_many(d.smtp_port, 150)
        try:
            time.sleep(1)
            log_before = d.log_text().count("accept_failed")
            cpu_before = cpu_seconds(d.proc.pid)
            time.sleep(3)
            cpu_used = cpu_seconds(d.proc.pid) - cpu_before
            failures_logged = d.log_text().count("accept_failed") - log_before
            assert d.running(), d.log_tail()
            assert "accept_failed" in d.log_text(), "relayqd never reached its descriptor limit"
            assert cpu_used < 1.0, f"relayqd used {cpu_used:.2f} s of CPU in 3 s at its fd limit"
            assert failures_logged < 30, f"{failures_logged} accept_failed lines in 3 s"
        finally:
            for sock in sockets:
                sock.close()

    late = d.wait_for(lambda: _try_send(d), timeout=30, message="a client accepted again")
    srv.start()
    d.wait_for_state(queued, "sent", timeout=30)
    d.wait_for_state(late, "sent", timeout=30)
    assert d.running()
