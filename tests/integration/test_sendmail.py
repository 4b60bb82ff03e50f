"""
The sendmail interface: `relayq sendmail`, and the binary invoked as
sendmail or mailq. The tests cover line ends, -t with Bcc and folded
fields, the dot rules of -i and -oi, added headers, long lines, NUL bytes,
SMTP smuggling through -bs and standard input, exit codes, and submission
while relayqd is stopped. Every message is checked as the fake smart host
received it.
"""

import grp
import os
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

SMUGGLED = (b"Subject: a\r\n\r\nx\n.\r\n"
            b"MAIL FROM:<x@example.com>\r\n"
            b"RCPT TO:<v@example.net>\r\n"
            b"DATA\r\n\r\n"
            b"fake\r\n.\r\n")


def run_sendmail(d, *args, data=b"", env=None, timeout=60):
    """Run `relayq -c CONFIG sendmail ARGS` with DATA on standard input."""
    argv = [str(d.relayq_path), "-c", str(d.config_path), "sendmail", *map(str, args)]
    return subprocess.run(argv, input=data, capture_output=True, timeout=timeout,
                          cwd=d.dir, env=env)


def require_ok(result):
    assert result.returncode == 0, (
        f"exit status {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}")


def start_pair(relayq, fake_smarthost, **sections):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), **sections)
    d.start()
    return srv, d


def prepared_queue(relayq, fake_smarthost, **sections):
    """A daemon that ran once (so its queue exists) and is stopped now."""
    srv, d = start_pair(relayq, fake_smarthost, **sections)
    # relayqd listens before it handles SIGTERM, so wait for its start-up to end.
    d.wait_for(lambda: "event=started" in d.log_text(), message="event=started in the log")
    d.stop()
    return srv, d


def head_and_body(content: bytes):
    head, _, body = content.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def field_names(content: bytes) -> list:
    head, _ = head_and_body(content)
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")]


def assert_crlf_only(wire: bytes):
    assert re.search(rb"\r(?!\n)", wire) is None, f"bare CR on the wire: {wire!r}"
    assert re.search(rb"(?<!\r)\n", wire) is None, f"bare LF on the wire: {wire!r}"


def queued_messages(d) -> list:
    return d.cli_json("list", "--state", "all")["messages"]


# Line ends.


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_line_ends_become_one_crlf(relayq, fake_smarthost, eol):
    srv, d = start_pair(relayq, fake_smarthost)
    lines = [b"From: app@example.com", b"To: customer@example.net",
             b"Subject: line ends", b"", b"first line", b"", b"third line"]
    data = eol.join(lines) + eol

    require_ok(run_sendmail(d, "-t", "-i", data=data))
    [message] = srv.wait_for_messages(1)

    assert_crlf_only(message.wire)
    assert b"\r\r\n" not in message.wire
    head, body = head_and_body(message.content)
    assert body == b"first line\r\n\r\nthird line\r\n"
    assert b"\r\nSubject: line ends\r\n" in head
    assert message.rcpt_tos == ["customer@example.net"]


# Recipients from the header section.


