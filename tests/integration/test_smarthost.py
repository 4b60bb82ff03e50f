"""The smart host client against relays that behave in every way real ones do.

Each test starts relayqd against a scripted fake smart host (aiosmtpd on
127.0.0.1) and checks what went over the wire, what the queue records and
what the log tells the admin.
"""

import base64
import os
import re
import socket
import ssl
import stat
import subprocess
import threading
import time

import pytest

from fake_smarthost import DROP, HANG, free_port

SENDER = "app@example.com"
RCPT = "customer@example.net"
USER = "payments"
PASSWORD = "pw-Smarthost-7f3a-relayq-secret"
TOKEN = "ya29.token-0a1b2c3d4e5f-relayq"


def message_bytes(subject, body=b"Hello.\r\n", extra=b""):
    return (b"From: Payments <app@example.com>\r\n"
            b"To: Customer <customer@example.net>\r\n"
            b"Subject: " + subject.encode() + b"\r\n" + extra
            + b"\r\n" + body)


def wait_log(d, pattern, timeout=20.0):
    """Poll relayqd's log until PATTERN (a regex) matches; return the match."""
    regex = re.compile(pattern)
    return d.wait_for(lambda: regex.search(d.log_text()), timeout=timeout,
                      interval=0.1, message=f"log line matching {pattern!r}")


def stats(d):
    return d.cli_json("stats")


def relay_status(d):
    """The smart host status from `relayq stats --json`, whatever key holds it."""
    data = stats(d)
    relay = data.get("relay") or data.get("smarthost") or {}
    if isinstance(relay, dict):
        return relay.get("status"), relay
    return data.get("relay_status"), data


def assert_secret_hidden(d, *secrets):
    """No form of SECRETS appears in the log or in any CLI output."""
    forms = {}
    for secret in secrets:
        forms[secret] = secret
        forms[f"base64 {secret}"] = base64.b64encode(secret.encode()).decode()
        forms[f"PLAIN {secret}"] = base64.b64encode(f"\0{USER}\0{secret}".encode()).decode()
    outputs = {"relayqd log": d.log_text()}
    for args in (("list", "--state", "all", "--json"), ("stats", "--json")):
        result = d.cli(*args)
        outputs[" ".join(args)] = result.stdout + result.stderr
    for where, text in outputs.items():
        for form, value in forms.items():
            assert value not in text, f"{form!r} appears in {where}"


def write_secret(tmp_path, name, text, mode=0o600):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


# --- AUTH ---


def test_auth_only_after_starttls(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD), auth_mechanisms=("LOGIN",))
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("auth after starttls"))
    d.wait_for_state(msg_id, "sent")

    [conn] = [c for c in srv.connections if c.transactions]
    verbs = [c.split()[0].upper() for c in conn.commands]
    assert verbs[:5] == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL"], conn.commands
    assert conn.ehlo_count == 2
    assert conn.transactions[0].tls
    assert conn.transactions[0].auth_user == USER
    assert [a.mechanism for a in srv.auth_attempts] == ["LOGIN"]
    wait_log(d, r"authenticated to \S+ as payments with AUTH LOGIN")
    assert_secret_hidden(d, PASSWORD)


def test_auth_configured_never_offered(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls")
    secret = write_secret(tmp_path, "secret", PASSWORD)
    d = relayq.daemon(smarthost=srv.smarthost_config(username=USER, password_file=str(secret)))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("auth never offered"))
    wait_log(d, r"does not offer AUTH, but smarthost\.username is set")

    assert srv.commands_starting("MAIL") == [], srv.summary()
    assert srv.commands_starting("AUTH") == [], srv.summary()
    assert srv.messages == []
    details = d.show(msg_id)
    assert details["state"] in ("queued", "deferred")
    status, relay = relay_status(d)
    assert status == "auth failing", relay


