"""
relayqd syncs its WAL in a worker thread: a 250 reply goes out only after
an fdatasync() of the WAL that began after the message's commit. SQLite's
checkpoints, which run on the event loop, keep the WAL from growing without
bound.
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
            # -T gives the whole call's duration, counted from its start.
            end = start + float(m["duration"] or 0)
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


def start_traced(d, trace, extra=""):
    """Start relayqd under strace -f, which writes every call of interest to TRACE."""
    wrapper = trace.with_name("relayqd-traced")
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec strace -f -ttt -T -s 80 -o {trace} "
        f"-e trace=openat,pwrite64,fdatasync,fsync,write,writev,sendto,sendmsg,unlink{extra} "
        f"{d.relayqd_path} \"$@\"\n")
    wrapper.chmod(0o755)
    real = d.relayqd_path
    d.relayqd_path = wrapper
    d.start()
    d.relayqd_path = real


def stop_traced(d):
    """SIGTERM relayqd itself, below strace, which then exits."""
    child = subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True,
                           text=True).stdout.split()
    assert child, "relayqd did not start under strace"
    os.kill(int(child[0]), signal.SIGTERM)
    d.proc.wait(timeout=20)


def check_synced_before(calls, wal, events, commits=None):
    """
    Each call in EVENTS needs a WAL sync that began after its commit ended
    and ended before it. COMMITS gives the end of each event's commit;
    without it, the last WAL write before the event ends the commit.
    """
    fds = wal_fds(calls, wal)
    assert fds, f"no openat of {wal} in the trace"
    for i, event in enumerate(events):
        wal_writes = [c for c in calls if c.name == "pwrite64" and c.fd in fds
                      and c.end <= event.start]
        assert wal_writes, f"{event.name} came before any WAL write"
        committed = commits[i] if commits else wal_writes[-1].end
        syncs = [c for c in calls if c.name in ("fdatasync", "fsync") and c.fd in fds
                 and c.start >= committed and c.end <= event.start]
        assert syncs, (f"{event.name} at {event.start:.6f} has no WAL sync between "
                       f"the commit at {committed:.6f} and itself")


def pickup_commit_end(calls, wal, path) -> float:
    """When the commit of the pickup file PATH ended: its WAL writes follow the read at its end."""
    fds = wal_fds(calls, wal)
    opened = [c for c in calls if c.name == "openat" and f'"{path}"' in c.text
              and c.result is not None and c.result.isdigit()]
    assert opened, f"no openat of {path} in the trace"
    fd, pid = int(opened[0].result), opened[0].pid
    later = [c for c in calls if c.pid == pid and c.start >= opened[0].start]
    eof = next(i for i, c in enumerate(later)
               if c.name == "read" and c.fd == fd and c.result == "0")
    end = None
    for c in later[eof + 1:]:
        if c.name != "pwrite64" or c.fd not in fds:
            break
        end = c.end
    assert end is not None, f"no WAL write after the end of {path}"
    return end


needs_strace = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="strace is not installed")


@needs_strace
def test_reply_follows_wal_sync(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(start=False)
    d = relayq.daemon(smarthost=srv.smarthost_config())
    trace = tmp_path / "strace.txt"
    start_traced(d, trace)
    ids = [d.send(SENDER, [RECIPIENT], message(n)) for n in range(10)]
    assert len(set(ids)) == 10
    stop_traced(d)

    calls = parse_strace(trace)
    replies = [c for c in calls if c.name in ("write", "writev", "sendto", "sendmsg")
               and "250 2.0.0 Ok: queued as" in c.text]
    assert len(replies) == 10, f"{len(replies)} replies found in the trace"
    check_synced_before(calls, f"{d.config['queue']['path']}-wal", replies)


@needs_strace
def test_pickup_file_removed_after_wal_sync(relayq, fake_smarthost, tmp_path):
    srv = fake_smarthost(start=False)
    pickup = tmp_path / "pickup"
    pickup.mkdir()
    d = relayq.daemon(smarthost=srv.smarthost_config(), pickup={"path": str(pickup)})
    trace = tmp_path / "strace.txt"
    start_traced(d, trace, extra=",read")
    for n in range(5):
        tmp = tmp_path / f"m{n}.tmp"
        tmp.write_bytes(message(n))
        os.rename(tmp, pickup / f"m{n}.eml")
    d.wait_for(lambda: not any(pickup.glob("*.eml")), timeout=15,
               message="every pickup file taken")
    stop_traced(d)

    calls = parse_strace(trace)
    wal = f"{d.config['queue']['path']}-wal"
    unlinks = [c for c in calls if c.name == "unlink" and ".eml" in c.text]
    assert len(unlinks) == 5, f"{len(unlinks)} unlinks of pickup files in the trace"
    # Other messages' deferrals write to the WAL too, so each file's
    # commit is found from the read that reached its end.
    commits = [pickup_commit_end(calls, wal, re.search(r'"([^"]+\.eml)"', u.text)[1])
               for u in unlinks]
    check_synced_before(calls, wal, unlinks, commits)


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
