"""
A full disk and a read-only spool: temporary failures for new mail, no
loss of accepted mail, no half-accepted message, a daemon that stays up,
and intake and delivery that resume on their own once space is freed.

The queue goes on a file system of its own, mounted by the test (root
only): a 2 MiB tmpfs for the full disk, and a small ext4 image with
errors=remount-ro for the read-only spool. `mount -o remount,ro` cannot
be used there, because Linux refuses it with EBUSY while relayqd holds
the database open for writing; an ext4 error (triggered through
/sys/fs/ext4/DEV/trigger_fs_error) turns the file system read-only under
the running daemon, which is how a spool becomes read-only in practice.
"""

import os
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

SENDER = "app@example.com"
RECIPIENT = "customer@example.net"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")


def message(subject: str, size: int = 1000) -> bytes:
    line = b"x" * 70 + b"\r\n"
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\n".encode()
            + line * max(1, size // len(line)))


def submit(port: int, data: bytes) -> tuple:
    """Send one message over SMTP. Returns (code, text) of the reply to DATA or to the final dot."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60) as client:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RECIPIENT)[0] == 250
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as error:
            code, text = error.smtp_code, error.smtp_error
        # The session goes on after a temporary failure.
        assert client.noop()[0] == 250
        return code, text.decode("utf-8", "replace")


def sendmail(d, data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([str(d.relayq_path), "-c", str(d.config_path), "sendmail", "-oi",
                           "-f", SENDER, RECIPIENT], input=data, capture_output=True,
                          timeout=60)


def fill(path: Path, leave: int = 0):
    """Write PATH until the file system is full, then give back LEAVE bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 512:
                    break
                block = block[:len(block) // 2]
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


def stop_quietly(d):
    """SIGTERM a running daemon and wait, without judging the exit status."""
    if d.running():
        d.signal(signal.SIGTERM)
        try:
            d.proc.wait(30)
        except subprocess.TimeoutExpired:
            d.signal(signal.SIGKILL)
            d.proc.wait()


def listed(d) -> dict:
    return {m["id"]: m["state"] for m in d.cli_json("list", "--state", "all")["messages"]}


def queue_leftovers(db_path: Path) -> dict:
    """Rows that no acknowledged message owns, read with relayqd stopped."""
    with sqlite3.connect(db_path) as db:
        return {
            "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
            "receiving": db.execute(
                "SELECT count(*) FROM message WHERE state = 'receiving'").fetchone()[0],
            "orphan_chunks": db.execute(
                "SELECT count(*) FROM chunk WHERE message NOT IN "
                "(SELECT id FROM message)").fetchone()[0],
            "orphan_recipients": db.execute(
                "SELECT count(*) FROM recipient WHERE message NOT IN "
                "(SELECT id FROM message)").fetchone()[0],
        }


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "spool"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                             str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazy: the relayq fixture stops the daemon only after this.
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


class Ext4Spool:
    """A small ext4 image on a loop device, mounted with errors=remount-ro."""

    def __init__(self, directory: Path):
        self.image = directory / "spool.img"
        self.mount_point = directory / "spool"
        self.mount_point.mkdir()

    def mount(self):
        result = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image),
                                 str(self.mount_point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount an ext4 image on a loop device: {result.stderr.strip()}")

    def device(self) -> str:
        return subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(self.mount_point)],
                              capture_output=True, text=True, check=True).stdout.strip()

    def options(self) -> str:
        return subprocess.run(["findmnt", "-n", "-o", "OPTIONS", str(self.mount_point)],
                              capture_output=True, text=True).stdout.strip()

    def make_read_only(self):
        """Report an ext4 error, which remounts the file system read-only."""
        trigger = Path("/sys/fs/ext4") / Path(self.device()).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} does not exist in this kernel")
        trigger.write_text("1")

    def repair(self):
        """Unmount, check and mount again read-write (relayqd must be stopped)."""
        subprocess.run(["umount", str(self.mount_point)], check=True)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)
        self.mount()

    def unmount(self):
        subprocess.run(["umount", "-l", str(self.mount_point)], capture_output=True)


