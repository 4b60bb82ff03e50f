"""
relayqd.exe and relayq.exe under Wine: how fast the pickup directory
watcher (ReadDirectoryChangesW) takes a file, and relayq.exe copied as
sendmail.exe and mailq.exe acting as those programs.

Skipped like test_windows_wine.py, whose fixtures and helpers this file
uses, unless RELAYQ_WIN_BUILD names a Windows build directory.
"""

import json
import shutil
import time

import pytest

from test_windows_wine import (  # noqa: F401 (pytest fixtures)
    RECIPIENT, SENDER, message_bytes, pytestmark, run_wine, win_binary, win_path,
    windows_smarthost_config, wine_relayq)

# Before ReadDirectoryChangesW the watcher polled every 2 s and took a
# file 2 to 4 s after it was complete.
PICKUP_DELAY_MAX = 1.0


def wait_removed(path, timeout: float) -> float:
    """Wait until PATH is gone and return the seconds that took."""
    start = time.monotonic()
    while path.exists():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{path} is still there after {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


def test_wine_pickup_takes_file_within_a_second(wine_relayq, fake_smarthost,
                                                tmp_path):
    srv = fake_smarthost()
    pickup = tmp_path / "pickup"
    daemon = wine_relayq(windows_smarthost_config(srv),
                         pickup={"path": win_path(pickup)}).start()
    # A first file, not timed: it pays the one-time costs of the first
    # message (the queue database, the first smart host connection).
    first = message_bytes("wine pickup first", b"warms up the relay\r\n")
    (pickup / "first.tmp").write_bytes(first)
    (pickup / "first.tmp").rename(pickup / "first.eml")
    srv.wait_for_messages(1, timeout=60)
    wait_removed(pickup / "first.eml", timeout=30)

    delays = []
    for i in range(3):
        name = f"timed-{i}"
        (pickup / f"{name}.tmp").write_bytes(
            message_bytes(f"wine pickup {name}", b"timed\r\n"))
        (pickup / f"{name}.tmp").rename(pickup / f"{name}.eml")
        delays.append(wait_removed(pickup / f"{name}.eml", timeout=30))

    assert max(delays) < PICKUP_DELAY_MAX, (delays, daemon.log_text())
    srv.wait_for_messages(4, timeout=60)
    assert "event=pickup_rescan" not in daemon.log_text()


# Writes ARGUMENTS(1) into the new file ARGUMENTS(0), waits about two
# seconds (ping -n 3 sends three echo requests a second apart) with the
# file still open, then writes ARGUMENTS(2) and closes it.
SLOW_WRITER_JS = """
var fso = new ActiveXObject("Scripting.FileSystemObject");
var shell = new ActiveXObject("WScript.Shell");
var file = fso.CreateTextFile(WScript.Arguments(0), true);
file.Write(%s);
shell.Run("ping -n 3 127.0.0.1", 0, true);
file.Write(%s);
file.Close();
"""


def test_wine_pickup_waits_for_writer(wine_relayq, fake_smarthost, tmp_path):
    """A file written in place is taken only after its writer closes it."""
    srv = fake_smarthost()
    pickup = tmp_path / "pickup"
    daemon = wine_relayq(windows_smarthost_config(srv),
                         pickup={"path": win_path(pickup)}).start()
    original = message_bytes("wine pickup in place", b"line one\r\nline two\r\n")
    first, last = original[:-len(b"line two\r\n")], b"line two\r\n"
    script = tmp_path / "writer.js"
    script.write_text(SLOW_WRITER_JS % (json.dumps(first.decode()),
                                        json.dumps(last.decode())))

    start = time.monotonic()
    result = run_wine("cscript.exe", "//nologo", win_path(script),
                      win_path(pickup / "inplace.eml"))
    written = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert written > 1.5, f"the writer took only {written:.1f}s"

    [message] = srv.wait_for_messages(1, timeout=60)
    assert message.content.endswith(original), (message.content,
                                                daemon.log_text())
    assert not (pickup / "bad").exists()


def copy_relayq(directory, name: str) -> str:
    """Copy relayq.exe into DIRECTORY as NAME; returns its Windows path with backslashes."""
    directory.mkdir(exist_ok=True)
    shutil.copy(win_binary("cli/relayq.exe"), directory / name)
    return win_path(directory / name).replace("/", "\\")


def test_wine_sendmail_exe_submits(wine_relayq, fake_smarthost, tmp_path,
                                   monkeypatch):
    srv = fake_smarthost()
    daemon = wine_relayq(windows_smarthost_config(srv)).start()
    sendmail = copy_relayq(tmp_path / "bin", "sendmail.exe")
    monkeypatch.setenv("RELAYQ_CONFIG", win_path(daemon.config_path))
    original = message_bytes("wine sendmail.exe", b"submitted by sendmail.exe\r\n")

    result = run_wine(sendmail, "-t", "-i", "-f", SENDER, input=original)
    assert result.returncode == 0, result.stdout + result.stderr
    [message] = srv.wait_for_messages(1, timeout=60)
    assert message.mail_from == SENDER
    assert message.rcpt_tos == [RECIPIENT]
    assert message.content.endswith(original)


def test_wine_mailq_exe_lists_queue(wine_relayq, fake_smarthost, tmp_path,
                                    monkeypatch):
    srv = fake_smarthost()
    srv.replies["data_end"] = ["451 4.3.0 try later"]
    daemon = wine_relayq(windows_smarthost_config(srv),
                         retry={"initial": "1h", "max": "1h", "max_age": "1d"}).start()
    # Any case and the .exe suffix: Windows file names ignore case.
    mailq = copy_relayq(tmp_path / "bin", "MailQ.EXE")
    monkeypatch.setenv("RELAYQ_CONFIG", win_path(daemon.config_path))
    daemon.cli("send", "--from", SENDER, "--to", RECIPIENT, "--subject", "mailq",
               "-", input=b"stays deferred\r\n")
    [listed] = daemon.cli_json("list")["messages"]
    daemon.wait_for_state(listed["id"], "deferred")

    result = run_wine(mailq)
    assert result.returncode == 0, result.stdout + result.stderr
    assert RECIPIENT.encode() in result.stdout, result.stdout
    assert result.stdout == daemon.cli("sendmail", "-bp").stdout
