"""
relayqd syncs its WAL in a worker thread: a 250 reply goes out only after
an fdatasync() of the WAL that began after the message's commit, and the
worker's checkpoints keep the WAL file from growing without bound.
"""

import os
import re
import shutil
import signal
import subprocess

import pytest

SENDER = "app@example.com"
RECIPIENT = "customer@example.net"

# strace -f -ttt -T line: "PID SECONDS SYSCALL(ARGS) = RESULT <DURATION>",
# or a part of a call that another thread's line interrupted.
STRACE_LINE = re.compile(
    r"^(?P<pid>\d+) +(?P<time>\d+\.\d+) +"
    r"(?:(?P<name>\w+)\((?P<args>.*?)(?:\) += (?P<result>-?\w+).*?)?"
    r"|<\.\.\. (?P<resumed>\w+) resumed>(?P<rest>.*?))"
    r"(?: <(?P<duration>\d+\.\d+)>)?$")


def message(n: int) -> bytes:
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: sync {n}\r\n\r\n"
            f"body {n}\r\n").encode()


class Call:
    def __init__(self, pid, name, start, end, fd, text, result):
        self.pid, self.name, self.start, self.end = pid, name, start, end
        self.fd, self.text, self.result = fd, text, result


def parse_strace(path) -> list:
    """Calls with their start and end times, pairing unfinished and resumed parts."""
    calls, open_calls = [], {}
    for line in path.read_text(errors="replace").splitlines():
        m = STRACE_LINE.match(line)
        if m is None:
            continue
        pid, t = int(m["pid"]), float(m["time"])
        if m["resumed"]:
            start_name, start, args = open_calls.pop(pid, (m["resumed"], t, ""))
            end = t + float(m["duration"] or 0)
            text = args + m["rest"]
            name = start_name
            result = re.search(r"\) += (-?\w+)", m["rest"])
            result = result[1] if result else None
        else:
            name, args = m["name"], m["args"]
            if line.endswith("<unfinished ...>"):
                open_calls[pid] = (name, t, args)
                continue
            start = t
            end = t + float(m["duration"] or 0)
            text = args
            result = m["result"]
        fd_match = re.match(r"(\d+)", text)
        calls.append(Call(pid, name, start, end,
                          int(fd_match[1]) if fd_match else None, text, result))
    calls.sort(key=lambda c: c.start)
    return calls


def wal_fds(calls, wal_path) -> set:
    """The descriptors opened on the WAL file (the threads share them)."""
    return {int(c.result) for c in calls
            if c.name == "openat" and f'"{wal_path}"' in c.text
            and c.result is not None and c.result.isdigit()}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_reply_follows_wal_sync(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    trace = tmp_path / "strace.txt"
    wrapper = tmp_path / "relayqd-traced"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec strace -f -ttt -T -s 80 -o {trace} "
        "-e trace=openat,pwrite64,fdatasync,fsync,write,writev,sendto,sendmsg "
        f"{d.relayqd_path} \"$@\"\n")
    wrapper.chmod(0o755)
    real = d.relayqd_path
    d.relayqd_path = wrapper
    d.start()

    ids = [d.send(SENDER, [RECIPIENT], message(n)) for n in range(10)]
    assert len(set(ids)) == 10

    # SIGTERM goes to relayqd itself, below strace, which then exits.
    child = subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True,
                           text=True).stdout.split()
    assert child, "relayqd did not start under strace"
    os.kill(int(child[0]), signal.SIGTERM)
    d.proc.wait(timeout=20)
    d.relayqd_path = real

    wal = f"{d.config['queue']['path']}-wal"
    calls = parse_strace(trace)
    fds = wal_fds(calls, wal)
    assert fds, f"no openat of {wal} in the trace"
    replies = [c for c in calls if c.name in ("write", "writev", "sendto", "sendmsg")
               and "250 2.0.0 Ok: queued as" in c.text]
    assert len(replies) == 10, f"{len(replies)} replies found in the trace"

    for reply in replies:
        wal_writes = [c for c in calls if c.name == "pwrite64" and c.fd in fds
                      and c.end <= reply.start]
        assert wal_writes, "a reply came before any WAL write"
        committed = wal_writes[-1].end
        syncs = [c for c in calls if c.name in ("fdatasync", "fsync") and c.fd in fds
                 and c.start >= committed and c.end <= reply.start]
        assert syncs, (f"reply at {reply.start:.6f} has no WAL sync between the "
                       f"commit at {committed:.6f} and itself")


def test_checkpoints_bound_the_wal(relayq, fake_smarthost):
    srv = fake_smarthost()
    d = relayq.daemon(smarthost=srv.smarthost_config(), log={"level": "info"})
    d.start()
    wal = f"{d.config['queue']['path']}-wal"

    # 800 messages of 32 KiB write about 25 MiB into the WAL; SQLite's
    # page size is 4 KiB, so a checkpoint is due every 4 MiB or so.
    body = b"x" * 76 + b"\r\n"
    data = (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: big\r\n\r\n").encode() \
        + body * 420
    peak = 0
    for n in range(800):
        d.send(SENDER, [RECIPIENT], data)
        if n % 50 == 0:
            peak = max(peak, os.path.getsize(wal))
    srv.wait_for_messages(800, timeout=120)
    peak = max(peak, os.path.getsize(wal))
    assert peak < 16 * 1024 * 1024, f"the WAL reached {peak} bytes"
    assert "event=checkpoint_failed" not in d.log_text()