def test_cram_md5_first_gets_535(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD),
                         auth_mechanisms=("PLAIN", "LOGIN", "CRAM-MD5", "GSSAPI"))
    srv.auth_reply = {"CRAM-MD5": "535 5.7.8 Authentication credentials invalid"}
    d = relayq.daemon(smarthost=srv.smarthost_config(
        auth_mechanisms=["CRAM-MD5", "PLAIN", "LOGIN"]))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("cram-md5 535"))
    wait_log(d, r"event=relay_held reason=auth")
    time.sleep(1.5)

    mechanisms = [a.mechanism for a in srv.auth_attempts]
    assert mechanisms and set(mechanisms) == {"CRAM-MD5"}, mechanisms
    assert srv.commands_starting("MAIL") == []
    assert [m for m in srv.transactions if m.mail_from == ""] == []
    assert d.show(msg_id)["state"] in ("queued", "deferred")


def test_cram_md5_succeeds(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD), auth_mechanisms=("CRAM-MD5",))
    d = relayq.daemon(smarthost=srv.smarthost_config(auth_mechanisms=["CRAM-MD5"]))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("cram-md5"))
    d.wait_for_state(msg_id, "sent")

    [attempt] = srv.auth_attempts
    assert attempt.mechanism == "CRAM-MD5"
    assert attempt.password == PASSWORD, "the CRAM-MD5 digest did not verify"
    wait_log(d, r"with AUTH CRAM-MD5")
    assert_secret_hidden(d, PASSWORD)


def test_plain_504_tries_login(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD), auth_mechanisms=("PLAIN", "LOGIN"))
    srv.auth_reply = {"PLAIN": "504 5.7.4 Unrecognized authentication type"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("504 to plain"))
    d.wait_for_state(msg_id, "sent")

    assert [a.mechanism for a in srv.auth_attempts] == ["PLAIN", "LOGIN"]
    assert len(srv.connections) == 1, "the next mechanism runs on the same connection"
    wait_log(d, r"AUTH PLAIN got 504, trying the next mechanism")
    wait_log(d, r"with AUTH LOGIN")


def test_login_xoauth2_offered_plain_never_sent(relayq, fake_smarthost):
    """Office 365 offers AUTH LOGIN XOAUTH2 and answers 504 to PLAIN."""
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD), auth_mechanisms=("LOGIN", "XOAUTH2"))
    srv.auth_reply = {"PLAIN": "504 5.7.4 Unrecognized authentication type"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("office 365 mechanisms"))
    d.wait_for_state(msg_id, "sent")

    assert [a.mechanism for a in srv.auth_attempts] == ["LOGIN"]
    assert not [c for c in srv.commands if c.upper().startswith("AUTH PLAIN")]


def token_command(tmp_path, token, lifetime="3600"):
    """A password_command that prints TOKEN (and LIFETIME) and counts its runs."""
    counter = tmp_path / "runs"
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\n"
                      f"echo run >> {counter}\n"
                      f"printf '%s\\n' '{token}'\n"
                      + (f"printf '%s\\n' '{lifetime}'\n" if lifetime else ""))
    script.chmod(0o700)
    return str(script), counter


def test_xoauth2_token_cached(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, TOKEN), auth_mechanisms=("XOAUTH2",))
    command, counter = token_command(tmp_path, TOKEN)
    config = srv.smarthost_config(max_messages_per_connection=1,
                                  auth_mechanisms=["XOAUTH2"])
    config.pop("password_file")
    config["password_command"] = command
    d = relayq.daemon(smarthost=config)
    d.start()

    first = d.send(SENDER, [RCPT], message_bytes("token one"))
    d.wait_for_state(first, "sent")
    second = d.send(SENDER, [RCPT], message_bytes("token two"))
    d.wait_for_state(second, "sent")

    assert [a.mechanism for a in srv.auth_attempts] == ["XOAUTH2", "XOAUTH2"]
    assert all(a.password == TOKEN for a in srv.auth_attempts)
    assert len([c for c in srv.connections if c.transactions]) == 2
    assert counter.read_text().count("run") == 1, "the token was not cached"
    wait_log(d, r"event=password_command_done lifetime=3600s")
    assert_secret_hidden(d, TOKEN)


