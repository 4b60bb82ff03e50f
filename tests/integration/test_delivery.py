"""Delivery to a scripted smart host: envelope and body, retries, per-recipient results, AUTH failure."""

import base64
import email.utils
import re

import pytest

SENDER = "app@example.com"

PASSWORD = "pw-Zq7-relayq-secret-41f9"


def message_bytes(subject, extra_headers=b"", body=b"Hello.\r\n"):
    return (b"From: Payments <app@example.com>\r\n"
            b"To: Customer <customer@example.net>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            + extra_headers
            + b"\r\n" + body)


def split_received(content: bytes, original: bytes) -> bytes:
    """Return what precedes ORIGINAL in CONTENT, after checking ORIGINAL ends CONTENT."""
    assert content.endswith(original), f"relayed message does not end with the submitted bytes:\n{content!r}"
    return content[:len(content) - len(original)]


def test_plain_delivery(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    original = message_bytes(
        "plain delivery",
        b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        b"Message-ID: <plain-1@example.com>\r\n",
        b"line one\r\n.leading dot\r\n..two dots\r\n\r\nlast line\r\n")

    msg_id = d.send(SENDER, ["customer@example.net"], original)
    [message] = srv.wait_for_messages(1)

    assert message.mail_from == SENDER
    assert message.rcpt_tos == ["customer@example.net"]
    prefix = split_received(message.content, original)
    assert prefix.startswith(b"Received: "), prefix
    for line in prefix.split(b"\r\n")[:-1]:
        assert line.startswith(b"Received: ") or line[:1] in (b" ", b"\t"), prefix
    assert b"\r\n...two dots\r\n" in message.wire

    details = d.wait_for_state(msg_id, "sent")
    assert details["id"] == msg_id
    assert [r["address"] for r in details["recipients"]] == ["customer@example.net"]
    assert details["recipients"][0]["state"] == "sent"
    assert details["recipients"][0]["code"] == 250
    assert len(details["attempts"]) == 1
    assert details["attempts"][0]["code"] == 250


def test_data_end_451_then_250(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["data_end"] = ["451 4.3.0 try later", "250 2.0.0 queued as ABC"]
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes("retry after 451"))
    details = d.wait_for_state(msg_id, "sent")

    assert len(srv.messages) == 1
    assert len(srv.transactions) == 2
    assert srv.transactions[0].reply.startswith("451")
    assert len(details["attempts"]) == 2
    assert details["attempts"][0]["code"] == 451
    assert details["attempts"][0]["status"] == "4.3.0"
    assert details["attempts"][1]["code"] == 250
    assert details["attempt_count"] == 2


def test_rcpt_550_one_of_two(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {"bad@example.net": "550 5.1.1 no such user"}
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, ["good@example.net", "bad@example.net"],
                    message_bytes("one bad recipient"))
    details = d.wait_for(lambda: final_or_none(d, msg_id), message="a final state")

    by_address = {r["address"]: r for r in details["recipients"]}
    assert by_address["bad@example.net"]["state"] == "failed"
    assert by_address["bad@example.net"]["code"] == 550
    assert by_address["bad@example.net"]["status"] == "5.1.1"
    assert by_address["good@example.net"]["state"] == "sent"
    assert by_address["good@example.net"]["code"] == 250

    # A delivery status notification to the sender (null sender) may follow.
    relayed = [m for m in srv.messages if m.mail_from != ""]
    notifications = [m for m in srv.messages if m.mail_from == ""]
    assert len(relayed) == 1
    assert relayed[0].rcpt_tos == ["good@example.net"]
    assert len(notifications) <= 1
    for notification in notifications:
        assert notification.rcpt_tos == [SENDER]


def final_or_none(d, msg_id):
    details = d.show(msg_id)
    return details if details["state"] in ("sent", "failed") else None


def test_host_down_then_up(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes("host down"))
    details = d.wait_for(lambda: attempted(d, msg_id), message="a failed connection attempt")

    assert details["state"] in ("deferred", "queued")
    attempt = details["attempts"][0]
    assert attempt["code"] in (0, None)
    assert re.search(r"connect|refused", attempt["text"] or "", re.IGNORECASE), attempt
    assert details["last_error"]

    srv.start()
    d.wait_for_state(msg_id, "sent")
    assert len(srv.messages) == 1


def attempted(d, msg_id):
    details = d.show(msg_id)
    return details if details["attempts"] and details["state"] != "sending" else None


def test_auth_535_stops_before_mail(relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=("payments", PASSWORD))
    srv.auth_reply = "535 5.7.8 bad credentials"
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes("auth fails"))
    details = d.wait_for(lambda: auth_error(d, msg_id), message="an authentication error")

    assert srv.commands_starting("AUTH"), srv.summary()
    assert srv.commands_starting("MAIL") == [], srv.summary()
    assert srv.commands_starting("RCPT") == [], srv.summary()
    assert srv.commands_starting("DATA") == [], srv.summary()
    for connection in srv.connections:
        after_auth = False
        for line in connection.commands:
            if line.upper().startswith("AUTH"):
                after_auth = True
            elif after_auth:
                assert line.upper() in ("QUIT", "RSET"), connection.commands
    assert details["state"] in ("queued", "deferred")
    assert srv.messages == []

    assert_password_hidden(d)