@pytest.fixture
def ext4_spool(tmp_path):
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed")
    spool = Ext4Spool(tmp_path)
    subprocess.run(["truncate", "-s", "16M", str(spool.image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(spool.image)], check=True,
                   capture_output=True)
    spool.mount()
    try:
        yield spool
    finally:
        spool.unmount()


def test_full_disk_gives_452_and_recovers(relayq, fake_smarthost, small_tmpfs):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(queue={"path": str(small_tmpfs / "queue.db")},
                      smarthost=srv.smarthost_config())
    d.start()
    try:
        accepted = [d.send(SENDER, [RECIPIENT], message(f"before {i}")) for i in range(3)]
        filler = small_tmpfs / "filler"

        # Space for the queue entry, but not for the body: the disk fills during DATA.
        fill(filler, leave=192 * 1024)
        code, text = submit(d.smtp_port, message("fills the disk", 1024 * 1024))
        assert code == 452, text
        assert "full" in text, text

        # No space at all: rejected when DATA starts or at the final dot.
        fill(filler)
        code, text = submit(d.smtp_port, message("no space"))
        assert code == 452, text
        assert "disk full" in text or "is full" in text, text

        result = sendmail(d, message("sendmail on a full disk"))
        assert result.returncode == 75, result.stderr
        assert b"full" in result.stderr, result.stderr
        assert b"nothing was queued" in result.stderr, result.stderr

        assert d.running(), d.log_tail()
        assert set(listed(d)) == set(accepted)

        # The smart host comes back while the disk is still full. A claim
        # may still fit in the WAL and the message go out, but relayqd must
        # not reconnect in a loop, and what it cannot record it keeps in
        # memory, so nothing goes out twice.
        srv.start()
        time.sleep(6)
        assert d.running(), d.log_tail()
        assert len(srv.connections) <= 10, srv.summary()
        assert len(srv.messages) <= 3, srv.summary()

        filler.unlink()
        srv.wait_for_messages(3, timeout=30)
        for msg_id in accepted:
            d.wait_for_state(msg_id, "sent", timeout=30)
        late = d.send(SENDER, [RECIPIENT], message("after the disk was freed"))
        d.wait_for_state(late, "sent", timeout=30)
        assert len(srv.messages) == 4, srv.summary()
        subjects = sorted(m.header("Subject")[0] for m in srv.messages)
        assert subjects == sorted([f"before {i}" for i in range(3)]
                                  + ["after the disk was freed"])
        assert set(listed(d)) == set(accepted) | {late}
    finally:
        stop_quietly(d)

    leftovers = queue_leftovers(small_tmpfs / "queue.db")
    assert leftovers["integrity"] == "ok"
    assert leftovers["orphan_chunks"] == 0, leftovers
    assert leftovers["orphan_recipients"] == 0, leftovers
    assert d.proc.returncode == 0, d.log_tail()
    log = d.log_text()
    assert "event=spool_failed" in log or "event=commit_failed" in log


def test_read_only_spool_gives_temporary_failures(relayq, fake_smarthost, ext4_spool):
    srv = fake_smarthost(start=False)
    db_path = ext4_spool.mount_point / "queue.db"
    d = relayq.daemon(queue={"path": str(db_path)}, smarthost=srv.smarthost_config())
    d.start()
    try:
        accepted = [d.send(SENDER, [RECIPIENT], message(f"before {i}")) for i in range(3)]
        ext4_spool.make_read_only()
        d.wait_for(lambda: "ro" in ext4_spool.options().split(",")
                   or "emergency_ro" in ext4_spool.options(),
                   timeout=10, message="the spool to turn read-only")

        for size in (1000, 300 * 1024):
            code, text = submit(d.smtp_port, message("read-only spool", size))
            assert code in (451, 452), text
            assert "read-only" in text, text

        result = sendmail(d, message("sendmail on a read-only spool"))
        assert result.returncode == 75, result.stderr
        assert b"read-only" in result.stderr, result.stderr

        # Delivery cannot record anything, so it must not send anything either.
        srv.start()
        time.sleep(6)
        assert d.running(), d.log_tail()
        assert len(srv.messages) == 0, srv.summary()
        assert len(srv.connections) <= 10, srv.summary()
        assert set(listed(d)) == set(accepted)

        d.stop()
        ext4_spool.repair()
        d.start()
        srv.wait_for_messages(3, timeout=30)
        for msg_id in accepted:
            d.wait_for_state(msg_id, "sent", timeout=30)
        assert set(listed(d)) == set(accepted)
        assert len(srv.messages) == 3, srv.summary()
    finally:
        stop_quietly(d)

    leftovers = queue_leftovers(db_path)
    assert leftovers["integrity"] == "ok"
    assert leftovers["receiving"] == 0, leftovers
    assert leftovers["orphan_chunks"] == 0, leftovers


def allow_null_sender(db: sqlite3.Connection):
    """Drop the NOT NULL of message.sender, so that a test can store the NULL a damaged row would hold."""
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, 'sender TEXT NOT NULL', "
               "'sender TEXT') WHERE type = 'table' AND name = 'message'")
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute(f"PRAGMA schema_version = {version + 1}")
    db.execute("PRAGMA writable_schema = OFF")
    db.commit()