def test_xoauth2_rejected_token(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, TOKEN), auth_mechanisms=("XOAUTH2",))
    command, counter = token_command(tmp_path, "expired-token-value", lifetime="")
    config = srv.smarthost_config(auth_mechanisms=["XOAUTH2"])
    config.pop("password_file")
    config["password_command"] = command
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("bad token"))
    wait_log(d, r"rejected AUTH XOAUTH2 for user payments: [^\n]*token error [^\n]*401")
    assert srv.commands_starting("MAIL") == []
    assert d.show(msg_id)["state"] in ("queued", "deferred")
    assert_secret_hidden(d, "expired-token-value")


def test_password_command_fails(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    config = srv.smarthost_config()
    config.pop("password_file")
    config["password_command"] = "echo not-a-secret-on-stderr >&2; exit 3"
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("command fails"))
    wait_log(d, r"smarthost\.password_command exited with status 3")
    wait_log(d, r"event=relay_held reason=auth")

    assert srv.auth_attempts == []
    assert srv.commands_starting("MAIL") == []
    assert d.show(msg_id)["state"] in ("queued", "deferred")
    assert "not-a-secret-on-stderr" not in d.log_text()


def test_password_env(relayq, fake_smarthost, monkeypatch):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    monkeypatch.setenv("RELAYQ_TEST_SMARTHOST_PASSWORD", PASSWORD)
    config = srv.smarthost_config()
    config.pop("password_file")
    config["password_env"] = "RELAYQ_TEST_SMARTHOST_PASSWORD"
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("password from env"))
    d.wait_for_state(msg_id, "sent")
    assert srv.auth_attempts[0].password == PASSWORD
    assert_secret_hidden(d, PASSWORD)


