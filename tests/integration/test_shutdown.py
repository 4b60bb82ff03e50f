"""SIGTERM: a transfer in flight finishes, queued mail stays queued, a restart resumes."""

import socket
import time

SENDER = "app@example.com"


def message(subject):
    return (b"From: app@example.com\r\nTo: customer@example.net\r\n"
            b"Subject: " + subject.encode() + b"\r\n\r\nbody\r\n")


def test_sigterm_lets_delivery_in_flight_finish(relayq, fake_smarthost):
    srv = fake_smarthost()
    srv.delay["data_end"] = 1.5
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    msg_id = d.send(SENDER, ["customer@example.net"], message("in flight"))
    d.wait_for(lambda: any(c.startswith("DATA") for c in srv.commands), timeout=10,
               message="the daemon never reached DATA")

    started = time.monotonic()
    d.stop(timeout=15)
    elapsed = time.monotonic() - started

    assert len(srv.messages) == 1, "the transfer in flight was cut instead of finished"
    assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
    assert "event=stopped" in d.log_text()
    d.restart()
    assert d.show(msg_id)["state"] == "sent"


def test_sigterm_keeps_queued_mail_for_restart(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config(), retry={"initial": "1h", "max": "2h"})
    d.start()

    ids = [d.send(SENDER, ["customer@example.net"], message(f"queued {n}")) for n in range(3)]
    for msg_id in ids:
        d.wait_for_state(msg_id, "deferred")

    started = time.monotonic()
    d.stop()
    assert time.monotonic() - started < 5, "an idle daemon should stop at once"

    # Nothing listens once the daemon is gone.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", d.smtp_port)) != 0

    listed = d.cli_json("list")
    assert sorted(m["id"] for m in listed["messages"]) == sorted(ids)
    assert all(m["state"] == "deferred" for m in listed["messages"])

    d.restart()
    after = d.cli_json("list")
    assert sorted(m["id"] for m in after["messages"]) == sorted(ids)
    assert "dropped_unacknowledged" not in d.log_text()


def test_idle_smtp_session_gets_421_on_sigterm(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=5) as sock:
        greeting = sock.recv(512)
        assert greeting.startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        time.sleep(0.2)
        sock.recv(4096)
        d.stop()
        rest = sock.recv(512)
    assert rest.startswith(b"421 4.3.2"), rest
