"""
Listener policy: which clients may connect (allow), STARTTLS with its
pipelining defence, AUTH with a users file, and the limits per listener
(SIZE, recipients, connections, timeouts, SMTPUTF8), tested with swaks,
Python smtplib, curl and raw sockets.

Clients from a second loopback address (127.0.0.2, 127.0.0.3) stand for
other hosts: Linux routes all of 127.0.0.0/8 to the loopback interface.
"""

import base64
import re
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from relayq_fixture import free_port

PASSWORD = "Corr3ct-Horse-Battery"
WRONG_PASSWORD = "Wr0ng-Staple-9731"
TIMEOUT = 30


# Helpers.

def hash_password(password: str, method: str = "yescrypt") -> str:
    """A crypt(3) hash of PASSWORD from mkpasswd, as the docs tell admins to make one."""
    result = subprocess.run(["mkpasswd", "-m", method, "--stdin"], input=password,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def write_users(path, users: dict, mode=0o600):
    """Write a users file with one "user:HASH" line per user."""
    lines = ["# relayq SMTP AUTH users"]
    lines += [f"{user}:{hash_password(password)}" for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def set_listener(daemon, **settings):
    """Make the daemon's one listener a mapping with SETTINGS."""
    daemon.config["listen"] = [{"address": f"127.0.0.1:{daemon.smtp_port}", **settings}]


def wait_sessions_closed(daemon):
    """
    Wait until every SMTP session relayqd logged as connected has
    disconnected, the fixture's probe after start included.
    """
    def closed():
        log = daemon.log_text()
        connects = log.count("event=connect ")
        return connects >= 1 and connects == log.count("event=disconnect ")
    daemon.wait_for(closed, timeout=TIMEOUT, message="all SMTP sessions closed")


def tls_context(certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates.ca_file))


class RawClient:
    """An SMTP client that sends bytes as given and reads whole replies."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.stream = self.sock.makefile("rb")

    def reply(self) -> list:
        """Read one reply; returns its lines without CRLF."""
        lines = []
        while True:
            line = self.stream.readline()
            assert line, f"relayqd closed the connection after {lines!r}"
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return lines

    def command(self, line: bytes) -> list:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def code(self, line: bytes) -> bytes:
        """Send LINE and return the last reply line."""
        return self.command(line)[-1]

    def starttls(self, context: ssl.SSLContext):
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.stream = self.sock.makefile("rb")

    def at_eof(self) -> bool:
        """True when relayqd has closed the connection (waits for it)."""
        try:
            return self.stream.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.stream.close()
        self.sock.close()


def data_lines(subject="policy test", body="hello"):
    return f"Subject: {subject}\r\nFrom: s@example.com\r\n\r\n{body}\r\n".encode()


# Plain submission with the three clients.

def test_submit_with_swaks_smtplib_curl(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    d.send("smtplib@example.com", "r@example.net", data_lines("via smtplib"))

    swaks = subprocess.run(["swaks", "--server", f"127.0.0.1:{d.smtp_port}",
                            "--from", "swaks@example.com", "--to", "r@example.net",
                            "--header", "Subject: via swaks"],
                           capture_output=True, text=True, timeout=60)
    assert swaks.returncode == 0, swaks.stdout + swaks.stderr

    message = tmp_path / "curl.eml"
    message.write_bytes(data_lines("via curl"))
    curl = subprocess.run(["curl", "-sS", "--max-time", "60",
                           f"smtp://127.0.0.1:{d.smtp_port}",
                           "--mail-from", "curl@example.com",
                           "--mail-rcpt", "r@example.net",
                           "--upload-file", str(message)],
                          capture_output=True, text=True, timeout=90)
    assert curl.returncode == 0, curl.stderr

    messages = srv.wait_for_messages(3, timeout=60)
    senders = sorted(m.mail_from for m in messages)
    assert senders == ["curl@example.com", "smtplib@example.com", "swaks@example.com"]


# Allowed networks.

def test_client_outside_allow_gets_554(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, allow=["127.0.0.1/32"])
    d.start()

    client = RawClient(d.smtp_port, source="127.0.0.2")
    greeting = client.reply()
    assert greeting[-1].startswith(b"554 5.7.1 "), greeting
    assert client.code(b"EHLO outsider.test").startswith(b"503 5.7.1"), "EHLO"
    assert client.code(b"MAIL FROM:<x@example.com>").startswith(b"503 5.7.1"), "MAIL"
    assert client.code(b"QUIT").startswith(b"221"), "QUIT"
    assert client.at_eof()
    client.close()

    log = d.log_text()
    assert re.search(r"info: session=s\d+ event=rejected client=127\.0\.0\.2 ", log), log

    # Inside the allowed network the same listener works.
    d.send("s@example.com", "r@example.net", data_lines())
    srv.wait_for_messages(1)


def test_refused_client_closed_after_commands(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, allow=["127.0.0.1/32"])
    d.start()

    client = RawClient(d.smtp_port, source="127.0.0.2")
    assert client.reply()[-1].startswith(b"554")
    replies = [client.code(b"NOOP") for _ in range(3)]
    assert all(r.startswith(b"503 5.7.1") for r in replies), replies
    assert client.at_eof(), "relayqd keeps a refused client after three commands"
    client.close()
    assert not srv.connections, "a refused client reached the smart host"


def test_default_allow_is_loopback(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    # 127.0.0.2 is in 127.0.0.0/8, the default.
    client = RawClient(d.smtp_port, source="127.0.0.2")
    assert client.reply()[-1].startswith(b"220")
    client.code(b"QUIT")
    client.close()

    # The default stays loopback-only for a listener on every address.
    d.config["listen"] = ["0.0.0.0:2525"]
    d.write_config()
    check = subprocess.run([str(d.relayqd_path), "--check-config", "-c",
                            str(d.config_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_smtpd_allow_applies_to_plain_entries(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"allow": "127.0.0.1/32"})
    d.start()

    outsider = RawClient(d.smtp_port, source="127.0.0.2")
    assert outsider.reply()[-1].startswith(b"554 5.7.1")
    outsider.close()
    insider = RawClient(d.smtp_port)
    assert insider.reply()[-1].startswith(b"220")
    insider.close()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no ::1 on this host")
def test_ipv6_loopback_allowed_by_default(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    port = free_port()
    d.config["listen"] = [f"127.0.0.1:{d.smtp_port}", f"[::1]:{port}"]
    d.start()

    with socket.create_connection(("::1", port), timeout=TIMEOUT) as sock:
        greeting = sock.makefile("rb").readline()
    assert greeting.startswith(b"220"), greeting


def test_allow_with_host_bits_rejected(relayq):
    d = relayq.daemon(smarthost={"host": "127.0.0.1"})
    set_listener(d, allow=["192.168.1.7/24"])
    d.write_config()
    result = subprocess.run([str(d.relayqd_path), "-f", "-c", str(d.config_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert "listen[0].allow" in result.stderr
    assert "192.168.1.0/24" in result.stderr


# STARTTLS and AUTH.

def auth_daemon(relayq, srv, certificates, tmp_path, **settings):
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    d = relayq.daemon(smarthost=srv.smarthost_config())
    listener = {"tls_cert": str(certificates.cert_file),
                "tls_key": str(certificates.key_file),
                "auth": "required", "users_file": str(users)}
    listener.update(settings)
    set_listener(d, **listener)
    return d


def test_auth_required_over_starttls(relayq, fake_smarthost,
                                     fake_smarthost_certificates, tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname="client.test",
                      timeout=TIMEOUT) as client:
        code, text = client.ehlo()
        assert code == 250
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH offered before STARTTLS"

        code, text = client.mail("s@example.com")
        assert code == 530, text
        assert b"5.7.0" in text
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0alice\0" + PASSWORD.encode()).decode())
        assert code == 538, text

        client.starttls(context=tls_context(fake_smarthost_certificates))
        client.ehlo()
        assert not client.has_extn("starttls"), "STARTTLS offered inside TLS"
        assert "PLAIN" in client.esmtp_features["auth"].split()
        assert "LOGIN" in client.esmtp_features["auth"].split()
        client.login("alice", PASSWORD)
        code, text = client.mail("s@example.com")
        assert code == 250, text
        assert client.rcpt("r@example.net")[0] == 250
        code, text = client.data(data_lines("authenticated"))
        assert code == 250, text

    [message] = srv.wait_for_messages(1)
    received = message.header("Received")[0]
    assert "with ESMTPSA" in received, received
    assert re.search(r'event=accepted .* tls=yes user="alice"', d.log_text())


def test_auth_login_and_swaks(relayq, fake_smarthost, fake_smarthost_certificates,
                              tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as client:
        client.starttls(context=tls_context(fake_smarthost_certificates))
        client.ehlo()
        client.user, client.password = "alice", PASSWORD
        code, text = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235, text

    swaks = subprocess.run(["swaks", "--server", f"127.0.0.1:{d.smtp_port}",
                            "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", PASSWORD, "--from", "swaks@example.com",
                            "--to", "r@example.net"],
                           capture_output=True, text=True, timeout=60)
    assert swaks.returncode == 0, swaks.stdout + swaks.stderr
    srv.wait_for_messages(1)


def test_auth_with_curl(relayq, fake_smarthost, fake_smarthost_certificates,
                        tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    d.start()

    message = tmp_path / "curl.eml"
    message.write_bytes(data_lines("curl with auth"))
    curl = subprocess.run(["curl", "-sS", "--max-time", "60", "--ssl-reqd",
                           "--cacert", str(fake_smarthost_certificates.ca_file),
                           "--user", f"alice:{PASSWORD}",
                           f"smtp://127.0.0.1:{d.smtp_port}",
                           "--mail-from", "curl@example.com",
                           "--mail-rcpt", "r@example.net",
                           "--upload-file", str(message)],
                          capture_output=True, text=True, timeout=90)
    assert curl.returncode == 0, curl.stderr
    [delivered] = srv.wait_for_messages(1)
    assert delivered.mail_from == "curl@example.com"


def test_wrong_password_gets_535(relayq, fake_smarthost,
                                 fake_smarthost_certificates, tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as client:
        client.starttls(context=tls_context(fake_smarthost_certificates))
        client.ehlo()
        client.user, client.password = "alice", WRONG_PASSWORD
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.auth("PLAIN", client.auth_plain)
        assert failure.value.smtp_code == 535
        assert b"5.7.8" in failure.value.smtp_error
        assert time.monotonic() - started >= 0.9, "no delay after a failed AUTH"

        # An unknown user gets the same reply.
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0mallory\0" + WRONG_PASSWORD.encode()).decode())
        assert code == 535, text

        # The third failure in one session ends it.
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0alice\0" + WRONG_PASSWORD.encode()).decode())
        assert code == 421, text

    log = d.log_text()
    assert re.search(r'event=auth_failed client=127\.0\.0\.1 user="alice" '
                     r'mechanism=PLAIN failures=1', log), log
    encoded = base64.b64encode(b"\0alice\0" + WRONG_PASSWORD.encode()).decode()
    for secret in (WRONG_PASSWORD, PASSWORD, encoded):
        assert secret not in log, f"{secret!r} appears in the log"
    assert "AUTH PLAIN [initial response not logged]" in log


def test_users_file_readable_by_others_refused(relayq, fake_smarthost,
                                               fake_smarthost_certificates,
                                               tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    users = tmp_path / "users"
    users.chmod(0o644)
    d.write_config()

    result = subprocess.run([str(d.relayqd_path), "-f", "-c", str(d.config_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert str(users) in result.stderr
    assert f'chmod 600 {users}' in result.stderr


def test_reload_keeps_listener_when_users_file_breaks(relayq, fake_smarthost,
                                                      fake_smarthost_certificates,
                                                      tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path)
    d.start()

    users = tmp_path / "users"
    users.write_text("alice:not-a-hash\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "event=reload_failed" in d.log_text(), timeout=TIMEOUT,
               message="reload_failed in the log")
    assert f"{users}:1" in d.log_text()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as client:
        client.starttls(context=tls_context(fake_smarthost_certificates))
        client.ehlo()
        client.login("alice", PASSWORD)


def test_auth_needs_tls_in_config(relayq, tmp_path):
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    d = relayq.daemon(smarthost={"host": "127.0.0.1"})
    set_listener(d, auth="required", users_file=str(users))
    d.write_config()
    result = subprocess.run([str(d.relayqd_path), "-f", "-c", str(d.config_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert "needs starttls" in result.stderr


def test_auth_plaintext_loopback(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost()
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, auth="optional", users_file=str(users),
                 auth_plaintext_loopback=True)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("auth")
        client.login("alice", PASSWORD)
        client.sendmail("s@example.com", ["r@example.net"], data_lines())
    [message] = srv.wait_for_messages(1)
    assert "with ESMTPA" in message.header("Received")[0]


def test_starttls_discards_pipelined_commands(relayq, fake_smarthost,
                                              fake_smarthost_certificates, tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path, auth="off")
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    client.command(b"EHLO client.test")
    client.sock.sendall(b"STARTTLS\r\nRSET\r\n")
    assert client.reply()[-1].startswith(b"220 2.0.0"), "STARTTLS"
    client.starttls(tls_context(fake_smarthost_certificates))

    # The first reply inside TLS must be EHLO's, not a 250 for the injected RSET.
    ehlo = client.command(b"EHLO client.test")
    assert ehlo[0].startswith(b"250-"), ehlo
    assert b"250-STARTTLS" not in ehlo, ehlo
    assert client.code(b"NOOP").startswith(b"250")
    assert client.code(b"QUIT").startswith(b"221")
    client.close()
    assert "event=starttls_pipelining_discarded" in d.log_text()


def test_starttls_forgets_ehlo(relayq, fake_smarthost, fake_smarthost_certificates,
                               tmp_path):
    srv = fake_smarthost()
    d = auth_daemon(relayq, srv, fake_smarthost_certificates, tmp_path, auth="off")
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    client.command(b"EHLO client.test")
    assert client.code(b"STARTTLS").startswith(b"220")
    client.starttls(tls_context(fake_smarthost_certificates))
    assert client.code(b"MAIL FROM:<s@example.com>").startswith(b"503"), \
        "MAIL accepted without EHLO after STARTTLS"
    client.command(b"EHLO client.test")
    assert client.code(b"STARTTLS").startswith(b"503"), "second STARTTLS accepted"
    assert client.code(b"MAIL FROM:<s@example.com>").startswith(b"250")
    assert client.code(b"RCPT TO:<r@example.net>").startswith(b"250")
    assert client.code(b"DATA").startswith(b"354")
    client.sock.sendall(data_lines("over starttls") + b".\r\n")
    assert client.reply()[-1].startswith(b"250")
    assert client.code(b"QUIT").startswith(b"221")
    assert client.at_eof()
    client.close()
    [message] = srv.wait_for_messages(1)
    assert "with ESMTPS " in message.header("Received")[0]


# Limits.

def test_size_per_listener(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), smtpd={"max_message_size": "1M"})
    second = free_port()
    d.config["listen"] = [{"address": f"127.0.0.1:{d.smtp_port}",
                           "max_message_size": "10K"},
                          f"127.0.0.1:{second}"]
    d.start()

    small = RawClient(d.smtp_port)
    small.reply()
    assert b"250-SIZE 10240" in small.command(b"EHLO client.test")
    assert small.code(b"MAIL FROM:<s@example.com> SIZE=20000").startswith(b"552 5.3.4")
    assert small.code(b"MAIL FROM:<s@example.com>").startswith(b"250")
    assert small.code(b"RCPT TO:<r@example.net>").startswith(b"250")
    assert small.code(b"DATA").startswith(b"354")
    small.sock.sendall(data_lines(body="x" * 20000) + b".\r\n")
    assert small.reply()[-1].startswith(b"552 5.3.4")
    assert small.code(b"RSET").startswith(b"250"), "session did not go on after 552"
    small.close()

    large = RawClient(second)
    large.reply()
    assert b"250-SIZE 1048576" in large.command(b"EHLO client.test")
    assert large.code(b"MAIL FROM:<s@example.com> SIZE=20000").startswith(b"250")
    large.close()


def test_max_recipients_gets_452(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, max_recipients=3)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as client:
        client.ehlo()
        client.mail("s@example.com")
        for n in range(3):
            assert client.rcpt(f"r{n}@example.net")[0] == 250
        code, text = client.rcpt("r3@example.net")
        assert code == 452, text
        assert b"4.5.3" in text
        assert client.data(data_lines())[0] == 250
    [message] = srv.wait_for_messages(1)
    assert len(message.rcpt_tos) == 3


def test_connection_limit_per_client(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, max_connections_per_client=2, max_connections=3)
    d.start()
    wait_sessions_closed(d)

    first, second = RawClient(d.smtp_port), RawClient(d.smtp_port)
    assert first.reply()[-1].startswith(b"220")
    assert second.reply()[-1].startswith(b"220")
    third = RawClient(d.smtp_port)
    refused = third.reply()[-1]
    assert refused.startswith(b"421 4.7.0"), refused
    assert b"from your address" in refused
    assert third.at_eof()
    third.close()

    # Another client address still gets in, up to the listener's limit.
    other = RawClient(d.smtp_port, source="127.0.0.2")
    assert other.reply()[-1].startswith(b"220")
    fourth = RawClient(d.smtp_port, source="127.0.0.3")
    assert fourth.reply()[-1].startswith(b"421 4.7.0")
    fourth.close()

    disconnects = d.log_text().count("event=disconnect ")
    first.code(b"QUIT")
    first.close()
    wait_for_disconnects(d, disconnects + 1)
    again = RawClient(d.smtp_port)
    assert again.reply()[-1].startswith(b"220")
    for client in (again, second, other):
        client.close()

    log = d.log_text()
    assert "reason=max_connections_per_client limit=2" in log
    assert "reason=listener_max_connections limit=3" in log


def wait_for_disconnects(daemon, count):
    daemon.wait_for(lambda: daemon.log_text().count("event=disconnect ") >= count,
                    timeout=TIMEOUT, message=f"{count} disconnects")


def trickle(client: RawClient, data: bytes, seconds_per_byte=1.0, limit=20.0):
    """Send DATA one byte at a time until relayqd replies. Returns the seconds taken."""
    started = time.monotonic()
    for byte in data:
        readable, _, _ = select.select([client.sock], [], [], seconds_per_byte)
        if readable or time.monotonic() - started > limit:
            break
        client.sock.sendall(bytes([byte]))
    else:
        select.select([client.sock], [], [], limit)
    return time.monotonic() - started


def test_slow_client_cut_while_others_submit(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), smtpd={"timeout": "3s"})
    d.start()

    slow = RawClient(d.smtp_port)
    assert slow.reply()[-1].startswith(b"220")
    slow.sock.sendall(b"E")

    # While the slow client keeps its session open, another one submits.
    d.send("s@example.com", "r@example.net", data_lines("while a slow client waits"))

    elapsed = trickle(slow, b"HLO slow.example.com and more bytes\r\n")
    reply = slow.reply()[-1]
    assert reply.startswith(b"421 4.4.2"), reply
    assert elapsed < 10, f"the slow client kept its session for {elapsed:.1f}s"
    assert slow.at_eof()
    slow.close()
    srv.wait_for_messages(1)
    assert re.search(r"event=timeout client=127\.0\.0\.1 stage=command", d.log_text())


def test_slow_data_cut_by_data_timeout(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      smtpd={"timeout": "30s", "data_timeout": "3s"})
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    client.command(b"EHLO client.test")
    client.command(b"MAIL FROM:<s@example.com>")
    client.command(b"RCPT TO:<r@example.net>")
    assert client.code(b"DATA").startswith(b"354")
    elapsed = trickle(client, b"Subject: slow\r\n\r\n" + b"x" * 60)
    reply = client.reply()[-1]
    assert reply.startswith(b"421 4.4.2"), reply
    assert elapsed < 10, f"DATA went on for {elapsed:.1f}s"
    client.close()
    assert "stage=data limit=3s" in d.log_text()
    assert d.cli_json("list", "--state", "all")["messages"] == []


# Overlong input.

def test_overlong_command_and_header_block(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, max_message_size="64K")
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    client.command(b"EHLO client.test")
    assert client.code(b"NOOP " + b"x" * 5000).startswith(b"500 5.5.2")
    assert client.code(b"NOOP").startswith(b"250"), "session did not go on"

    # A header block larger than the size limit is rejected after the dot.
    client.command(b"MAIL FROM:<s@example.com>")
    client.command(b"RCPT TO:<r@example.net>")
    assert client.code(b"DATA").startswith(b"354")
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 200) for n in range(400))
    client.sock.sendall(headers + b"\r\nbody\r\n.\r\n")
    assert client.reply()[-1].startswith(b"552 5.3.4")

    # A body line longer than 998 octets is kept whole within the size limit.
    client.command(b"MAIL FROM:<s@example.com>")
    client.command(b"RCPT TO:<r@example.net>")
    assert client.code(b"DATA").startswith(b"354")
    client.sock.sendall(b"Subject: long line\r\n\r\n" + b"z" * 3000 + b"\r\n.\r\n")
    assert client.reply()[-1].startswith(b"250")
    assert client.code(b"QUIT").startswith(b"221")
    client.close()
    srv.wait_for_messages(1)


# SMTPUTF8.

UTF8_SENDER = "sénder@example.com"
UTF8_RCPT = "jörg@example.net"


def test_8bit_address_needs_smtputf8(relayq, fake_smarthost):
    srv = fake_smarthost(ehlo_extensions=["PIPELINING", "8BITMIME", "SMTPUTF8",
                                          "ENHANCEDSTATUSCODES"])
    d = relayq.daemon(smarthost=srv.smarthost_config())
    set_listener(d, smtputf8=True)
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    assert b"250-SMTPUTF8" in client.command(b"EHLO client.test")
    reply = client.code(b"MAIL FROM:<" + UTF8_SENDER.encode() + b">")
    assert reply.startswith(b"553 5.6.7"), reply
    client.command(b"MAIL FROM:<s@example.com>")
    reply = client.code(b"RCPT TO:<" + UTF8_RCPT.encode() + b">")
    assert reply.startswith(b"553 5.6.7"), reply
    client.code(b"QUIT")
    client.close()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("smtputf8")
        code, text = smtp.mail(UTF8_SENDER, options=["SMTPUTF8"])
        assert code == 250, text
        assert smtp.rcpt(UTF8_RCPT)[0] == 250
        code, text = smtp.data(data_lines("utf-8 envelope"))
        assert code == 250, text
    [message] = srv.wait_for_messages(1)
    assert message.mail_from == UTF8_SENDER
    assert message.rcpt_tos == [UTF8_RCPT]
    assert "SMTPUTF8" in [o.upper() for o in message.mail_options]
    assert "with UTF8SMTP " in message.header("Received")[0]


def test_smtputf8_off_by_default(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    client = RawClient(d.smtp_port)
    client.reply()
    assert b"250-SMTPUTF8" not in client.command(b"EHLO client.test")
    assert client.code(b"MAIL FROM:<s@example.com> SMTPUTF8").startswith(b"555")
    reply = client.code(b"MAIL FROM:<" + UTF8_SENDER.encode() + b">")
    assert reply.startswith(b"553 5.6.7"), reply
    client.close()


def test_utf8_message_fails_without_upstream_smtputf8(relayq, fake_smarthost):
    """A non-ASCII envelope fails for good at a smart host without SMTPUTF8."""
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), dsn="off")
    set_listener(d, smtputf8=True)
    d.start()

    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        smtp.mail("s@example.com", options=["SMTPUTF8"])
        smtp.rcpt(UTF8_RCPT)
        code, text = smtp.data(data_lines())
        assert code == 250, text
    msg_id = int(re.search(rb"queued as (\d+)", text).group(1))
    details = d.wait_for_state(msg_id, "failed")
    assert "SMTPUTF8" in details["last_error"], details
