"""Relaying through a real Postfix smart host with STARTTLS and SASL AUTH.

The first tests check the postfix_smarthost fixture on its own, so a broken
fixture is not mistaken for a relayqd bug.
"""

import os
import shutil
import smtplib
import ssl
import subprocess

import pytest

SENDER = "sender@example.org"
RECIPIENT = "rcpt@example.net"
MESSAGE_ID = "relay-e2e.1@example.org"

# Headers that Postfix puts above the ones it received: virtual(8) adds the
# first three at delivery, smtpd adds Received.
POSTFIX_ADDED_HEADERS = [b"return-path", b"x-original-to", b"delivered-to", b"received"]

# A message whose body is hard to relay unchanged. Lines are CRLF-terminated
# because that is what goes on the wire. The body has a lone ".", "..",
# other leading dots, a "From " line that mbox writers would quote, UTF-8
# text sent without BODY=8BITMIME, a trailing space and an empty last line.
# Nothing in it is a swaks token (%DATE% and the like) or a backslash-n.
TRICKY_MESSAGE = (
    "From: Sender <sender@example.org>\r\n"
    "To: Recipient <rcpt@example.net>\r\n"
    "Subject: relay through Postfix\r\n"
    "Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n"
    f"Message-ID: <{MESSAGE_ID}>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "first line\r\n"
    ".\r\n"
    "..\r\n"
    ".leading dot\r\n"
    "...three dots\r\n"
    "From the start of a line\r\n"
    "Grüße, naïve café, 日本語\r\n"
    "trailing space \r\n"
    "\r\n"
    "last line\r\n"
    "\r\n"
).encode("utf-8")


def _tls_context(ca_file):
    return ssl.create_default_context(cafile=ca_file)


def _simple_message(subject):
    return (f"From: {SENDER}\r\n"
            f"To: {RECIPIENT}\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            f"Message-ID: <{subject}@example.org>\r\n"
            f"\r\n"
            f"hello\r\n").encode()


def _swaks_transmitted(data):
    """Return the message swaks transmits for `--data @FILE` with DATA in FILE.

    swaks 20201014 rebuilds the header block with CRLF, converts bare LF to
    CRLF, dot-stuffs leading dots (undone by the server), and ends the data
    with "\\r\\n.\\r\\n" after the file's own last line ending, so the
    message gains one empty line. DATA must already be CRLF-terminated and
    free of swaks tokens for this to hold.
    """
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"%" not in data
    assert b"\\n" not in data
    return data + b"\r\n"


def _maildir_form(data):
    """Return DATA as virtual(8) stores it in a Maildir: LF line endings."""
    return data.replace(b"\r\n", b"\n")


def _swaks(server, port, data_file, *extra):
    argv = ["swaks", "--server", f"{server}:{port}", "--helo", "client.test",
            "--from", SENDER, "--to", RECIPIENT, "--data", f"@{data_file}",
            "--timeout", "30", *extra]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)


def _header_names(header_block):
    """Return the lower-case field names of a header block, in order."""
    names = []
    for line in header_block.splitlines():
        if line[:1] in (b" ", b"\t"):
            continue
        names.append(line.split(b":", 1)[0].strip().lower())
    return names


def test_postfix_fixture_accepts_authenticated_mail(postfix_smarthost):
    pf = postfix_smarthost

    with smtplib.SMTP(pf.host, pf.port, timeout=10) as client:
        client.ehlo("client.test")
        assert not client.has_extn("auth"), "AUTH must be offered only after STARTTLS"
        client.starttls(context=_tls_context(pf.ca_file))
        client.ehlo("client.test")
        assert client.has_extn("auth")
        mechanisms = client.esmtp_features["auth"].upper().split()
        assert "PLAIN" in mechanisms
        assert "LOGIN" in mechanisms

        client.login(pf.username, pf.password)
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        code, reply = client.data(_simple_message("fixture-check"))

    assert code == 250, reply
    messages = pf.messages(wait_count=1)
    assert len(messages) == 1
    header, body = pf.split_message(messages[0])
    assert body == b"hello\n"
    assert b"Message-ID: <fixture-check@example.org>" in header
    queue_id = pf.queue_id(messages[0])
    assert f"queued as {queue_id}".encode() in reply


