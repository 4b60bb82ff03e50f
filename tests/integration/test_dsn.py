"""Delivery status notifications: RFC 3464 format, who gets them, and no bounce storms."""

import email
import email.policy
import re
import time

import pytest

SENDER = "app@example.com"
BAD = "nobody@example.net"
GOOD = "customer@example.net"


def message_bytes(subject):
    return (b"From: Payments <app@example.com>\r\n"
            b"To: <nobody@example.net>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.replace(" ", "-").encode() + b"@example.com>\r\n"
            b"\r\nRemittance advice.\r\n")


def notifications(srv):
    return [m for m in srv.messages if m.mail_from == ""]


def relayed(srv):
    return [m for m in srv.messages if m.mail_from != ""]


def wait_log(d, pattern, timeout=20.0):
    regex = re.compile(pattern)
    return d.wait_for(lambda: regex.search(d.log_text()), timeout=timeout,
                      interval=0.1, message=f"log line matching {pattern!r}")


def test_rcpt_550_one_failure_one_dsn(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 <nobody@example.net>: Recipient address rejected"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [BAD], message_bytes("one bad recipient"))
    details = d.wait_for_state(msg_id, "failed")
    [dsn] = srv.wait_for_messages(1)
    time.sleep(1.5)

    assert len(details["attempts"]) == 1
    assert details["recipients"][0]["code"] == 550
    assert details["recipients"][0]["status"] == "5.1.1"
    assert len(notifications(srv)) == 1
    assert dsn.mail_from == ""
    assert dsn.rcpt_tos == [SENDER]


def test_dsn_is_rfc3464(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [BAD, GOOD], message_bytes("mixed result"))
    d.wait_for_state(msg_id, "failed")
    srv.wait_for_messages(2)
    [dsn] = notifications(srv)
    [original] = relayed(srv)
    assert original.rcpt_tos == [GOOD]

    report = email.message_from_bytes(dsn.content, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["Auto-Submitted"] == "auto-replied"
    assert SENDER in report["To"]
    assert report["Message-ID"] and report["Date"]
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]

    human = parts[0].get_content()
    assert BAD in human and "550 5.1.1 no such user" in human
    assert GOOD not in human

    status_text = parts[1].as_bytes().decode()
    assert re.search(r"Reporting-MTA: dns; \S+", status_text)
    assert f"Final-Recipient: rfc822; {BAD}" in status_text
    assert "Action: failed" in status_text
    assert "Status: 5.1.1" in status_text
    assert "Diagnostic-Code: smtp; 550 5.1.1 no such user" in status_text
    assert GOOD not in status_text

    headers = parts[2].as_bytes().decode()
    assert "Subject: mixed result" in headers
    assert "Remittance advice." not in headers


def test_no_dsn_about_a_dsn(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    srv.replies["mail"] = lambda n, address: "550 5.7.1 no bounces accepted" if address == "" else None
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, [BAD], message_bytes("bounce refused"))
    d.wait_for_state(msg_id, "failed")
    match = wait_log(d, r"event=dsn_queued dsn=(\d+)")
    dsn_id = int(match.group(1))
    d.wait_for_state(dsn_id, "failed")
    wait_log(d, rf"msg={dsn_id} event=dsn_skipped")
    time.sleep(1.5)

    messages = d.cli_json("list", "--state", "all")["messages"]
    assert sorted(m["id"] for m in messages) == sorted([msg_id, dsn_id])
    null_mails = [c for c in srv.commands if c.upper().startswith("MAIL FROM:<>")]
    assert len(null_mails) == 1


def test_null_sender_message_gets_no_dsn(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send("", [BAD], message_bytes("null sender"))
    d.wait_for_state(msg_id, "failed")
    wait_log(d, rf"msg={msg_id} event=dsn_skipped")
    assert len(d.cli_json("list", "--state", "all")["messages"]) == 1


def test_dsn_off(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config(), dsn="off")
    d.start()

    msg_id = d.send(SENDER, [BAD], message_bytes("dsn off"))
    d.wait_for_state(msg_id, "failed")
    time.sleep(1.5)
    assert len(d.cli_json("list", "--state", "all")["messages"]) == 1
    assert srv.messages == []


def test_dsn_to_admin(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      dsn={"mode": "admin", "address": "postmaster@example.com"})
    d.start()

    msg_id = d.send(SENDER, [BAD], message_bytes("to the admin"))
    d.wait_for_state(msg_id, "failed")
    [dsn] = srv.wait_for_messages(1)
    assert dsn.mail_from == ""
    assert dsn.rcpt_tos == ["postmaster@example.com"]
    assert f"A message from <{SENDER}>" in dsn.content.decode()


def test_dsn_rate_limit(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {BAD: "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config(), dsn={"max_per_hour": 2})
    d.start()

    ids = [d.send(SENDER, [BAD], message_bytes(f"storm {i}")) for i in range(4)]
    for msg_id in ids:
        d.wait_for_state(msg_id, "failed")
    srv.wait_for_messages(2)
    wait_log(d, r"event=dsn_suppressed limit=2/h suppressed=2")
    time.sleep(1.5)
    assert len(notifications(srv)) == 2


def test_size_failure_gets_dsn(relayq, fake_smarthost):
    srv = fake_smarthost(size=20000)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    big = message_bytes("too big") + (b"z" * 70 + b"\r\n") * 400
    msg_id = d.send(SENDER, [GOOD], big)
    d.wait_for_state(msg_id, "failed")
    [dsn] = srv.wait_for_messages(1)
    assert dsn.mail_from == ""
    assert b"exceeds the limit of 20000 bytes" in dsn.content
    assert b"Diagnostic-Code: X-relayq;" in dsn.content


def test_invalid_dsn_config(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), dsn={"mode": "admin"})
    d.write_config()
    result = d.cli("config", "check")
    assert result.returncode == 78
    assert "dsn.address: missing" in result.stderr
