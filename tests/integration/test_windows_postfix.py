"""
relayqd.exe under Wine relays to a real Postfix smart host on 127.0.0.1 with
STARTTLS and SASL AUTH (the postfix_smarthost fixture of postfix_fixture.py).
swaks on Linux submits, and relayq.exe reports the message as sent with
Postfix's queue id.

relayqd.exe verifies Postfix's certificate against the fixture's test CA,
passed as smarthost.ca_file, because relayq does not read the Windows
certificate store.
"""

import os
import shutil

import pytest

from postfix_fixture import POSTFIX
from test_postfix_relay import (MESSAGE_ID, POSTFIX_ADDED_HEADERS, RECIPIENT, SENDER,
                                TRICKY_MESSAGE, _header_names, _maildir_form, _swaks,
                                _swaks_transmitted)
from test_windows_wine import queue_id, skip_reason, win_path
from test_windows_wine import wine_relayq  # noqa: F401  (a fixture)


def postfix_skip_reason():
    reason = skip_reason()
    if reason is None and not os.access(POSTFIX, os.X_OK):
        reason = f"Postfix is not installed ({POSTFIX} not found)"
    if reason is None and shutil.which("swaks") is None:
        reason = "swaks is not installed"
    return reason


pytestmark = pytest.mark.skipif(postfix_skip_reason() is not None,
                                reason=postfix_skip_reason() or "")


def test_wine_relay_to_postfix(wine_relayq, postfix_smarthost, tmp_path):  # noqa: F811
    pf = postfix_smarthost
    daemon = wine_relayq({
        "host": pf.host,
        "port": pf.port,
        "tls": "starttls",
        "ca_file": win_path(pf.ca_file),
        "username": pf.username,
        "password_file": win_path(pf.password_file),
    }).start()
    data_file = tmp_path / "message.eml"
    data_file.write_bytes(TRICKY_MESSAGE)

    result = _swaks("127.0.0.1", daemon.port, data_file)
    assert result.returncode == 0, result.stdout + result.stderr
    msg_id = queue_id(result.stdout)
    details = daemon.wait_for_state(msg_id, "sent", timeout=60)
    [delivered] = pf.messages(wait_count=1, timeout=30)

    # The Maildir stores LF line endings, so compare in that form.
    sent_header, sent_body = pf.split_message(_maildir_form(_swaks_transmitted(TRICKY_MESSAGE)))
    header, body = pf.split_message(delivered)
    assert body == sent_body
    assert header.endswith(b"\n" + sent_header)
    added = header[:-len(sent_header)]
    assert _header_names(added) == POSTFIX_ADDED_HEADERS + [b"received"]
    postfix_received = pf.topmost_received(delivered)
    assert b"with ESMTPSA id" in postfix_received, "relayqd.exe did not use STARTTLS and AUTH"

    postfix_queue_id = pf.queue_id(delivered)
    assert MESSAGE_ID in details["message_id"]
    assert details["sender"] == SENDER
    assert [r["address"] for r in details["recipients"]] == [RECIPIENT]
    assert details["recipients"][0]["state"] == "sent"
    assert details["recipients"][0]["code"] == 250
    replies = [r["text"] or "" for r in details["recipients"]]
    replies += [a["text"] or "" for a in details["attempts"]]
    assert any(postfix_queue_id in text for text in replies), (postfix_queue_id, details)

    listed = daemon.cli_json("list", "--state", "all")
    assert [(m["id"], m["state"]) for m in listed["messages"]] == [(msg_id, "sent")]
    assert pf.password not in daemon.log_text()