def test_password_file_readable_by_others(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    secret = write_secret(tmp_path, "open.secret", PASSWORD, mode=0o644)
    d = relayq.daemon(smarthost=srv.smarthost_config(password_file=str(secret)))
    d.start(wait=False)

    status = d.proc.wait(15)
    assert status == 78, d.log_tail()
    log = d.log_text()
    assert str(secret) in log
    assert f'chmod 600 {secret}' in log
    assert PASSWORD not in log


def test_only_one_password_source(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    config = srv.smarthost_config(password_env="SOME_VARIABLE")
    d = relayq.daemon(smarthost=config)
    d.write_config()
    result = subprocess.run([str(d.relayqd_path), "--check-config", "-c", str(d.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78
    assert "only one of password_file, password_command and password_env" in result.stderr


def test_auth_535_holds_relay_without_dsn(relayq, fake_smarthost):
    """535, then the host would accept MAIL: nothing is sent, the relay is held."""
    srv = fake_smarthost(tls="starttls", auth=(USER, PASSWORD))
    srv.auth_reply = "535 5.7.8 Authentication credentials invalid"
    d = relayq.daemon(smarthost=srv.smarthost_config(max_connections=1),
                      retry={"initial": "2s", "max": "4s", "max_age": "1h"})
    d.start()

    ids = [d.send(SENDER, [RCPT], message_bytes(f"held {i}")) for i in range(3)]
    wait_log(d, r"event=relay_held reason=auth")
    time.sleep(5)

    assert srv.commands_starting("MAIL") == []
    assert srv.transactions == []
    # A relay-wide backoff: few sessions, not one per message per retry.
    assert 1 <= len(srv.connections) <= 3, srv.summary()
    for msg_id in ids:
        details = d.show(msg_id)
        assert details["state"] in ("queued", "deferred")
        assert len(details["attempts"]) <= 1, details["attempts"]
    status, relay = relay_status(d)
    assert status == "auth failing", relay
    assert "535" in str(relay)

    # Credentials fixed on the server side: everything goes out, no DSN ever.
    srv.auth_reply = None
    srv.wait_for_messages(3, timeout=30)
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent")
    assert [m for m in srv.messages if m.mail_from == ""] == []
    wait_log(d, r"event=relay_held reason=auth host=\S+ holds=2")


def test_opportunistic_plain_and_tls(relayq, fake_smarthost):
    plain = fake_smarthost(tls="none")
    d = relayq.daemon(smarthost=plain.smarthost_config(tls="opportunistic"))
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("opportunistic plain"))
    d.wait_for_state(msg_id, "sent")
    assert not plain.messages[0].tls
    wait_log(d, r"does not offer STARTTLS: going on in plain text")

    tls = fake_smarthost(tls="starttls")
    d2 = relayq.daemon(smarthost=tls.smarthost_config(tls="opportunistic"))
    d2.start()
    msg_id = d2.send(SENDER, [RCPT], message_bytes("opportunistic tls"))
    d2.wait_for_state(msg_id, "sent")
    assert tls.messages[0].tls


def test_opportunistic_never_sends_password_in_clear(relayq, fake_smarthost):
    srv = fake_smarthost(tls="none", auth=(USER, PASSWORD), auth_require_tls=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(tls="opportunistic"))
    d.start()

    d.send(SENDER, [RCPT], message_bytes("no password in clear"))
    wait_log(d, r"never sent without TLS unless tls: none is set")
    assert srv.auth_attempts == []
    assert srv.commands_starting("MAIL") == []


# --- TLS ---


def test_implicit_tls_to_plain_port(relayq, fake_smarthost):
    srv = fake_smarthost(tls="none")
    config = srv.smarthost_config(tls="implicit")
    config["timeouts"] = {"connect": "30s", "greeting": "60s"}
    d = relayq.daemon(smarthost=config)
    d.start()

    started = time.monotonic()
    d.send(SENDER, [RCPT], message_bytes("implicit to plain"))
    match = wait_log(d, rf"smarthost port {srv.port} answered in plain text instead of a "
                        r"TLS handshake: use tls: starttls, not implicit", timeout=15)
    assert time.monotonic() - started < 10, match.group(0)
    assert srv.transactions == []


@pytest.mark.parametrize("mode", ["starttls", "none"])
def test_silent_implicit_port_detected(relayq, fake_smarthost, mode):
    srv = fake_smarthost(tls="implicit")
    config = srv.smarthost_config(tls=mode)
    if mode == "none":
        # With TLS off everywhere and no certificate files, relayqd has no
        # TLS context until this check needs one.
        config.pop("ca_file")
    config["timeouts"] = {"connect": "30s", "greeting": "60s"}
    d = relayq.daemon(smarthost=config)
    d.start()

    started = time.monotonic()
    d.send(SENDER, [RCPT], message_bytes(f"{mode} to implicit"))
    wait_log(d, rf"smarthost port {srv.port} sent no greeting within 3s but answers a TLS "
                rf"handshake: use tls: implicit, not {mode}", timeout=20)
    assert time.monotonic() - started < 12
    assert srv.transactions == []


def server_fingerprint(certificates):
    result = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256",
                             "-in", str(certificates.cert_file)],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().split("=", 1)[1]


def test_fingerprint_pin_without_ca(relayq, fake_smarthost, fake_smarthost_certificates):
    srv = fake_smarthost(tls="starttls")
    config = srv.smarthost_config(tls_fingerprint=server_fingerprint(fake_smarthost_certificates))
    config.pop("ca_file")
    # A name that is not in the certificate: with a pin only the pin counts.
    config["host"] = "127.0.0.1"
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("pinned"))
    d.wait_for_state(msg_id, "sent")
    assert srv.messages[0].tls
    wait_log(d, r"certificate pinned")


def test_fingerprint_pin_mismatch(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls")
    wrong = ":".join(["AB"] * 32)
    d = relayq.daemon(smarthost=srv.smarthost_config(tls_fingerprint=[wrong, "sha256:" + "cd" * 32]))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("wrong pin"))
    wait_log(d, r"matches no smarthost\.tls_fingerprint")
    assert srv.transactions == []
    assert d.show(msg_id)["state"] in ("queued", "deferred")


def test_tls_min_version_13(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", tls_max_version=ssl.TLSVersion.TLSv1_2)
    d = relayq.daemon(smarthost=srv.smarthost_config(tls_min_version="1.3"))
    d.start()

    d.send(SENDER, [RCPT], message_bytes("tls 1.3 required"))
    wait_log(d, r"TLS handshake after STARTTLS with \S+ failed")
    assert srv.transactions == []

    srv2 = fake_smarthost(tls="starttls", tls_max_version=ssl.TLSVersion.TLSv1_2)
    d2 = relayq.daemon(smarthost=srv2.smarthost_config(tls_min_version="1.2",
                                                        tls_ciphers="ECDHE+AESGCM"))
    d2.start()
    msg_id = d2.send(SENDER, [RCPT], message_bytes("tls 1.2 allowed"))
    d2.wait_for_state(msg_id, "sent")
    wait_log(d2, r"TLS established with \S+: TLSv1\.2 ECDHE")


def test_invalid_ciphersuites_refused_at_start(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls")
    d = relayq.daemon(smarthost=srv.smarthost_config(tls_ciphersuites="NOT_A_SUITE"))
    d.start(wait=False)
    assert d.proc.wait(15) == 78
    assert "invalid smarthost.tls_ciphersuites" in d.log_text()


def make_client_certificate(certificates, directory):
    """A client certificate signed by the fake smart host's test CA."""
    ca_dir = certificates.ca_file.parent
    commands = [
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=relayq client"],
        ["openssl", "x509", "-req", "-in", "client.csr", "-CA", str(ca_dir / "ca.pem"),
         "-CAkey", str(ca_dir / "ca.key"), "-set_serial", "7", "-days", "30",
         "-out", "client.pem"],
    ]
    for argv in commands:
        subprocess.run(argv, cwd=directory, capture_output=True, check=True)
    return directory / "client.pem", directory / "client.key"


def test_client_certificate(relayq, fake_smarthost, fake_smarthost_certificates, tmp_path):
    cert, key = make_client_certificate(fake_smarthost_certificates, tmp_path)
    srv = fake_smarthost(tls="starttls", client_ca=fake_smarthost_certificates.ca_file)

    without = relayq.daemon(smarthost=srv.smarthost_config())
    without.start()
    without.send(SENDER, [RCPT], message_bytes("no client certificate"))
    wait_log(without, r"connection lost|TLS handshake after STARTTLS|alert")
    without.stop()
    assert srv.messages == []

    d = relayq.daemon(smarthost=srv.smarthost_config(tls_client_cert=str(cert),
                                                      tls_client_key=str(key)))
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("client certificate"))
    d.wait_for_state(msg_id, "sent")


# --- endpoints ---


def test_endpoint_failover_and_cooldown(relayq, fake_smarthost):
    primary = fake_smarthost(start=False)
    fallback = fake_smarthost()
    config = primary.smarthost_config(endpoint_cooldown="4s",
                                      fallback=[{"port": fallback.port}])
    d = relayq.daemon(smarthost=config)
    d.start()

    first = d.send(SENDER, [RCPT], message_bytes("failover"))
    d.wait_for_state(first, "sent")
    assert len(fallback.messages) == 1
    wait_log(d, rf"event=endpoint_failed host=127\.0\.0\.1:{primary.port} failure=connect "
                rf"[^\n]*cooldown=4s next=127\.0\.0\.1:{fallback.port}")
    [attempt] = d.show(first)["attempts"]
    assert attempt["host"].endswith(f":{fallback.port}")

    # The primary is back, but cooling down: the fallback takes the next message.
    primary.start()
    second = d.send(SENDER, [RCPT], message_bytes("during cooldown"))
    d.wait_for_state(second, "sent")
    assert len(fallback.messages) == 2
    assert primary.connections == []

    # After the cool-down the primary is preferred again.
    time.sleep(4.5)
    third = d.send(SENDER, [RCPT], message_bytes("after cooldown"))
    d.wait_for_state(third, "sent")
    assert len(primary.messages) == 1
    assert len(fallback.messages) == 2


def test_all_endpoints_down_defers(relayq, fake_smarthost):
    primary = fake_smarthost(start=False)
    fallback = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=primary.smarthost_config(fallback=[{"port": fallback.port}]))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("all down"))
    details = d.wait_for(lambda: deferred_with_attempt(d, msg_id), message="a deferral")
    assert re.search(r"refused|connect", details["last_error"], re.IGNORECASE)
    wait_log(d, r"next=none")

    fallback.start()
    d.wait_for_state(msg_id, "sent", timeout=20)
    assert len(fallback.messages) == 1


def deferred_with_attempt(d, msg_id):
    details = d.show(msg_id)
    return details if details["state"] == "deferred" and details["attempts"] else None


def test_name_resolves_through_hosts_file(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(host="localhost"))
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("localhost"))
    d.wait_for_state(msg_id, "sent")