def auth_error(d, msg_id):
    details = d.show(msg_id)
    if details["last_error"] and "auth" in details["last_error"].lower():
        return details
    return None


def assert_password_hidden(d):
    forms = {
        "password": PASSWORD,
        "base64 password": base64.b64encode(PASSWORD.encode()).decode(),
        "AUTH PLAIN response": base64.b64encode(f"\0payments\0{PASSWORD}".encode()).decode(),
    }
    outputs = {}
    commands = [("list",), ("list", "--json"), ("list", "--state", "all", "--json"),
                ("stats",), ("stats", "--json"), ("config", "check"), ("diagnose",)]
    for msg in d.cli_json("list", "--state", "all")["messages"]:
        commands += [("show", msg["id"]), ("show", msg["id"], "--json")]
    for args in commands:
        result = d.cli(*args)
        outputs[f"relayq {' '.join(map(str, args))}"] = result.stdout + result.stderr
    outputs["relayqd log"] = d.log_text()

    for where, text in outputs.items():
        for form, secret in forms.items():
            assert secret not in text, f"{form} appears in the output of {where}"


def test_message_id_and_date_added(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["data_end"] = ["451 4.3.0 try later"]
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    original = message_bytes("no message id")
    msg_id = d.send(SENDER, ["customer@example.net"], original)
    details = d.wait_for_state(msg_id, "sent")

    assert len(srv.transactions) == 2
    first, second = srv.transactions
    assert len(first.header("Message-ID")) == 1
    assert first.header("Message-ID") == second.header("Message-ID")
    message_id = first.header("Message-ID")[0]
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id), message_id
    assert details["message_id"].strip("<>") == message_id.strip("<>")

    for transaction in (first, second):
        [date] = transaction.header("Date")
        assert email.utils.parsedate_to_datetime(date) is not None
        assert original.split(b"\r\n\r\n", 1)[1] in transaction.content


def test_connections_reused(relayq, fake_smarthost):
    srv = fake_smarthost()
    # The first session waits for its greeting while the other messages
    # arrive, so with one connection allowed they all queue behind it.
    srv.delay["greeting"] = [0.5]
    d = relayq.daemon(smarthost=srv.smarthost_config(max_connections=1))
    d.start()

    ids = [d.send(SENDER, [f"customer{i}@example.net"], message_bytes(f"reuse {i}"))
           for i in range(5)]
    srv.wait_for_messages(5)
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent")

    used = [c for c in srv.connections if c.transactions]
    assert len(used) == 1, srv.summary()
    assert used[0].ehlo_count == 1
    assert len(used[0].transactions) == 5
    assert len(srv.connections) == 1
