"""
The admin commands against a running relayqd with real traffic through
the fake smart host: hold, release, retry, flush, delete, stats, history,
send, config check, list filters, and list/stats under load.

Most tests set retry.initial to an hour, so that after the first failed
attempt only an admin command can make relayqd try a message again.
"""

import email.header
import json
import re
import smtplib
import threading
import time
import uuid

from relayq_fixture import STATES

SENDER = "app@example.com"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# Only an admin command makes relayqd retry a deferred message.
SLOW_RETRY = {"initial": "1h", "max": "2h", "max_age": "1d"}

# From an admin command to the message's arrival at the smart host.
COMMAND_DEADLINE = 1.5


def message_bytes(token, subject="admin", sender=SENDER, to="customer@example.net"):
    return (f"From: {sender}\r\n"
            f"To: {to}\r\n"
            f"Subject: {subject} {token}\r\n"
            f"\r\n"
            f"token {token}\r\n").encode()


def new_token():
    return uuid.uuid4().hex[:12]


def relayed(srv):
    """Messages the smart host accepted, without delivery status notifications."""
    with srv.lock:
        return [m for m in srv.messages if m.mail_from != ""]


def tokens_of(messages):
    found = []
    for message in messages:
        found += re.findall(rb"token ([0-9a-f]{12})", message.content)
    return [t.decode() for t in found]


def deferred_daemon(relayq, fake_smarthost, **sections):
    """A daemon whose smart host is down (not started yet) and retries only on command."""
    srv = fake_smarthost(start=False)
    sections.setdefault("retry", SLOW_RETRY)
    d = relayq.daemon(smarthost=srv.smarthost_config(), **sections)
    d.start()
    return srv, d


def send_deferred(d, token, **kwargs):
    """Submit a message and wait until its first attempt failed and it is deferred."""
    msg_id = d.send(SENDER, [kwargs.pop("to", "customer@example.net")],
                    message_bytes(token, **kwargs))
    d.wait_for_state(msg_id, "deferred")
    return msg_id


def wait_arrival(srv, token, deadline):
    """Wait until a message carrying TOKEN arrived; returns the seconds it took from now."""
    start = time.monotonic()
    srv.wait_for(lambda: token in tokens_of([m for m in srv.messages if m.mail_from != ""]),
                 timeout=deadline + 5, message=f"message with token {token}")
    return time.monotonic() - start


def stats(d):
    return d.cli_json("stats")


def cli_lines(result):
    return [line for line in result.stdout.splitlines() if line.strip()]


# --- hold, release, retry, flush ---