def resolver_is_local():
    try:
        text = open("/etc/resolv.conf").read()
    except OSError:
        return True
    servers = re.findall(r"^\s*nameserver\s+(\S+)", text, re.MULTILINE)
    return all(s.startswith("127.") or s == "::1" for s in servers)


@pytest.mark.skipif(not resolver_is_local(),
                    reason="the system resolver is not on this machine, and tests "
                           "send no packets elsewhere; NXDOMAIN needs a local resolver")
def test_dns_failure_is_temporary(relayq):
    d = relayq.daemon(smarthost={"host": "nonexistent.invalid", "port": 25, "tls": "none"})
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("nxdomain"))
    details = d.wait_for(lambda: deferred_with_attempt(d, msg_id), message="a deferral")
    assert "resolve" in details["last_error"]


# --- replies and timeouts ---


def test_greeting_554_multiline_no_ehlo(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["greeting"] = "554-5.3.2 smarthost.test no service\n554 5.3.2 go away"
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("greeting 554"))
    details = d.wait_for(lambda: deferred_with_attempt(d, msg_id), message="a deferral")

    assert srv.commands_starting("EHLO") == [] and srv.commands_starting("HELO") == []
    assert "go away" in details["last_error"]


def test_421_at_mail_holds_relay(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["mail"] = ["421 4.3.2 shutting down"]
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      retry={"initial": "3s", "max": "6s", "max_age": "1h"})
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("421"))
    wait_log(d, r"event=relay_held reason=421")
    closed_at = time.monotonic()
    details = d.wait_for_state(msg_id, "sent", timeout=30)

    assert details["attempts"][0]["code"] == 421
    # No session at all until the relay's next attempt (3s +/- 20%).
    later = [c for c in srv.connections[1:]]
    assert later, srv.summary()
    assert time.monotonic() - closed_at >= 2.0