def test_postfix_fixture_password_file(postfix_smarthost):
    pf = postfix_smarthost
    mode = os.stat(pf.password_file).st_mode & 0o777

    assert mode == 0o600
    with open(pf.password_file) as secret:
        assert secret.read() == pf.password


def test_postfix_fixture_rejects_unauthenticated_mail(postfix_smarthost):
    pf = postfix_smarthost

    with smtplib.SMTP(pf.host, pf.port, timeout=10) as client:
        client.starttls(context=_tls_context(pf.ca_file))
        client.ehlo("client.test")
        client.mail(SENDER)
        code, reply = client.rcpt(RECIPIENT)

    assert code == 554, reply
    assert pf.messages() == []


def test_postfix_fixture_rejects_wrong_password(postfix_smarthost):
    pf = postfix_smarthost

    with smtplib.SMTP(pf.host, pf.port, timeout=10) as client:
        client.starttls(context=_tls_context(pf.ca_file))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(pf.username, pf.password + "x")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_postfix_fixture_keeps_swaks_body(postfix_smarthost, tmp_path):
    """Check the expected-body rule of the relay test against Postfix alone."""
    pf = postfix_smarthost
    data_file = tmp_path / "message.eml"
    data_file.write_bytes(TRICKY_MESSAGE)

    result = _swaks(pf.host, pf.port, data_file, "--tls", "--tls-verify",
                    "--tls-ca-path", pf.ca_file, "--tls-sni", "localhost",
                    "--auth", "PLAIN", "--auth-user", pf.username,
                    "--auth-password", pf.password)

    assert result.returncode == 0, result.stdout + result.stderr
    delivered = pf.messages(wait_count=1)[0]
    _, expected_body = pf.split_message(_maildir_form(_swaks_transmitted(TRICKY_MESSAGE)))
    _, body = pf.split_message(delivered)
    assert body == expected_body


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_relay_to_postfix_keeps_body(relayq, postfix_smarthost, tmp_path):
    pf = postfix_smarthost
    daemon = relayq.daemon(smarthost={
        "host": pf.host,
        "port": pf.port,
        "tls": "starttls",
        "ca_file": pf.ca_file,
        "username": pf.username,
        "password_file": pf.password_file,
    })
    daemon.start()
    data_file = tmp_path / "message.eml"
    data_file.write_bytes(TRICKY_MESSAGE)

    result = _swaks("127.0.0.1", daemon.smtp_port, data_file)

    assert result.returncode == 0, result.stdout + result.stderr
    queued = daemon.cli_json("list", "--state", "all")["messages"]
    assert len(queued) == 1, queued
    msg_id = queued[0]["id"]
    assert queued[0]["sender"] == SENDER
    assert queued[0]["recipients"] == [RECIPIENT]

    daemon.wait_for_state(msg_id, "sent", timeout=15)
    delivered = pf.messages(wait_count=1)
    assert len(delivered) == 1

    # The Maildir stores LF line endings, so compare in that form.
    sent_header, sent_body = pf.split_message(_maildir_form(_swaks_transmitted(TRICKY_MESSAGE)))
    header, body = pf.split_message(delivered[0])
    assert body == sent_body

    # relayqd adds only its Received: field above the original header block.
    assert header.endswith(b"\n" + sent_header)
    added = header[:-len(sent_header)]
    assert _header_names(added) == POSTFIX_ADDED_HEADERS + [b"received"]

    postfix_received = pf.topmost_received(delivered[0])
    assert b"with ESMTPSA id" in postfix_received, "relayqd did not use STARTTLS and AUTH"
    queue_id = pf.queue_id(delivered[0])

    details = daemon.cli_json("show", str(msg_id))
    assert details["state"] == "sent"
    assert MESSAGE_ID in details["message_id"]
    assert [r["address"] for r in details["recipients"]] == [RECIPIENT]
    assert details["recipients"][0]["state"] == "sent"
    assert details["recipients"][0]["code"] == 250
    replies = [r["text"] or "" for r in details["recipients"]]
    replies += [a["text"] or "" for a in details["attempts"]]
    assert any(queue_id in text for text in replies), (queue_id, details)

    assert pf.password not in daemon.log_text()