def test_bcc_only_with_undisclosed_recipients(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    data = (b"From: app@example.com\n"
            b"To: undisclosed-recipients:;\n"
            b"Bcc: hidden@example.com\n"
            b"Subject: hidden\n"
            b"\n"
            b"Only Bcc.\n")

    require_ok(run_sendmail(d, "-t", "-i", data=data))
    [message] = srv.wait_for_messages(1)

    assert message.rcpt_tos == ["hidden@example.com"]
    assert b"bcc" not in field_names(message.content)
    assert b"hidden@example.com" not in message.content
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in message.content


def test_folded_to_and_cc_with_several_addresses(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    data = (b"From: app@example.com\n"
            b"To: \"Doe, Jane\" <jane@example.com>,\n"
            b"\tjohn@example.com (John, at work),\n"
            b" Team: ann@example.org, <bob@example.org>;\n"
            b"Cc: carol@example.net,\n"
            b"    Dave Q. Smith <dave@example.net>\n"
            b"Subject: folded\n"
            b"\n"
            b"Body.\n")

    require_ok(run_sendmail(d, "-t", "-i", "extra@example.com", data=data))
    [message] = srv.wait_for_messages(1)

    assert sorted(message.rcpt_tos) == sorted([
        "jane@example.com", "john@example.com", "ann@example.org",
        "bob@example.org", "carol@example.net", "dave@example.net",
        "extra@example.com"])
    # The folded fields reach the smart host as they were written, with CRLF.
    assert b"To: \"Doe, Jane\" <jane@example.com>,\r\n\tjohn@example.com" in message.content


# Dots.


@pytest.mark.parametrize("flags", [["-oi"], ["-i"], ["-O", "IgnoreDots=true"], ["-OIgnoreDots"]],
                         ids=["oi", "i", "O-IgnoreDots-true", "O-IgnoreDots"])
def test_dot_line_kept_with_ignore_dots(relayq, fake_smarthost, flags):
    srv, d = start_pair(relayq, fake_smarthost)
    data = b"Subject: dots\n\nline1\n.\nline3\n..two\n.x\n"

    require_ok(run_sendmail(d, *flags, "-f", "app@example.com", "r@example.net", data=data))
    [message] = srv.wait_for_messages(1)

    _, body = head_and_body(message.content)
    assert body == b"line1\r\n.\r\nline3\r\n..two\r\n.x\r\n"
    # Each leading dot is stuffed exactly once on the wire.
    _, wire_body = head_and_body(message.wire)
    assert wire_body == b"line1\r\n..\r\nline3\r\n...two\r\n..x\r\n"


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_dot_line_ends_input_without_i(relayq, fake_smarthost, eol):
    srv, d = start_pair(relayq, fake_smarthost)
    data = eol.join([b"Subject: dots", b"", b"..two", b"line1", b".", b"line3", b""])

    require_ok(run_sendmail(d, "-f", "app@example.com", "r@example.net", data=data))
    [message] = srv.wait_for_messages(1)

    _, body = head_and_body(message.content)
    # Without -i nothing is unstuffed: "..two" stays as written.
    assert body == b"..two\r\nline1\r\n"
    assert b"line3" not in message.wire
    _, wire_body = head_and_body(message.wire)
    assert wire_body == b"...two\r\nline1\r\n"


def test_ignore_dots_false_ends_input(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)

    require_ok(run_sendmail(d, "-i", "-O", "IgnoreDots=false", "-f", "app@example.com",
                            "r@example.net", data=b"Subject: x\n\nline1\n.\nline3\n"))
    [message] = srv.wait_for_messages(1)

    assert head_and_body(message.content)[1] == b"line1\r\n"


# Headers that relayq adds.


def test_missing_headers_added_and_kept_on_retry(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    srv.replies["data_end"] = ["451 4.3.0 try again later"]
    data = b"From: app@example.com\nTo: customer@example.net\nSubject: bare\n\nHello.\n"

    require_ok(run_sendmail(d, "-t", data=data))
    srv.wait_for_messages(1, timeout=30)

    assert len(srv.transactions) == 2, srv.summary()
    first, second = srv.transactions
    ids = [t.header("Message-ID") for t in (first, second)]
    assert len(ids[0]) == 1
    assert ids[0][0].startswith("<")
    assert ids[0][0].endswith(">")
    assert ids[0] == ids[1]
    assert len(first.header("Date")) == 1
    assert first.header("Date") == second.header("Date")
    assert first.content == second.content


def test_full_name_goes_into_added_from(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)

    require_ok(run_sendmail(d, "-F", 'Jane "J" Doe', "-f", "jane@example.com",
                            "r@example.net", data=b"Subject: name\n\nHi.\n"))
    [message] = srv.wait_for_messages(1)

    assert message.mail_from == "jane@example.com"
    assert b'\r\nFrom: "Jane \\"J\\" Doe" <jane@example.com>\r\n' in message.content


def test_existing_from_kept_and_default_sender_is_login(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)

    require_ok(run_sendmail(d, "-F", "Ignored", "r@example.net",
                            data=b"From: Own <own@example.com>\nSubject: x\n\nHi.\n"))
    [message] = srv.wait_for_messages(1)

    login = pwd.getpwuid(os.getuid()).pw_name
    assert message.mail_from.startswith(login + "@")
    assert message.header("From") == ["Own <own@example.com>"]


# Long lines and NUL bytes.


def test_long_line_spooled_whole_and_broken_on_wire(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    long_line = b"x" * 5000
    data = b"From: app@example.com\nTo: r@example.net\nSubject: long\n\n" + long_line + b"\nend\n"

    require_ok(run_sendmail(d, "-t", "-i", data=data))
    [message] = srv.wait_for_messages(1)

    for line in message.wire.split(b"\r\n"):
        assert len(line) <= 998, len(line)
    _, body = head_and_body(message.content)
    assert body.replace(b"\r\n", b"") == long_line + b"end"

    [queued] = queued_messages(d)
    shown = d.cli_json("show", queued["id"], "--body")
    assert "x" * 5000 in shown["body"]


def test_nul_byte_passes_through_sendmail(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    data = b"Subject: nul\n\nbefore\x00after\n"

    require_ok(run_sendmail(d, "-i", "-f", "app@example.com", "r@example.net", data=data))
    [message] = srv.wait_for_messages(1)

    assert head_and_body(message.content)[1] == b"before\x00after\r\n"


def test_nul_byte_passes_through_smtp(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)

    d.send("app@example.com", "r@example.net", b"Subject: nul\r\n\r\nbefore\x00after\r\n")
    [message] = srv.wait_for_messages(1)

    assert head_and_body(message.content)[1] == b"before\x00after\r\n"


# SMTP smuggling.


def read_replies(output: bytes) -> list:
    """The last line of each reply in a -bs transcript."""
    return [line for line in output.split(b"\r\n") if re.match(rb"^\d{3} ", line)]


def test_smuggling_through_bs_gives_one_message(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    session = (b"EHLO client.test\r\n"
               b"MAIL FROM:<s@example.com>\r\n"
               b"RCPT TO:<r@example.net>\r\n"
               b"DATA\r\n" + SMUGGLED + b"QUIT\r\n")

    result = run_sendmail(d, "-bs", data=session)
    require_ok(result)
    codes = [reply[:3] for reply in read_replies(result.stdout)]
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], result.stdout

    [message] = srv.wait_for_messages(1)
    assert message.mail_from == "s@example.com"
    assert message.rcpt_tos == ["r@example.net"]
    assert b"MAIL FROM:<x@example.com>\r\n" in message.content
    assert b"\r\nfake\r\n" in message.content
    assert_crlf_only(message.wire)
    assert len(queued_messages(d)) == 1
    assert len(srv.commands_starting("MAIL")) == 1, srv.summary()


@pytest.mark.parametrize("flags", [[], ["-i"]], ids=["dot-ends-input", "i"])
def test_smuggling_through_stdin_gives_one_message(relayq, fake_smarthost, flags):
    srv, d = start_pair(relayq, fake_smarthost)

    require_ok(run_sendmail(d, *flags, "-f", "s@example.com", "r@example.net", data=SMUGGLED))
    [message] = srv.wait_for_messages(1)

    assert message.rcpt_tos == ["r@example.net"]
    assert_crlf_only(message.wire)
    assert len(queued_messages(d)) == 1
    assert len(srv.commands_starting("MAIL")) == 1, srv.summary()
    if flags:
        assert b"RCPT TO:<v@example.net>\r\n" in message.content
    else:
        # The "." line ends the input, so nothing after it is read.
        assert head_and_body(message.content)[1] == b"x\r\n"


def test_bs_rejects_commands_out_of_order(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost)
    session = (b"MAIL FROM:<s@example.com>\r\n"
               b"HELO client.test\r\n"
               b"RCPT TO:<r@example.net>\r\n"
               b"DATA\r\n"
               b"QUIT\r\n")

    result = run_sendmail(d, "-bs", data=session)
    require_ok(result)
    codes = [reply[:3] for reply in read_replies(result.stdout)]
    assert codes == [b"220", b"503", b"250", b"503", b"503", b"221"], result.stdout
    assert queued_messages(d) == []


# Exit codes.


@pytest.mark.parametrize("args, text", [
    (["-Z", "r@example.net"], "invalid option -Z"),
    (["-C", "/etc/mail/sendmail.cf", "r@example.net"], "-C"),
    (["-f"], "requires an argument"),
    (["-bd"], "daemon mode"),
    ([], "no recipients"),
    (["not an address@"], "invalid recipient address"),
    (["-f", "bad@", "r@example.net"], "invalid sender address"),
])
def test_usage_errors_exit_64(relayq, fake_smarthost, args, text):
    _, d = prepared_queue(relayq, fake_smarthost)

    result = run_sendmail(d, *args, data=b"Subject: x\n\nx\n")

    assert result.returncode == 64, result
    assert text in result.stderr.decode(), result.stderr
    assert queued_messages(d) == []


@pytest.mark.parametrize("data, text", [
    (b"From: app@example.com\nSubject: nobody\n\nx\n", "No recipient addresses found in header"),
    (b"To: undisclosed-recipients:;\nSubject: nobody\n\nx\n", "No recipient addresses found in header"),
    (b"To: broken@\n\nx\n", "invalid recipient in the message header: To:"),
    (b"X-Filler: " + b"y" * 900 + b"\n" * 1 + (b"X-Filler: " + b"y" * 900 + b"\n") * 1200 + b"\nx\n",
     "header section too large"),
], ids=["no-to", "empty-group", "invalid-address", "huge-header"])
def test_bad_input_exits_65(relayq, fake_smarthost, data, text):
    _, d = prepared_queue(relayq, fake_smarthost)

    result = run_sendmail(d, "-t", "-i", data=data)

    assert result.returncode == 65, result
    assert text in result.stderr.decode(), result.stderr
    assert queued_messages(d) == []


def test_missing_config_exits_78(relayq, fake_smarthost, tmp_path):
    _, d = prepared_queue(relayq, fake_smarthost)
    argv = [str(d.relayq_path), "-c", str(tmp_path / "missing.yaml"), "sendmail", "r@example.net"]

    result = subprocess.run(argv, input=b"Subject: x\n\nx\n", capture_output=True, timeout=60)

    assert result.returncode == 78, result


def test_busy_queue_exits_75(relayq, fake_smarthost):
    _, d = prepared_queue(relayq, fake_smarthost)
    lock = sqlite3.connect(d.config["queue"]["path"], isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        result = run_sendmail(d, "-f", "app@example.com", "r@example.net",
                              data=b"Subject: busy\n\nx\n", timeout=120)
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    assert result.returncode == 75, result
    assert "busy" in result.stderr.decode(), result.stderr
    assert "nothing was queued" in result.stderr.decode(), result.stderr
    assert queued_messages(d) == []


@pytest.fixture
def world_readable_dir():
    """A directory outside pytest's private tmp tree that user nobody can enter."""
    path = Path(tempfile.mkdtemp(prefix="relayq-sendmail-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nobody_setup(d, directory: Path) -> tuple:
    """Copy the relayq binary and a config that names D's queue into DIRECTORY."""
    binary = directory / "relayq"
    shutil.copy(d.relayq_path, binary)
    binary.chmod(0o755)
    config = directory / "relayq.yaml"
    shutil.copy(d.config_path, config)
    config.chmod(0o644)
    return binary, config


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root and runuser to run as user nobody")
def test_read_only_queue_exits_75(relayq, fake_smarthost, world_readable_dir):
    queue_dir = world_readable_dir / "queue"
    _, d = prepared_queue(relayq, fake_smarthost, queue={"path": str(queue_dir / "queue.db")})
    binary, config = nobody_setup(d, world_readable_dir)
    queue_dir.chmod(0o755)
    for path in queue_dir.iterdir():
        path.chmod(0o644)

    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", str(binary), "-c", str(config), "sendmail",
         "-f", "app@example.com", "r@example.net"],
        input=b"Subject: read-only\n\nx\n", capture_output=True, timeout=120)

    assert result.returncode == 75, result
    assert "readonly" in result.stderr.decode() or "read-only" in result.stderr.decode(), result.stderr
    assert queued_messages(d) == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root, runuser and a setgid-capable file system")
def test_setgid_group_dropped_for_caller_config(relayq, fake_smarthost, world_readable_dir):
    # The queue belongs to group "mail" and is writable by it, as in the
    # documented setgid install; nobody is not in that group.
    queue_dir = world_readable_dir / "queue"
    _, d = prepared_queue(relayq, fake_smarthost, queue={"path": str(queue_dir / "queue.db")})
    binary, config = nobody_setup(d, world_readable_dir)
    mail_gid = grp.getgrnam("mail").gr_gid
    for path in [queue_dir, *queue_dir.iterdir()]:
        os.chown(path, 0, mail_gid)
    queue_dir.chmod(0o2770)
    for path in queue_dir.iterdir():
        path.chmod(0o660)
    os.chown(binary, 0, mail_gid)
    binary.chmod(0o2755)
    assert binary.stat().st_mode & stat.S_ISGID

    # A config chosen by the caller (with -c or $RELAYQ_CONFIG) runs with
    # the caller's own rights, so the group's write access does not apply.
    for argv, env in [
        ([str(binary), "-c", str(config), "sendmail"], None),
        ([str(binary), "sendmail"], {**os.environ, "RELAYQ_CONFIG": str(config)}),
    ]:
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", *argv, "-f", "app@example.com", "r@example.net"],
            input=b"Subject: setgid\n\nx\n", capture_output=True, timeout=120, env=env)
        assert result.returncode == 75, result

    # Admin commands never keep the group either.
    result = subprocess.run(["runuser", "-u", "nobody", "--", str(binary), "-c", str(config),
                             "list"], capture_output=True, timeout=60)
    assert result.returncode != 0, result
    assert queued_messages(d) == []


# relayqd stopped, flush, list, and invocation names.


def test_works_while_relayqd_stopped(relayq, fake_smarthost):
    srv, d = prepared_queue(relayq, fake_smarthost)

    require_ok(run_sendmail(d, "-t", "-i", data=b"From: app@example.com\nTo: r@example.net\n"
                                                b"Subject: offline\n\nQueued offline.\n"))
    [queued] = queued_messages(d)
    assert queued["state"] == "queued"
    assert srv.messages == []

    d.start()
    [message] = srv.wait_for_messages(1)
    assert message.rcpt_tos == ["r@example.net"]
    d.wait_for_state(queued["id"], "sent")


def test_q_flushes_deferred_mail(relayq, fake_smarthost):
    srv, d = start_pair(relayq, fake_smarthost, retry={"initial": "1h", "max": "2h", "max_age": "1d"})
    srv.replies["data_end"] = ["451 4.3.0 try again later"]

    require_ok(run_sendmail(d, "-f", "app@example.com", "r@example.net", data=b"Subject: q\n\nx\n"))
    [queued] = queued_messages(d)
    d.wait_for_state(queued["id"], "deferred")

    require_ok(run_sendmail(d, "-q"))
    srv.wait_for_messages(1, timeout=30)
    d.wait_for_state(queued["id"], "sent")


def test_bp_lists_the_queue(relayq, fake_smarthost):
    _, d = prepared_queue(relayq, fake_smarthost)
    require_ok(run_sendmail(d, "-f", "app@example.com", "listed@example.net",
                            data=b"Subject: x\n\nx\n"))

    result = run_sendmail(d, "-bp")

    require_ok(result)
    assert b"listed@example.net" in result.stdout


def test_invoked_as_sendmail_and_mailq(relayq, fake_smarthost, tmp_path):
    srv, d = prepared_queue(relayq, fake_smarthost)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sendmail").symlink_to(d.relayq_path)
    (bin_dir / "mailq").symlink_to(d.relayq_path)
    env = {**os.environ, "RELAYQ_CONFIG": str(d.config_path)}

    result = subprocess.run([str(bin_dir / "sendmail"), "-t", "-i"], env=env,
                            input=b"From: app@example.com\nTo: linked@example.net\n"
                                  b"Subject: symlink\n\nVia a link.\n",
                            capture_output=True, timeout=60)
    require_ok(result)

    result = subprocess.run([str(bin_dir / "mailq")], env=env, capture_output=True, timeout=60)
    require_ok(result)
    assert b"linked@example.net" in result.stdout

    result = subprocess.run([str(bin_dir / "sendmail"), "-Z"], env=env, capture_output=True,
                            timeout=60)
    assert result.returncode == 64
    assert result.stderr.startswith(b"sendmail: "), result.stderr

    d.start()
    [message] = srv.wait_for_messages(1)
    assert message.rcpt_tos == ["linked@example.net"]
