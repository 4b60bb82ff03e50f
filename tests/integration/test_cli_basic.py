"""relayq list/show JSON fields, and exit codes for an unknown id and an unknown command."""

import re

from relayq_fixture import STATES, free_port

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")

# Nothing listens there; these tests never queue mail for it.
UNUSED_SMARTHOST = {"host": "127.0.0.1", "port": free_port(), "tls": "none"}

MESSAGE = (b"From: app@example.com\r\n"
           b"To: customer@example.net\r\n"
           b"Subject: cli\r\n"
           b"\r\n"
           b"Hello.\r\n")


def deferred_message(relayq, fake_smarthost):
    """A daemon whose smart host is down, and the id of one message with an attempt."""
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    msg_id = d.send("app@example.com", ["customer@example.net", "other@example.net"], MESSAGE)
    d.wait_for(lambda: d.show(msg_id)["attempts"], message="a delivery attempt")
    return d, msg_id


def assert_time(value):
    assert isinstance(value, str) and RFC3339_UTC.match(value), value


def assert_common_fields(item, msg_id):
    assert item["id"] == msg_id
    assert item["state"] in STATES
    assert item["sender"] == "app@example.com"
    assert isinstance(item["size"], int) and item["size"] >= len(MESSAGE)
    assert_time(item["created"])
    assert isinstance(item["attempt_count"], int) and item["attempt_count"] >= 1
    assert item["next_attempt"] is None or RFC3339_UTC.match(item["next_attempt"])
    assert item["last_error"] is None or isinstance(item["last_error"], str)


def test_list_json_fields(relayq, fake_smarthost):
    d, msg_id = deferred_message(relayq, fake_smarthost)

    listed = d.cli_json("list")

    assert "messages" in listed
    [item] = listed["messages"]
    assert_common_fields(item, msg_id)
    assert item["recipients"] == ["customer@example.net", "other@example.net"]
    assert item["last_error"]


def test_list_empty_queue(relayq):
    d = relayq.daemon(smarthost=UNUSED_SMARTHOST)
    d.start()

    assert d.cli_json("list")["messages"] == []


def test_show_json_fields(relayq, fake_smarthost):
    d, msg_id = deferred_message(relayq, fake_smarthost)

    details = d.cli_json("show", msg_id)

    assert_common_fields(details, msg_id)
    assert isinstance(details["message_id"], str) and details["message_id"]
    assert [r["address"] for r in details["recipients"]] == [
        "customer@example.net", "other@example.net"]
    for recipient in details["recipients"]:
        assert set(recipient) >= {"address", "state", "code", "status", "text"}
    assert len(details["attempts"]) >= 1
    for attempt in details["attempts"]:
        assert set(attempt) >= {"time", "host", "code", "status", "text"}
        assert_time(attempt["time"])
        assert attempt["host"]


def test_show_unknown_id(relayq):
    d = relayq.daemon(smarthost=UNUSED_SMARTHOST)
    d.start()

    result = d.cli("show", "999999")

    assert result.returncode == 1
    assert result.stderr.strip()
    assert result.stdout == ""


def test_unknown_command(relayq):
    d = relayq.daemon(smarthost=UNUSED_SMARTHOST)
    d.start()

    result = d.cli("no-such-command")

    assert result.returncode == 64
    assert result.stderr.strip()
