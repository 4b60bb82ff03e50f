"""
The pickup directory. relayqd takes complete NAME.eml files (renamed into
place, or closed after writing), commits them, then removes them.
Unusable files move to bad/ with a NAME.reason file, and a queue failure
leaves the file for a retry. Checked against the fake smart host's records.
"""

import os
import sqlite3
from pathlib import Path

import pytest


def message(subject: str, to=b"r@example.net", extra=b"", body=b"Hello.\n") -> bytes:
    return (b"From: app@example.com\n"
            b"To: " + to + b"\n"
            b"Subject: " + subject.encode() + b"\n"
            + extra + b"\n" + body)


def drop(directory: Path, name: str, data: bytes) -> Path:
    """Write DATA under a temporary name and rename it to NAME, as writers must."""
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(data)
    target = directory / name
    os.rename(temporary, target)
    return target


def start_pair(relayq, fake_smarthost, tmp_path, start=True, **sections):
    srv = fake_smarthost()
    pickup = tmp_path / "pickup"
    d = relayq.daemon(smarthost=srv.smarthost_config(), pickup={"path": str(pickup)}, **sections)
    if start:
        d.start()
        d.wait_for(pickup.is_dir, message="the pickup directory")
    else:
        pickup.mkdir()
    return srv, d, pickup


def head_and_body(content: bytes):
    head, _, body = content.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def field_names(content: bytes) -> list:
    head, _ = head_and_body(content)
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")]