def test_421_at_greeting_holds_relay(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["greeting"] = ["421 4.7.0 too many connections"]
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("421 greeting"))
    wait_log(d, r"event=relay_held reason=421")
    d.wait_for_state(msg_id, "sent", timeout=30)
    assert srv.connections[0].commands == [] or srv.connections[0].commands == ["QUIT"]


def test_reply_after_dot_slower_than_other_timeouts(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.delay["data_end"] = [7]
    config = srv.smarthost_config()
    config["timeouts"] = {"data_end": "30s"}
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("slow final reply"))
    details = d.wait_for_state(msg_id, "sent", timeout=30)
    assert len(srv.transactions) == 1
    assert details["attempts"][0]["code"] == 250


@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_connection_lost_after_dot(relayq, fake_smarthost, policy):
    srv = fake_smarthost()
    srv.replies["data_end"] = [DROP]
    d = relayq.daemon(smarthost=srv.smarthost_config(on_uncertain=policy))
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes(f"uncertain {policy}"))
    wait_log(d, rf"msg={msg_id} event=uncertain [^\n]*policy={policy} "
                r"note=\"the smart host may have the message: a retry can deliver a duplicate\"")

    if policy == "hold":
        time.sleep(4)
        assert d.show(msg_id)["state"] == "uncertain"
        assert len(srv.transactions) == 1
        return

    d.wait_for_state(msg_id, "sent", timeout=20)
    first, second = srv.transactions
    assert first.header("Message-ID") == second.header("Message-ID")
    assert len(srv.messages) == 1


def test_500_to_quit_counts_as_delivered(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["quit"] = "500 5.5.1 what"
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("500 to quit"))
    d.wait_for_state(msg_id, "sent")
    time.sleep(1)
    assert d.show(msg_id)["state"] == "sent"
    assert len(srv.transactions) == 1


