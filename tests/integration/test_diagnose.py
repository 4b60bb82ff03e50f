"""relayq diagnose: each failure names its step and likely cause, with a sysexits code.

Exit codes: 0 every step passed, 69 (EX_UNAVAILABLE) lookup, connect or
protocol failures, 75 (EX_TEMPFAIL) a 4xx at AUTH or in the test message,
78 (EX_CONFIG) a configuration mistake: TLS mode mix-up, certificate or
pin, AUTH not offered or credentials rejected, unusable password source.
"""

import json
import socket
import threading
import time

import pytest

from fake_smarthost import free_port

USER = "payments"
PASSWORD = "pw-Diagnose-51c2-relayq-secret"


def diagnose(d, *args, timeout=120):
    d.write_config()
    return d.cli("diagnose", *args, timeout=timeout)


def diagnose_json(d, *args):
    result = diagnose(d, "--json", *args)
    try:
        return result, json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"relayq diagnose --json printed invalid JSON (status "
                    f"{result.returncode}):\n{result.stdout}\n{result.stderr}")


def failed_step(report):
    for endpoint in report["endpoints"]:
        for step in endpoint["steps"]:
            if step["result"] == "failed":
                return step
    return None


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_closed_port(relayq):
    port = free_port()
    d = relayq.daemon(smarthost={"host": "127.0.0.1", "port": port, "tls": "none"})
    result, report = diagnose_json(d)

    assert result.returncode == 69, result.stdout
    step = failed_step(report)
    assert step["step"] == "connect"
    assert "refused" in step["detail"]
    assert "25, 2525, 587" in step["hint"]

    text = diagnose(d)
    assert text.returncode == 69
    assert "FAILED  connect" in text.stdout
    assert "likely cause" in text.stdout


def test_port_that_never_answers(relayq):
    server = SilentServer()
    try:
        d = relayq.daemon(smarthost={"host": "127.0.0.1", "port": server.port,
                                     "tls": "starttls",
                                     "timeouts": {"greeting": "8s"}})
        started = time.monotonic()
        result, report = diagnose_json(d)
    finally:
        server.close()

    assert result.returncode == 69, result.stdout
    step = failed_step(report)
    assert step["step"] == "greeting"
    assert "sends nothing" in step["hint"]
    assert time.monotonic() - started < 40


def test_plain_port_in_implicit_mode(relayq, fake_smarthost):
    srv = fake_smarthost(tls="none")
    d = relayq.daemon(smarthost=srv.smarthost_config(tls="implicit"))
    result, report = diagnose_json(d)

    assert result.returncode == 78, result.stdout
    step = failed_step(report)
    assert step["step"] == "tls"
    assert f"smarthost port {srv.port} answered in plain text" in step["detail"]
    assert "tls: starttls" in step["hint"]


def test_implicit_port_in_starttls_mode(relayq, fake_smarthost):
    srv = fake_smarthost(tls="implicit")
    config = srv.smarthost_config(tls="starttls")
    config["timeouts"] = {"greeting": "30s"}
    d = relayq.daemon(smarthost=config)
    result, report = diagnose_json(d)

    assert result.returncode == 78, result.stdout
    step = failed_step(report)
    assert step["step"] == "greeting"
    assert "answers a TLS handshake" in step["detail"]
    assert "tls: implicit" in step["hint"]


def test_wrong_password(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, "the-right-one"))
    secret = tmp_path / "wrong.secret"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    d = relayq.daemon(smarthost=srv.smarthost_config(password_file=str(secret)))
    result, report = diagnose_json(d)

    assert result.returncode == 78, result.stdout
    step = failed_step(report)
    assert step["step"] == "auth"
    assert "535" in step["detail"]
    assert PASSWORD not in result.stdout + result.stderr
    text = diagnose(d)
    assert PASSWORD not in text.stdout + text.stderr
    steps = [s["step"] for s in report["endpoints"][0]["steps"]]
    assert steps[:4] == ["lookup", "connect", "greeting", "ehlo"]
    assert "certificate" in steps


def test_auth_not_offered(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls")
    secret = tmp_path / "s"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    d = relayq.daemon(smarthost=srv.smarthost_config(username=USER, password_file=str(secret)))
    result, report = diagnose_json(d)
    assert result.returncode == 78
    assert "does not offer AUTH" in failed_step(report)["detail"]


def test_readable_password_file(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    secret = tmp_path / "open.secret"
    secret.write_text(PASSWORD)
    secret.chmod(0o644)
    d = relayq.daemon(smarthost=srv.smarthost_config(password_file=str(secret)))
    result, report = diagnose_json(d)
    assert result.returncode == 78
    assert f"chmod 600 {secret}" in result.stdout


def test_fake_all_steps_and_send_test(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    d = relayq.daemon(smarthost=srv.smarthost_config())
    result, report = diagnose_json(d, "--send-test", "admin@example.net",
                                   "--from", "payments@example.com")

    assert result.returncode == 0, result.stdout
    assert report["ok"] is True
    steps = {s["step"]: s for s in report["endpoints"][0]["steps"] if s["result"] == "ok"}
    for name in ("lookup", "connect", "greeting", "ehlo", "tls", "certificate",
                 "ehlo-after-tls", "auth", "send-test"):
        assert name in steps, report
    assert "CN=localhost" in steps["certificate"]["detail"]
    assert "expires" in steps["certificate"]["detail"]
    [message] = srv.wait_for_messages(1)
    assert message.mail_from == "payments@example.com"
    assert message.rcpt_tos == ["admin@example.net"]
    assert PASSWORD not in result.stdout


def test_fallback_endpoints_each_checked(relayq, fake_smarthost):
    srv = fake_smarthost()
    closed = free_port()
    d = relayq.daemon(smarthost=srv.smarthost_config(fallback=[{"port": closed}]))
    result, report = diagnose_json(d)
    assert result.returncode == 69
    assert [e["port"] for e in report["endpoints"]] == [srv.port, closed]
    assert report["endpoints"][0]["ok"] is True
    assert report["endpoints"][1]["ok"] is False


def test_postfix_all_steps_pass(relayq, postfix_smarthost):
    pf = postfix_smarthost
    d = relayq.daemon(smarthost={
        "host": pf.host,
        "port": pf.port,
        "tls": "starttls",
        "ca_file": pf.ca_file,
        "username": pf.username,
        "password_file": pf.password_file,
    })
    result, report = diagnose_json(d, "--send-test", "rcpt@example.net",
                                   "--from", "sender@example.org")

    assert result.returncode == 0, result.stdout + result.stderr
    names = [s["step"] for s in report["endpoints"][0]["steps"] if s["result"] == "ok"]
    for name in ("lookup", "connect", "greeting", "tls", "certificate", "auth", "send-test"):
        assert name in names, report
    delivered = pf.messages(wait_count=1)
    assert b"relayq diagnose test message" in delivered[0]
    assert pf.password not in result.stdout