def test_hold_stops_delivery_release_resumes(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    token = new_token()
    msg_id = send_deferred(d, token)

    result = d.cli("hold", msg_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{msg_id}: held"
    assert d.show(msg_id)["state"] == "held"

    # Neither a running smart host nor a flush sends a held message.
    srv.start()
    result = d.cli("flush")
    assert result.returncode == 0, result.stderr
    time.sleep(COMMAND_DEADLINE)
    assert relayed(srv) == []
    assert d.show(msg_id)["state"] == "held"

    again = d.cli("hold", msg_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{msg_id}: already held"

    result = d.cli("release", msg_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{msg_id}: released"
    elapsed = wait_arrival(srv, token, COMMAND_DEADLINE)
    assert elapsed < COMMAND_DEADLINE
    d.wait_for_state(msg_id, "sent")
    assert tokens_of(relayed(srv)) == [token]


def test_retry_delivers_within_a_second(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    token = new_token()
    msg_id = send_deferred(d, token)
    next_attempt = d.show(msg_id)["next_attempt"]
    assert next_attempt is not None

    srv.start()
    time.sleep(0.5)
    assert relayed(srv) == []

    start = time.monotonic()
    result = d.cli("retry", msg_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{msg_id}: queued"
    wait_arrival(srv, token, COMMAND_DEADLINE)
    assert time.monotonic() - start < COMMAND_DEADLINE
    d.wait_for_state(msg_id, "sent")


def test_flush_delivers_every_deferred_message(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    tokens = [new_token() for _ in range(3)]
    ids = [send_deferred(d, t) for t in tokens]

    srv.start()
    time.sleep(0.5)
    assert relayed(srv) == []

    start = time.monotonic()
    result = d.cli("flush")
    assert result.returncode == 0, result.stderr
    assert "3 messages" in result.stdout
    srv.wait_for(lambda: len([m for m in srv.messages if m.mail_from != ""]) >= 3,
                 timeout=COMMAND_DEADLINE + 5, message="3 flushed messages")
    assert time.monotonic() - start < COMMAND_DEADLINE
    assert sorted(tokens_of(relayed(srv))) == sorted(tokens)
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent")

    result = d.cli("flush")
    assert result.returncode == 0, result.stderr
    assert "No deferred messages" in result.stdout


def test_bulk_hold_and_release(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    tokens = [new_token() for _ in range(3)]
    ids = [send_deferred(d, t) for t in tokens]

    result = d.cli("hold", "--all")
    assert result.returncode == 0, result.stderr
    assert "Held 3 messages" in result.stdout
    assert {d.show(i)["state"] for i in ids} == {"held"}

    srv.start()
    result = d.cli("release", "--all")
    assert result.returncode == 0, result.stderr
    assert "Released 3 messages" in result.stdout
    srv.wait_for(lambda: len([m for m in srv.messages if m.mail_from != ""]) >= 3,
                 timeout=COMMAND_DEADLINE + 5, message="3 released messages")
    assert sorted(tokens_of(relayed(srv))) == sorted(tokens)


def test_retry_failed_message(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.rcpt_reply = {"customer@example.net": ["550 5.1.1 mailbox unavailable"]}
    d = relayq.daemon(smarthost=srv.smarthost_config(), retry=SLOW_RETRY)
    d.start()
    token = new_token()
    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes(token))
    details = d.wait_for_state(msg_id, "failed")
    assert details["recipients"][0]["state"] == "failed"

    # The reply list is used up: the next RCPT gets the default 250.
    result = d.cli("retry", msg_id)
    assert result.returncode == 0, result.stderr
    wait_arrival(srv, token, COMMAND_DEADLINE)
    details = d.wait_for_state(msg_id, "sent")
    assert details["recipients"][0]["state"] == "sent"
    assert len(details["attempts"]) == 2


def test_retry_and_release_reject_wrong_states(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    msg_id = send_deferred(d, new_token())

    result = d.cli("release", msg_id)
    assert result.returncode == 1
    assert f"message {msg_id} is deferred" in result.stderr

    d.cli("hold", msg_id, check=True)
    result = d.cli("retry", msg_id)
    assert result.returncode == 1
    assert "release" in result.stderr
    assert d.show(msg_id)["state"] == "held"


# --- delete ---


def test_delete_removes_message(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    kept_token, removed_token = new_token(), new_token()
    kept_id = send_deferred(d, kept_token)
    removed_id = send_deferred(d, removed_token)

    result = d.cli("delete", removed_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{removed_id}: deleted"

    show_removed = d.cli("show", removed_id)
    assert show_removed.returncode == 1
    listed = [m["id"] for m in d.cli_json("list", "--state", "all")["messages"]]
    assert listed == [kept_id]

    srv.start()
    d.cli("flush", check=True)
    d.wait_for_state(kept_id, "sent")
    time.sleep(0.5)
    assert tokens_of(relayed(srv)) == [kept_token]


def test_delete_by_state(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["rcpt"] = "550 5.1.1 mailbox unavailable"
    d = relayq.daemon(smarthost=srv.smarthost_config(), retry=SLOW_RETRY)
    d.start()
    ids = [d.send(SENDER, ["customer@example.net"], message_bytes(new_token()))
           for _ in range(2)]
    for msg_id in ids:
        d.wait_for_state(msg_id, "failed")

    result = d.cli("delete", "--state", "failed")
    assert result.returncode == 0, result.stderr
    assert re.search(r"Deleted \d+ messages?", result.stdout), result.stdout
    remaining = {m["id"] for m in d.cli_json("list", "--state", "all")["messages"]}
    assert remaining.isdisjoint(ids)

    usage = d.cli("delete", "--state", "sending")
    assert usage.returncode == 64


# --- a message in flight ---


def test_hold_refused_while_sending(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.delay = {"data_end": 3}
    d = relayq.daemon(smarthost=srv.smarthost_config(), retry=SLOW_RETRY)
    d.start()
    token = new_token()
    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes(token))
    d.wait_for_state(msg_id, "sending")

    for command in ("hold", "delete"):
        result = d.cli(command, msg_id)
        assert result.returncode == 75, (command, result.stdout, result.stderr)
        assert f"message {msg_id} is being sent now" in result.stderr
        assert "try again" in result.stderr
        assert d.show(msg_id)["state"] == "sending"

    d.wait_for_state(msg_id, "sent")
    assert tokens_of(relayed(srv)) == [token]


# --- exit codes ---


def test_unknown_ids_and_bad_usage(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    msg_id = send_deferred(d, new_token())

    for command in ("hold", "release", "retry", "delete"):
        result = d.cli(command, "999999")
        assert result.returncode == 1, (command, result.stderr)
        assert "message 999999 not found" in result.stderr

    # An unknown id does not stop the others.
    result = d.cli("hold", "999999", msg_id)
    assert result.returncode == 1
    assert f"{msg_id}: held" in result.stdout
    assert d.show(msg_id)["state"] == "held"

    usage = [
        ("hold",),
        ("hold", "--all", msg_id),
        ("hold", "--state", "bogus"),
        ("release", "--state", "held"),
        ("retry", "--state", "sent"),
        ("delete", "--all"),
        ("flush", "extra"),
        ("list", "--limit", "ten"),
        ("list", "--since", "yesterday"),
        ("list", "--state", "receiving"),
        ("history", "--until", "2026-13-01"),
        ("stats", "--bogus"),
        ("send", "--to", "customer@example.net"),
        ("send", "--from", SENDER),
        ("send", "--from", "not-an-address", "--to", "customer@example.net"),
        ("config",),
        ("config", "frob"),
    ]
    for args in usage:
        result = d.cli(*args, input="")
        assert result.returncode == 64, (args, result.stdout, result.stderr)
        assert result.stderr.strip(), args


# --- stats ---


def test_stats_counts_match_smart_host(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    ids = [d.send(SENDER, ["customer@example.net"], message_bytes(new_token()))
           for _ in range(5)]
    for msg_id in ids:
        d.wait_for_state(msg_id, "sent")

    report = stats(d)
    assert set(report["states"]) == set(STATES)
    assert report["states"]["sent"] == len(srv.messages) == 5
    assert sum(report["states"].values()) == 5
    assert report["total"] == 5
    assert report["sent_last_hour"] == 5
    assert report["sent_last_day"] == 5
    assert report["oldest_queued_age"] is None
    assert report["last_error"] is None
    assert report["smarthost"]["status"] == "ok"
    assert report["smarthost"]["host"] == f"127.0.0.1:{srv.port}"
    assert RFC3339_UTC.match(report["smarthost"]["since"])

    text = d.cli("stats")
    assert text.returncode == 0, text.stderr
    assert re.search(r"sent\s+5", text.stdout)
    assert "ok" in text.stdout


def test_stats_deferring_and_last_error(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.replies["mail"] = "451 4.3.0 try again later"
    d = relayq.daemon(smarthost=srv.smarthost_config(), retry=SLOW_RETRY)
    d.start()
    msg_id = send_deferred(d, new_token())

    report = stats(d)
    assert report["states"]["deferred"] == 1
    assert isinstance(report["oldest_queued_age"], int)
    assert report["oldest_queued_age"] >= 0
    assert report["oldest_queued_id"] == msg_id
    assert report["smarthost"]["status"] == "deferring"
    assert "451" in report["smarthost"]["error"]
    assert report["last_error"]["message"] == msg_id
    assert "451 4.3.0 try again later" in report["last_error"]["text"]
    assert RFC3339_UTC.match(report["last_error"]["time"])


def test_stats_auth_failing(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(auth=("payments", "right-password"), auth_require_tls=False)
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("wrong-password\n")
    wrong.chmod(0o600)
    config = srv.smarthost_config(password_file=str(wrong))
    d = relayq.daemon(smarthost=config, retry=SLOW_RETRY)
    d.start()
    d.send(SENDER, ["customer@example.net"], message_bytes(new_token()))

    report = d.wait_for(lambda: (r := stats(d))["smarthost"]["status"] == "auth failing" and r,
                        message="smart host status 'auth failing'")
    assert "535" in (report["smarthost"]["error"] or "")
    assert relayed(srv) == []


# --- history ---


def test_history_finds_sent_message(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    other_id = d.send(SENDER, ["someone@example.org"], message_bytes(new_token()))
    msg_id = d.send(SENDER, ["Customer@Example.NET", "copy@example.net"],
                    message_bytes(new_token(), to="Customer@Example.NET"))
    d.wait_for_state(other_id, "sent")
    details = d.wait_for_state(msg_id, "sent")

    found = d.cli_json("history", "--to", "customer@example.net")
    assert found["more"] is False
    [entry] = found["messages"]
    assert entry["id"] == msg_id
    assert entry["recipients"] == ["Customer@Example.NET", "copy@example.net"]
    assert entry["sender"] == SENDER
    assert RFC3339_UTC.match(entry["sent_at"])
    assert entry["sent_at"] == details["sent_at"]
    assert entry["message_id"] == details["message_id"]
    assert re.fullmatch(r"FAKE\d{4}", entry["smarthost_queue_id"]), entry
    assert entry["smarthost_queue_id"] in entry["final_reply"]
    accepted = [m for m in srv.messages if "copy@example.net" in m.rcpt_tos]
    assert entry["smarthost_queue_id"] in accepted[0].reply

    by_id = d.cli_json("history", "--message-id", details["message_id"].strip("<>"))
    assert [m["id"] for m in by_id["messages"]] == [msg_id]
    assert d.cli_json("history", "--to", "nobody@example.net")["messages"] == []
    assert d.cli_json("history", "--since", "1h")["messages"][0]["id"] == msg_id
    assert d.cli_json("history", "--until", "2000-01-01")["messages"] == []
    limited = d.cli_json("history", "--limit", "1")
    assert [m["id"] for m in limited["messages"]] == [msg_id]
    assert limited["more"] is True

    text = d.cli("history", "--to", "CUSTOMER@example.net")
    assert text.returncode == 0, text.stderr
    assert entry["smarthost_queue_id"] in text.stdout
    assert re.search(rf"\b{msg_id}\b", text.stdout)

    shown = d.show(msg_id)
    assert shown["smarthost_queue_id"] == entry["smarthost_queue_id"]


def test_purge_removes_old_bodies_and_records(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(),
                      queue={"keep_sent": "1s", "keep_history": "1h"})
    d.start()
    msg_id = d.send(SENDER, ["customer@example.net"], message_bytes(new_token()))
    d.wait_for_state(msg_id, "sent")
    assert d.show(msg_id)["body_purged"] is False

    # A pass runs at start. Times are whole seconds, so after 2.2 s the
    # body is older than keep_sent whatever the fraction at sent_at.
    d.stop()
    time.sleep(2.2)
    d.start()
    d.wait_for(lambda: d.show(msg_id)["body_purged"], message="the body purged")
    [entry] = d.cli_json("history")["messages"]
    assert entry["body_purged"] is True
    text = d.cli("show", msg_id, "--body")
    assert text.returncode == 0, text.stderr
    assert "removed after queue.keep_sent" in text.stdout
    assert d.cli_json("show", msg_id, "--body")["body"] is None

    d.stop()
    d.config["queue"]["keep_history"] = "1s"
    d.start()
    d.wait_for(lambda: d.cli("show", msg_id).returncode == 1,
               message="the record removed after keep_history")
    assert d.cli_json("history")["messages"] == []


# --- send ---


def test_send_with_daemon_stopped(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    d.stop()

    token = new_token()
    result = d.cli("send", "--from", SENDER, "--to", "customer@example.net",
                   "--to", "<copy@example.net>", "--subject", "Remittance 4711",
                   input=f"Payment: 4711 was made.\ntoken {token}\n")
    assert result.returncode == 0, result.stderr
    msg_id = int(result.stdout.strip())
    assert d.show(msg_id)["state"] == "queued"

    d.start()
    d.wait_for_state(msg_id, "sent")
    [message] = relayed(srv)
    assert message.mail_from == SENDER
    assert message.rcpt_tos == ["customer@example.net", "copy@example.net"]
    assert message.header("From") == [SENDER]
    assert message.header("To") == ["customer@example.net, copy@example.net"]
    assert message.header("Subject") == ["Remittance 4711"]
    assert len(message.header("Date")) == 1
    assert len(message.header("Message-ID")) == 1
    body = message.message().get_payload()
    assert "Payment: 4711 was made." in body
    assert f"token {token}" in body


def test_send_keeps_input_header(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    token = new_token()
    source = tmp_path / "message.eml"
    source.write_bytes(b"From: Payments <payments@example.com>\n"
                       b"Subject: =?UTF-8?B?w4RuZGVydW5n?=\n"
                       b"Bcc: hidden@example.net\n"
                       b"\n"
                       b"token " + token.encode() + b"\n")

    result = d.cli("send", "--from", SENDER, "--to", "customer@example.net",
                   "--subject", "ignored", source)
    assert result.returncode == 0, result.stderr
    assert "--subject is ignored" in result.stderr
    msg_id = int(result.stdout.strip())
    d.wait_for_state(msg_id, "sent")

    [message] = relayed(srv)
    assert message.header("From") == ["Payments <payments@example.com>"]
    assert message.header("To") == ["undisclosed-recipients:;"]
    assert message.header("Subject") == ["=?UTF-8?B?w4RuZGVydW5n?="]
    assert message.header("Bcc") == []
    assert message.rcpt_tos == ["customer@example.net"]
    assert tokens_of([message]) == [token]


def test_send_non_ascii_subject(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    result = d.cli("send", "--from", SENDER, "--to", "customer@example.net",
                   "--subject", "Überweisung " * 8, input="Hello.\n")
    assert result.returncode == 0, result.stderr
    d.wait_for_state(int(result.stdout), "sent")

    [message] = relayed(srv)
    raw = message.header("Subject")[0]
    assert raw.startswith("=?UTF-8?B?")
    decoded = "".join(part.decode() if isinstance(part, bytes) else part
                      for part, _ in email.header.decode_header(raw))
    assert decoded.replace(" ", "") == ("Überweisung " * 8).replace(" ", "")


def test_send_bad_input(relayq, tmp_path):
    d = relayq.daemon(smarthost={"host": "127.0.0.1", "port": 9, "tls": "none"})
    d.start()

    nul = d.cli("send", "--from", SENDER, "--to", "customer@example.net",
                input="Hello\0world\n")
    assert nul.returncode == 65, nul.stderr
    assert "NUL" in nul.stderr

    missing = d.cli("send", "--from", SENDER, "--to", "customer@example.net",
                    tmp_path / "no-such-file.eml")
    assert missing.returncode == 66, missing.stderr
    assert "no-such-file.eml" in missing.stderr

    assert d.cli_json("list", "--state", "all")["messages"] == []


# --- config check ---


def test_config_check(relayq, tmp_path):
    d = relayq.daemon(smarthost={"host": "127.0.0.1", "port": 9, "tls": "none"})
    d.write_config()

    result = d.cli("config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{d.config_path}: configuration is valid"

    # The last -c wins, so this checks BAD.
    bad = tmp_path / "bad.yaml"
    bad.write_text("smarthost:\n  host: mail.example.com\n  prot: 25\n")
    result = d.cli("-c", bad, "config", "check")
    assert result.returncode == 78, result.stderr
    assert re.search(rf"{re.escape(str(bad))}:3:\d+: ", result.stderr), result.stderr
    assert result.stdout == ""


# --- list ---


def test_list_filters(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    first = d.send("billing@example.com", ["alice@customer.example"],
                   message_bytes(new_token()))
    second = d.send("payments@example.com", ["bob@other.example"],
                    message_bytes(new_token()))
    third = d.send("payments@example.com", ["carol@customer.example", "dave@x.example"],
                   message_bytes(new_token()))
    for msg_id in (first, second, third):
        d.wait_for_state(msg_id, "deferred")

    def ids(*args):
        return [m["id"] for m in d.cli_json("list", *args)["messages"]]

    assert ids() == [first, second, third]
    assert ids("--to", "CUSTOMER.example") == [first, third]
    assert ids("--to", "dave@") == [third]
    assert ids("--from", "Payments@") == [second, third]
    assert ids("--from", "payments", "--to", "bob") == [second]
    assert ids("--since", "1h") == [first, second, third]
    assert ids("--since", "2999-01-01T00:00:00Z") == []
    assert ids("--state", "held") == []
    assert ids("--state", "deferred", "--limit", "2") == [first, second]

    page = d.cli_json("list", "--limit", "1", "--offset", "1")
    assert [m["id"] for m in page["messages"]] == [second]
    assert page["more"] is True
    assert d.cli_json("list", "--offset", "2")["more"] is False

    table = d.cli("list", "--limit", "2")
    assert table.returncode == 0, table.stderr
    lines = cli_lines(table)
    assert lines[0].split()[:3] == ["ID", "STATE", "AGE"]
    assert "--offset 2" in lines[-1]
    assert "No messages match" in d.cli("list", "--to", "nobody").stdout


def test_read_only_commands_without_daemon(relayq, fake_smarthost):
    srv, d = deferred_daemon(relayq, fake_smarthost)
    msg_id = send_deferred(d, new_token())
    d.stop()

    assert [m["id"] for m in d.cli_json("list")["messages"]] == [msg_id]
    assert d.cli_json("show", msg_id)["state"] == "deferred"
    assert stats(d)["states"]["deferred"] == 1
    assert d.cli_json("history")["messages"] == []
    result = d.cli("hold", msg_id)
    assert result.returncode == 0, result.stderr
    assert d.show(msg_id)["state"] == "held"


# --- under load ---


def submit_many(port, count, connection_index, errors):
    """Submit COUNT messages over one SMTP connection."""
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="load.test", timeout=60) as client:
            for i in range(count):
                client.sendmail(SENDER, ["customer@example.net"],
                                message_bytes(f"{connection_index:04d}{i:08d}"))
    except Exception as error:  # noqa: BLE001 - reported by the test
        errors.append(repr(error))


def test_list_and_stats_during_1000_messages(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(max_connections=4),
                      log={"level": "info"})
    d.start()
    total = 1000
    connections = 4

    failures, totals, polls = [], [], []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            for command in ("stats", "list"):
                result = d.cli(command, "--json")
                polls.append(command)
                if result.returncode != 0:
                    failures.append(f"{command}: exit {result.returncode}: {result.stderr}")
                    continue
                try:
                    document = json.loads(result.stdout)
                except json.JSONDecodeError as error:
                    failures.append(f"{command}: invalid JSON ({error})")
                    continue
                if command == "stats":
                    totals.append(sum(document["states"].values()))
                elif len(document["messages"]) > total:
                    failures.append(f"list returned {len(document['messages'])} messages")
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    errors = []
    senders = [threading.Thread(target=submit_many,
                                args=(d.smtp_port, total // connections, n, errors))
               for n in range(connections)]
    try:
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(120)
        assert errors == []
        srv.wait_for_messages(total, timeout=120)
        d.wait_for(lambda: stats(d)["states"]["sent"] == total, timeout=30,
                   interval=0.2, message=f"{total} messages sent")
    finally:
        stop.set()
        poller.join(60)

    assert failures == []
    assert len(polls) >= 10
    assert max(totals) <= total
    report = stats(d)
    assert report["states"]["sent"] == total
    assert report["total"] == total
    assert report["sent_last_hour"] == total
    assert len(srv.messages) == total
    assert d.cli_json("list")["messages"] == []