def test_hung_session_others_flow(relayq, fake_smarthost):
    """One session hangs after 220; a second connection carries the other mail."""
    srv = fake_smarthost()
    srv.replies["ehlo"] = [HANG]
    config = srv.smarthost_config(max_connections=2)
    config["timeouts"] = {"command": "5m", "session": "15s"}
    d = relayq.daemon(smarthost=config)
    d.start()

    stuck = d.send(SENDER, [RCPT], message_bytes("first, hangs"))
    srv.wait_for(lambda: len(srv.connections) >= 1, message="the first connection")
    time.sleep(0.5)
    others = [d.send(SENDER, [RCPT], message_bytes(f"flows {i}")) for i in range(3)]
    for msg_id in others:
        d.wait_for_state(msg_id, "sent", timeout=10)

    age = stats(d).get("oldest_queued_age")
    assert age is None or age >= 0
    assert srv.connections[0].transactions == [], "the hung session delivered nothing"
    wait_log(d, r"the session deadline \(smarthost\.timeouts\.session: 15s\) passed while "
                r"waiting for the reply to EHLO", timeout=25)
    d.wait_for_state(stuck, "sent", timeout=20)


def test_silent_after_mail_hits_deadline(relayq, fake_smarthost):
    srv = fake_smarthost(pipelining=False)
    srv.replies["mail"] = [HANG]
    config = srv.smarthost_config()
    config["timeouts"] = {"mail": "5m", "session": "5s"}
    d = relayq.daemon(smarthost=config)
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("silent after mail"))
    wait_log(d, r"session deadline [^\n]*waiting for the reply to MAIL FROM", timeout=15)
    d.wait_for_state(msg_id, "sent", timeout=20)


# --- SIZE, 8BITMIME, SMTPUTF8 ---


def test_size_limit_fails_before_mail(relayq, fake_smarthost):
    srv = fake_smarthost(size=4000)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [RCPT], message_bytes("too big", body=(b"z" * 70 + b"\r\n") * 100))
    details = d.wait_for_state(msg_id, "failed")

    assert not [c for c in srv.commands if f"<{SENDER}>" in c and c.upper().startswith("MAIL")]
    assert "exceeds the limit of 4000 bytes announced by" in details["recipients"][0]["text"]


@pytest.mark.parametrize("size", ["SIZE abc", "SIZE 99999999999999999999999", "SIZE -5", "SIZE"])
def test_garbage_size_ignored(relayq, fake_smarthost, size):
    srv = fake_smarthost(ehlo_extensions=["PIPELINING", size, "8BITMIME"])
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    msg_id = d.send(SENDER, [RCPT], message_bytes("garbage size"))
    d.wait_for_state(msg_id, "sent")
    assert any(o.upper().startswith("SIZE=") for o in srv.messages[0].mail_options)


def test_8bitmime_only_when_needed_and_offered(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    ascii_id = d.send(SENDER, [RCPT], message_bytes("ascii"))
    utf8_id = d.send(SENDER, [RCPT], message_bytes("utf8", body="Grüße\r\n".encode()))
    d.wait_for_state(ascii_id, "sent")
    d.wait_for_state(utf8_id, "sent")
    by_subject = {m.header("Subject")[0]: m for m in srv.messages}
    assert "BODY=8BITMIME" not in by_subject["ascii"].mail_options
    assert "BODY=8BITMIME" in by_subject["utf8"].mail_options

    plain = fake_smarthost(ehlo_extensions=["PIPELINING", "SIZE 1000000"])
    d2 = relayq.daemon(smarthost=plain.smarthost_config())
    d2.start()
    body = "Grüße, naïve café\r\n".encode()
    msg_id = d2.send(SENDER, [RCPT], message_bytes("utf8 without 8bitmime", body=body))
    d2.wait_for_state(msg_id, "sent")
    [message] = plain.messages
    assert "BODY=8BITMIME" not in message.mail_options
    assert message.content.endswith(body)


# --- limits ---


def test_messages_per_minute(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(max_messages_per_minute=3,
                                                      max_connections=2))
    d.start()

    started = time.monotonic()
    ids = [d.send(SENDER, [RCPT], message_bytes(f"rate {i}")) for i in range(5)]
    srv.wait_for_messages(3)
    time.sleep(3)
    assert len(srv.messages) == 3, srv.summary()
    states = [d.show(i)["state"] for i in ids]
    assert states.count("sent") == 3, states

    srv.wait_for_messages(5, timeout=75)
    assert time.monotonic() - started >= 55
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent")
