"""
SMTP smuggling: only <CRLF>.<CRLF> ends DATA, so a "<LF>.<CRLF>" inside
the content must neither end the message at relayqd nor on the way to the
smart host.
"""

import re
import socket

SMUGGLED = (b"Subject: a\r\n\r\nx\n.\r\n"
            b"MAIL FROM:<x@example.com>\r\n"
            b"RCPT TO:<v@example.net>\r\n"
            b"DATA\r\n\r\n"
            b"fake\r\n.\r\n")


def read_reply(stream) -> bytes:
    """Read one possibly multi-line reply; returns its last line."""
    while True:
        line = stream.readline()
        assert line, "relayqd closed the connection"
        if line[3:4] != b"-":
            return line


def submit_raw(port: int, commands) -> list:
    """Run a raw SMTP session: send each chunk, read one reply per chunk."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        stream = sock.makefile("rb")
        replies.append(read_reply(stream))
        for chunk in commands:
            sock.sendall(chunk)
            replies.append(read_reply(stream))
    return replies


def test_bare_lf_dot_does_not_end_data(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()

    replies = submit_raw(d.smtp_port, [
        b"EHLO client.test\r\n",
        b"MAIL FROM:<s@example.com>\r\n",
        b"RCPT TO:<r@example.net>\r\n",
        b"DATA\r\n",
        SMUGGLED,
        b"QUIT\r\n",
    ])

    codes = [reply[:3] for reply in replies]
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], replies
    msg_id = int(re.search(rb"queued as (\d+)", replies[5]).group(1))
    d.wait_for_state(msg_id, "sent")

    queued = d.cli_json("list", "--state", "all")["messages"]
    assert [m["id"] for m in queued] == [msg_id]

    assert len(srv.transactions) == 1, srv.summary()
    assert len(srv.commands_starting("MAIL")) == 1, srv.summary()
    [message] = srv.messages
    assert message.mail_from == "s@example.com"
    assert message.rcpt_tos == ["r@example.net"]
    for forged in (b"MAIL FROM:<x@example.com>\r\n", b"RCPT TO:<v@example.net>\r\n",
                   b"\r\nDATA\r\n", b"\r\nfake\r\n"):
        assert forged in message.content, message.content

    assert re.search(rb"\r(?!\n)", message.wire) is None, message.wire
    assert re.search(rb"(?<!\r)\n", message.wire) is None, message.wire
    assert b"\r\n.\r\n" not in message.wire, message.wire