def test_good_file_delivered_once_and_removed(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    data = message("pickup", to=b"A <a@example.net>,\n\tb@example.net",
                   extra=b"Bcc: hidden@example.net\n")

    path = drop(pickup, "one.eml", data)
    [delivered] = srv.wait_for_messages(1)
    d.wait_for(lambda: not path.exists(), message="one.eml removed")

    assert delivered.mail_from == "app@example.com"
    assert delivered.rcpt_tos == ["a@example.net", "b@example.net", "hidden@example.net"]
    assert b"bcc" not in field_names(delivered.content)
    assert head_and_body(delivered.content)[1] == b"Hello.\r\n"
    assert b"message-id" in field_names(delivered.content)
    [queued] = d.cli_json("list", "--state", "all")["messages"]
    d.wait_for_state(queued["id"], "sent")
    assert len(srv.transactions) == 1
    assert sorted(p.name for p in pickup.iterdir()) == []


def test_sender_from_return_path_then_sender(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)

    drop(pickup, "a.eml", message("return-path", extra=b"Return-Path: <bounces@example.com>\n"
                                                      b"Sender: s@example.com\n"))
    srv.wait_for_messages(1)
    drop(pickup, "b.eml", message("sender", extra=b"Sender: s@example.com\n"))
    first, second = srv.wait_for_messages(2)

    assert first.mail_from == "bounces@example.com"
    assert b"return-path" not in field_names(first.content)
    assert second.mail_from == "s@example.com"


def test_iis_envelope_fields(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    data = (b"X-Sender: app@example.com\r\n"
            b"X-Receiver: to@example.net\r\n"
            b"X-Receiver: hidden@example.net\r\n"
            b"From: App <app@example.com>\r\n"
            b"To: to@example.net\r\n"
            b"Subject: iis format\r\n"
            b"\r\n"
            b"Body.\r\n")

    drop(pickup, "iis.eml", data)
    [delivered] = srv.wait_for_messages(1)

    assert delivered.mail_from == "app@example.com"
    assert delivered.rcpt_tos == ["to@example.net", "hidden@example.net"]
    names = field_names(delivered.content)
    assert b"x-sender" not in names
    assert b"x-receiver" not in names


@pytest.mark.parametrize("data, reason", [
    (b"From: app@example.com\nSubject: nobody\n\nx\n", "no recipients"),
    (b"To: r@example.net\nSubject: no sender\n\nx\n", "no sender"),
    (b"From: app@example.com\nTo: broken@\n\nx\n", "invalid address in the header: To:"),
    ((b"X-Filler: " + b"y" * 900 + b"\n") * 1200 + b"To: r@example.net\n\nx\n",
     "header section too large"),
], ids=["no-recipients", "no-sender", "bad-address", "huge-header"])
def test_bad_file_quarantined_with_reason(relayq, fake_smarthost, tmp_path, data, reason):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    bad = pickup / "bad"

    drop(pickup, "broken.eml", data)
    d.wait_for(lambda: (bad / "broken.eml.reason").exists(), message="the reason file")

    assert (bad / "broken.eml").read_bytes() == data
    assert reason in (bad / "broken.eml.reason").read_text()
    assert not (pickup / "broken.eml").exists()
    assert bad.stat().st_mode & 0o777 == 0o700

    # relayqd keeps going with the next file.
    drop(pickup, "good.eml", message("after the bad one"))
    [delivered] = srv.wait_for_messages(1)
    assert delivered.header("Subject") == ["after the bad one"]
    assert d.running()


def test_second_bad_file_with_same_name_kept(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    bad = pickup / "bad"

    drop(pickup, "same.eml", b"Subject: first\n\nx\n")
    d.wait_for(lambda: (bad / "same.eml.reason").exists(), message="the first reason file")
    drop(pickup, "same.eml", b"Subject: second\n\nx\n")
    d.wait_for(lambda: (bad / "1-same.eml.reason").exists(), message="the second reason file")

    assert (bad / "same.eml").read_bytes() == b"Subject: first\n\nx\n"
    assert (bad / "1-same.eml").read_bytes() == b"Subject: second\n\nx\n"


def test_unfinished_files_not_taken(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)

    # A temporary name, and a .eml file that is still open for writing.
    temporary = pickup / "later.tmp"
    temporary.write_bytes(message("renamed later"))
    in_place = open(pickup / "in-place.eml", "wb")
    in_place.write(b"From: app@example.com\nTo: r@example.net\nSubject: written in place\n")
    in_place.flush()

    # A later complete file is delivered, so the earlier events were handled.
    drop(pickup, "marker.eml", message("marker"))
    [marker] = srv.wait_for_messages(1)
    assert marker.header("Subject") == ["marker"]
    assert temporary.exists()
    assert (pickup / "in-place.eml").exists()

    in_place.write(b"\nWritten in place.\n")
    in_place.close()
    srv.wait_for_messages(2)
    os.rename(temporary, pickup / "later.eml")
    delivered = srv.wait_for_messages(3)

    subjects = [m.header("Subject") for m in delivered]
    assert subjects == [["marker"], ["written in place"], ["renamed later"]]
    assert head_and_body(delivered[1].content)[1] == b"Written in place.\r\n"
    d.wait_for(lambda: list(pickup.iterdir()) == [], message="an empty pickup directory")


def test_files_present_at_start_taken(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path, start=False)
    for i in range(3):
        drop(pickup, f"early-{i}.eml", message(f"early {i}"))
    (pickup / "ignored.txt").write_bytes(message("not .eml"))
    (pickup / ".hidden.eml").write_bytes(message("hidden"))

    d.start()
    delivered = srv.wait_for_messages(3)

    assert sorted(m.header("Subject")[0] for m in delivered) == ["early 0", "early 1", "early 2"]
    d.wait_for(lambda: sorted(p.name for p in pickup.iterdir()) == [".hidden.eml", "ignored.txt"],
               message="only the ignored names left")
    assert len(srv.transactions) == 3


def test_many_files_delivered_exactly_once(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    count = 200

    for i in range(count):
        drop(pickup, f"bulk-{i:03d}.eml", message(f"bulk {i:03d}"))
    delivered = srv.wait_for_messages(count, timeout=180)
    d.wait_for(lambda: list(pickup.iterdir()) == [], timeout=60, message="an empty pickup directory")

    subjects = sorted(m.header("Subject")[0] for m in srv.messages)
    assert subjects == [f"bulk {i:03d}" for i in range(count)]
    assert len(delivered) == count
    assert len(srv.transactions) == count
    message_ids = {m.header("Message-ID")[0] for m in srv.messages}
    assert len(message_ids) == count


def test_queue_failure_leaves_file_and_retries(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    lock = sqlite3.connect(d.config["queue"]["path"], isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        path = drop(pickup, "wait.eml", message("queue was busy"))
        d.wait_for(lambda: "event=pickup_deferred" in d.log_text(), timeout=60,
                   message="the deferred pickup file in the log")
        assert path.exists()
        assert not (pickup / "bad").exists()
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    [delivered] = srv.wait_for_messages(1, timeout=60)
    assert delivered.header("Subject") == ["queue was busy"]
    d.wait_for(lambda: not path.exists(), message="wait.eml removed")
    assert not (pickup / "bad").exists()


def test_long_line_and_nul_byte_pass_through(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    long_line = b"z" * 5000

    drop(pickup, "long.eml", message("long", body=long_line + b"\nnul\x00byte\n"))
    [delivered] = srv.wait_for_messages(1)

    for line in delivered.wire.split(b"\r\n"):
        assert len(line) <= 998, len(line)
    body = head_and_body(delivered.content)[1]
    assert body.replace(b"\r\n", b"") == long_line + b"nul\x00byte"
    [queued] = d.cli_json("list", "--state", "all")["messages"]
    assert "z" * 5000 in d.cli_json("show", queued["id"], "--body")["body"]


def test_symlink_quarantined(relayq, fake_smarthost, tmp_path):
    srv, d, pickup = start_pair(relayq, fake_smarthost, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(message("must not be sent"))

    os.symlink(secret, pickup / ".link.tmp")
    os.rename(pickup / ".link.tmp", pickup / "link.eml")
    d.wait_for(lambda: (pickup / "bad" / "link.eml.reason").exists(), message="the reason file")

    assert "symbolic link" in (pickup / "bad" / "link.eml.reason").read_text()
    assert srv.messages == []
    assert secret.exists()