def test_damaged_messages_are_set_aside(relayq, fake_smarthost):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    d.start()
    sizes = {"intact small": 1000, "missing middle chunk": 200_000,
             "truncated last chunk": 200_000, "null sender": 1000,
             "missing last chunk": 200_000, "intact big": 200_000,
             "no recipients": 1000}
    ids = {name: d.send(SENDER, [RECIPIENT], message(name, size)) for name, size in sizes.items()}
    d.stop()

    db_path = Path(d.config["queue"]["path"])
    db = sqlite3.connect(db_path)
    try:
        last = {name: db.execute("SELECT max(seq) FROM chunk WHERE message = ?",
                                 (msg_id,)).fetchone()[0] for name, msg_id in ids.items()}
        assert last["missing middle chunk"] >= 2, last
        db.execute("DELETE FROM chunk WHERE message = ? AND seq = 1",
                   (ids["missing middle chunk"],))
        db.execute("UPDATE chunk SET data = substr(data, 1, 100) WHERE message = ? AND seq = ?",
                   (ids["truncated last chunk"], last["truncated last chunk"]))
        db.execute("DELETE FROM chunk WHERE message = ? AND seq = ?",
                   (ids["missing last chunk"], last["missing last chunk"]))
        db.execute("DELETE FROM recipient WHERE message = ?", (ids["no recipients"],))
        db.commit()
        allow_null_sender(db)
        db.execute("UPDATE message SET sender = NULL WHERE id = ?", (ids["null sender"],))
        db.commit()
    finally:
        db.close()

    d.start()
    srv.start()
    intact = {"intact small", "intact big"}
    for name in intact:
        d.wait_for_state(ids[name], "sent", timeout=30)
    damaged = set(ids) - intact
    for name in damaged:
        details = d.wait_for_state(ids[name], "held", timeout=30)
        assert details["last_error"].startswith("damaged: "), (name, details)
    time.sleep(1)

    # Only whole messages went out: no transaction started for a damaged one.
    assert sorted(m.header("Subject")[0] for m in srv.messages) == sorted(intact)
    assert len(srv.transactions) == len(intact), srv.summary()
    assert srv.commands_starting("MAIL") and len(srv.commands_starting("MAIL")) == len(intact)

    listing = d.cli("list")
    assert listing.returncode == 0, listing.stderr
    for name in damaged:
        line = next((l for l in listing.stdout.splitlines()
                     if l.split() and l.split()[0] == str(ids[name])), None)
        assert line is not None, listing.stdout
        assert "held" in line and "damaged" in line, line
        for args in (("show", ids[name]), ("show", ids[name], "--json"),
                     ("show", ids[name], "--body")):
            result = d.cli(*args)
            assert result.returncode in (0, 1), (args, result.returncode, result.stderr)
        assert "damaged" in d.cli("show", ids[name]).stdout

    assert d.running(), d.log_tail()
    assert d.log_text().count("event=set_aside") == len(damaged), d.log_tail()


def unusable_queue_cases(tmp_path, relayq, fake_smarthost):
    """(name, relayqd, prepare) for each queue file relayqd must not start on."""
    srv = fake_smarthost(start=False)
    cases = []

    def not_a_database(path: Path):
        path.write_bytes(b"this is not an SQLite database\n" * 200)

    def newer_schema(path: Path):
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES('schema_version', '99')")
            db.execute("CREATE TABLE message_v99(id INTEGER PRIMARY KEY)")

    def directory(path: Path):
        path.mkdir()

    def truncated(path: Path):
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])

    for name, prepare in (("not a database", not_a_database),
                          ("newer schema", newer_schema),
                          ("a directory", directory),
                          ("truncated", truncated)):
        cases.append((name, relayq.daemon(smarthost=srv.smarthost_config()), prepare))
    return cases


def test_unusable_queue_is_refused_and_kept(relayq, fake_smarthost, tmp_path):
    for name, d, prepare in unusable_queue_cases(tmp_path, relayq, fake_smarthost):
        db_path = Path(d.config["queue"]["path"])
        if name == "truncated":
            d.start()
            for i in range(20):
                d.send(SENDER, [RECIPIENT], message(f"filler {i}", 20_000))
            d.stop()
            for suffix in ("-wal", "-shm"):
                Path(str(db_path) + suffix).unlink(missing_ok=True)
        prepare(db_path)
        before = db_path.read_bytes() if db_path.is_file() else None

        d.start(wait=False)
        try:
            status = d.proc.wait(15)
        except subprocess.TimeoutExpired:
            stop_quietly(d)
            pytest.fail(f"{name}: relayqd started on an unusable queue\n{d.log_tail()}")
        log = d.log_text()
        assert status in (69, 78), f"{name}: exit status {status}\n{log}"
        assert str(db_path) in log, f"{name}: {log}"
        assert db_path.exists(), name
        if before is not None:
            assert db_path.read_bytes() == before, f"{name}: relayqd changed the file"
        if name == "newer schema":
            assert "schema version 99" in log, log
            with sqlite3.connect(db_path) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            assert "message" not in tables, f"relayqd created tables in a newer queue: {tables}"
