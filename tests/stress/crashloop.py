#!/usr/bin/python3
"""
Crash loop: run relayqd under continuous intake and delivery, kill it with
SIGKILL at random moments, restart it, and check at the end that every
acknowledged message reached the smart host.

Clients submit over SMTP (smtplib) and through `relayq sendmail`; each
message carries a unique token and a SHA-256 of its body. A message counts
as acknowledged when the client got 250 after DATA (or sendmail exit 0).
The smart host is the scriptable fake from tests/integration, which may be
taken down now and then (--host-outage-every) so that deferral and retry
run too.

At the end the smart host is up, `relayq flush` makes every deferred
message due, and the run waits until the queue holds only sent messages.
Then:
  lost        acknowledged tokens the smart host never accepted (must be 0)
  duplicates  extra copies of a token. A copy is explained when relayqd
              sent nothing more on that connection after the smart host's
              250 and was killed (or the smart host went down) within
              --window seconds: the reply-lost-after-the-final-dot window,
              where the host has the message but 'sent' was never
              committed. Any other copy is unexplained and fails the run.
  corrupt     delivered copies whose body does not match its SHA-256
  phantom     delivered tokens no client ever submitted

Usage:
  tests/stress/crashloop.py --kills 200            # long mode
  tests/stress/crashloop.py --kills 20 --ci        # the CI mode (< 60 s)
Binaries come from --build or $RELAYQ_BUILD (default <repo>/build).
Exit status 0 when lost, unexplained duplicates, corrupt and phantom are 0.
"""

import argparse
import bisect
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from fake_smarthost import FakeSmarthost  # noqa: E402
from relayq_fixture import RelayqDaemon  # noqa: E402

SENDER = "crashloop@example.com"
RECIPIENT = "sink@example.net"
TOKEN_RE = re.compile(rb"^token (cl-[0-9a-f]+-\d+)\r$", re.MULTILINE)
HASH_RE = re.compile(rb"^sha256 ([0-9a-f]{64})\r$", re.MULTILINE)
PAYLOAD_MARK = b"--payload--\r\n"


class TimedSmarthost(FakeSmarthost):
    """The fake smart host, noting when each message's 250 was written."""

    def record_accepted(self, transaction):
        with self.lock:
            transaction.accepted_at = time.monotonic()
            # aiosmtpd handles the next command only after this one returns,
            # so later entries of the connection's commands came after the 250.
            transaction.commands_before = len(self.connections[transaction.connection - 1].commands)
        super().record_accepted(transaction)

    def commands_after(self, transaction) -> list:
        with self.lock:
            return self.connections[transaction.connection - 1].commands[transaction.commands_before:]


class Ledger:
    """The messages the clients submitted and the replies they got, shared by all threads."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.lock = threading.Lock()
        self.next_number = 0
        self.outcomes = {}       # token -> "ack", "rejected" or "unknown"
        self.hashes = {}         # token -> expected payload SHA-256
        self.rejections = collections.Counter()

    def new_token(self) -> str:
        with self.lock:
            self.next_number += 1
            return f"cl-{self.run_id}-{self.next_number}"

    def record(self, token: str, digest: str, outcome: str, detail: str = ""):
        with self.lock:
            self.outcomes[token] = outcome
            self.hashes[token] = digest
            if outcome == "rejected":
                self.rejections[detail] += 1

    def count(self, outcome: str) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes.values() if o == outcome)


def make_message(token: str, rng: random.Random, big_share: float) -> tuple:
    """A message with TOKEN, a payload of random lines (some dot-led) and the payload's SHA-256."""
    if rng.random() < big_share:
        target = rng.randint(70_000, 200_000)   # more than one 64 KiB queue chunk
    else:
        target = rng.randint(100, 4_000)
    lines = []
    size = 0
    while size < target:
        length = rng.randint(0, 76)
        line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 .")
                       for _ in range(length))
        if rng.random() < 0.05:
            line = "." + line
        lines.append(line.encode() + b"\r\n")
        size += length + 2
    payload = b"".join(lines)
    digest = hashlib.sha256(payload).hexdigest()
    head = (f"From: {SENDER}\r\n"
            f"To: {RECIPIENT}\r\n"
            f"Subject: crash loop {token}\r\n"
            f"Message-ID: <{token}@crashloop.test>\r\n"
            f"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
            f"\r\n"
            f"token {token}\r\n"
            f"sha256 {digest}\r\n").encode()
    return head + PAYLOAD_MARK + payload, digest


def submit_smtp(port: int, data: bytes, timeout: float) -> tuple:
    """Submit DATA over SMTP. Returns ("ack"|"rejected"|"unknown", detail)."""
    try:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="crashloop.test",
                              timeout=timeout)
    except OSError as error:
        return "rejected", f"connect: {type(error).__name__}"
    try:
        code, text = client.ehlo()
        if code != 250:
            return "rejected", f"EHLO {code}"
        code, text = client.mail(SENDER)
        if code != 250:
            return "rejected", f"MAIL {code}"
        code, text = client.rcpt(RECIPIENT)
        if code not in (250, 251):
            return "rejected", f"RCPT {code}"
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as error:
            # A reply other than 354 to DATA: nothing was sent yet.
            return "rejected", f"DATA {error.smtp_code}"
        if code == 250:
            return "ack", ""
        return "rejected", f"end of data {code}"
    except (OSError, smtplib.SMTPException) as error:
        # Cut off somewhere in the transaction: the client cannot know.
        return "unknown", type(error).__name__
    finally:
        try:
            client.close()
        except OSError:
            pass


def submit_sendmail(relayq: Path, config: Path, data: bytes, timeout: float) -> tuple:
    """Submit DATA with `relayq sendmail -oi`. Exit 0 is the acknowledgement."""
    try:
        result = subprocess.run([str(relayq), "-c", str(config), "sendmail", "-oi",
                                 "-f", SENDER, RECIPIENT], input=data,
                                capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "unknown", "sendmail timed out"
    if result.returncode == 0:
        return "ack", ""
    reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
    reason = re.sub(r"/\S+", "PATH", reason[0])[:120] if reason else ""
    return "rejected", f"sendmail exit {result.returncode}: {reason}"


class Clients:
    """Client threads that submit until stopped."""

    def __init__(self, args, daemon: RelayqDaemon, ledger: Ledger):
        self.args = args
        self.daemon = daemon
        self.ledger = ledger
        self.stop_event = threading.Event()
        self.threads = []
        self.errors = []
        # relayqd's config file is rewritten at every start: sendmail reads a stable copy.
        self.config_copy = daemon.dir / "sendmail.yaml"
        shutil.copyfile(daemon.config_path, self.config_copy)

    def start(self):
        for i in range(self.args.clients):
            self.spawn(f"smtp-{i}", self.smtp_loop, i)
        for i in range(self.args.sendmail_clients):
            self.spawn(f"sendmail-{i}", self.sendmail_loop, 1000 + i)

    def spawn(self, name, target, number):
        thread = threading.Thread(target=self.guard, args=(target, number), name=name,
                                  daemon=True)
        thread.start()
        self.threads.append(thread)

    def guard(self, target, number):
        try:
            target(random.Random(self.args.seed * 7919 + number))
        except Exception as error:  # reported at the end: a client bug must not hide
            self.errors.append(f"{threading.current_thread().name}: {error!r}")

    def smtp_loop(self, rng: random.Random):
        while not self.stop_event.is_set():
            token = self.ledger.new_token()
            data, digest = make_message(token, rng, self.args.big_share)
            outcome, detail = submit_smtp(self.daemon.smtp_port, data, self.args.client_timeout)
            self.ledger.record(token, digest, outcome, detail)
            if outcome != "ack":
                time.sleep(0.05)

    def sendmail_loop(self, rng: random.Random):
        while not self.stop_event.is_set():
            token = self.ledger.new_token()
            data, digest = make_message(token, rng, self.args.big_share)
            outcome, detail = submit_sendmail(self.daemon.relayq_path, self.config_copy,
                                              data, self.args.client_timeout)
            self.ledger.record(token, digest, outcome, detail)
            time.sleep(0.05)

    def stop(self):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(self.args.client_timeout + 30)


def queue_states(daemon: RelayqDaemon) -> collections.Counter:
    result = daemon.cli("list", "--state", "all", "--json")
    if result.returncode != 0:
        return collections.Counter({"<list failed>": 1})
    return collections.Counter(m["state"] for m in json.loads(result.stdout)["messages"])


def integrity_check(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def classify_copies(host: TimedSmarthost, cut_times: list, window: float) -> tuple:
    """
    Group the accepted messages by token. Returns (copies per token,
    explained duplicates, unexplained duplicates as (token, times), corrupt
    tokens, bodies without a token).
    """
    copies = collections.defaultdict(list)
    corrupt = []
    tokenless = 0
    with host.lock:
        messages = list(host.messages)
    for transaction in messages:
        content = transaction.content
        token_match = TOKEN_RE.search(content)
        if token_match is None:
            tokenless += 1
            continue
        token = token_match.group(1).decode()
        copies[token].append((transaction.accepted_at, host.commands_after(transaction)))
        hash_match = HASH_RE.search(content)
        mark = content.find(PAYLOAD_MARK)
        payload = content[mark + len(PAYLOAD_MARK):] if mark != -1 else b""
        if (hash_match is None or mark == -1 or
                hashlib.sha256(payload).hexdigest().encode() != hash_match.group(1)):
            corrupt.append(token)

    explained = 0
    unexplained = []
    cuts = sorted(cut_times)
    for token, accepted in copies.items():
        accepted.sort()
        # Every copy but the last must have been cut off right after its
        # 250. relayqd sends its next command on that connection only
        # after 'sent' is committed. So a later command there means that
        # the copy was committed and then sent again.
        for when, later_commands in accepted[:-1]:
            # The host notes its 250 after writing it, which can be just
            # after a kill that came once the final dot had arrived.
            i = bisect.bisect_left(cuts, when - 1.0)
            if not later_commands and i < len(cuts) and cuts[i] - when <= window:
                explained += 1
            else:
                unexplained.append((token, [round(w, 3) for w, _ in accepted],
                                    later_commands[:3]))
                break
    return copies, explained, unexplained, corrupt, tokenless


def run(args) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="relayq-crashloop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.build:
        os.environ["RELAYQ_BUILD"] = str(Path(args.build).resolve())
    rng = random.Random(args.seed)
    ledger = Ledger(f"{args.seed:x}{random.getrandbits(24):06x}")

    host = TimedSmarthost(tls="none", workdir=workdir, idle_timeout=60)
    host.start()
    daemon = RelayqDaemon(
        workdir / "relayqd",
        smarthost={"host": host.host, "port": host.port, "tls": "none",
                   "on_uncertain": "retry", "max_connections": 2},
        retry={"initial": "1s", "max": "2s", "max_age": "1h"},
        log={"level": "info"},
    )
    daemon.start()

    clients = Clients(args, daemon, ledger)
    cut_times = []          # monotonic times of every SIGKILL and smart host stop
    crashes = []
    host_outages = 0
    started = time.monotonic()
    clients.start()
    try:
        for kill in range(1, args.kills + 1):
            time.sleep(rng.uniform(args.min_up, args.max_up))
            if daemon.proc.poll() is not None:
                crashes.append(f"relayqd exited on its own with status "
                               f"{daemon.proc.returncode} before kill {kill}")
            else:
                cut_times.append(time.monotonic())
                daemon.kill()

            outage = args.host_outage_every > 0 and kill % args.host_outage_every == 0
            if outage and host.running:
                cut_times.append(time.monotonic())
                host.stop()
                host_outages += 1
            elif not host.running:
                host.start()
            daemon.start()
            if args.verbose:
                print(f"crashloop: kill {kill}/{args.kills} acknowledged="
                      f"{ledger.count('ack')} host_up={host.running}", flush=True)
    finally:
        clients.stop()

    if not host.running:
        host.start()

    # Drain: everything due now, then wait for a queue of sent messages only.
    deadline = time.monotonic() + args.drain_timeout
    states = collections.Counter()
    while time.monotonic() < deadline:
        daemon.cli("flush")
        states = queue_states(daemon)
        if set(states) <= {"sent"}:
            break
        time.sleep(0.5)
    drained = set(states) <= {"sent"}
    if daemon.proc.poll() is not None:
        crashes.append(f"relayqd exited on its own with status {daemon.proc.returncode} "
                       f"during the final drain")
    else:
        daemon.stop()
    integrity = integrity_check(Path(daemon.config["queue"]["path"]))
    host.stop()

    acked = {t for t, o in ledger.outcomes.items() if o == "ack"}
    unknown = {t for t, o in ledger.outcomes.items() if o == "unknown"}
    copies, explained, unexplained, corrupt, tokenless = classify_copies(host, cut_times,
                                                                         args.window)
    delivered = set(copies)
    lost = sorted(acked - delivered)
    phantom = sorted(delivered - set(ledger.outcomes))
    delivered_unknown = len(unknown & delivered)
    rejected_delivered = sorted(t for t in delivered if ledger.outcomes.get(t) == "rejected")
    duplicates = sum(len(times) - 1 for times in copies.values())
    elapsed = time.monotonic() - started

    summary = (f"crashloop: kills={len(cut_times) - host_outages} survived={args.kills - len(crashes)} "
               f"host_outages={host_outages} acknowledged={len(acked)} "
               f"delivered={len(delivered & acked)} lost={len(lost)} "
               f"duplicates={duplicates} (reply_lost_window={explained} "
               f"unexplained={len(unexplained)}) corrupt={len(corrupt)} "
               f"phantom={len(phantom) + tokenless} rejected_but_delivered={len(rejected_delivered)} "
               f"cut_off={len(unknown)} (delivered {delivered_unknown}) "
               f"rejected={ledger.count('rejected')} seconds={elapsed:.0f}")
    print(summary, flush=True)
    if ledger.rejections:
        print("crashloop: rejections: " + ", ".join(
            f"{reason} x{count}" for reason, count in ledger.rejections.most_common(8)))

    problems = []
    if lost:
        problems.append(f"lost acknowledged messages: {lost[:20]}")
    if unexplained:
        problems.append(f"duplicates outside the reply-lost window: {unexplained[:5]}")
    if corrupt:
        problems.append(f"bodies that do not match their SHA-256: {corrupt[:20]}")
    if phantom or tokenless:
        problems.append(f"messages no client submitted: {phantom[:20]} (+{tokenless} without a token)")
    if rejected_delivered:
        problems.append(f"messages delivered although the client was told they were rejected: "
                        f"{rejected_delivered[:20]}")
    if not drained:
        problems.append(f"the queue did not drain within {args.drain_timeout}s: {dict(states)}")
    if integrity != "ok":
        problems.append(f"PRAGMA integrity_check: {integrity}")
    if crashes:
        problems += crashes
    if clients.errors:
        problems += clients.errors
    if len(acked) == 0:
        problems.append("no message was acknowledged: the run tested nothing")
    for problem in problems:
        print(f"crashloop: FAIL: {problem}", flush=True)

    if problems or args.keep:
        print(f"crashloop: files kept in {workdir} (relayqd log: {daemon.log_path})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems else 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200,
                        help="SIGKILLs to send (default 200)")
    parser.add_argument("--ci", action="store_true",
                        help="shorter up-times and drain timeout for a run under a minute")
    parser.add_argument("--clients", type=int, default=4, help="SMTP client threads (default 4)")
    parser.add_argument("--sendmail-clients", type=int, default=1,
                        help="`relayq sendmail` client threads (default 1)")
    parser.add_argument("--min-up", type=float, default=None,
                        help="shortest time relayqd runs between kills, in seconds")
    parser.add_argument("--max-up", type=float, default=None,
                        help="longest time relayqd runs between kills, in seconds")
    parser.add_argument("--host-outage-every", type=int, default=7,
                        help="stop the smart host at every Nth kill until the next one; 0: never")
    parser.add_argument("--big-share", type=float, default=0.1,
                        help="share of messages larger than one 64 KiB queue chunk (default 0.1)")
    parser.add_argument("--window", type=float, default=2.0,
                        help="seconds after the smart host's 250 within which a kill explains "
                             "a duplicate (default 2)")
    parser.add_argument("--client-timeout", type=float, default=20.0,
                        help="SMTP client timeout in seconds (default 20)")
    parser.add_argument("--drain-timeout", type=float, default=None,
                        help="seconds to wait for the queue to drain at the end")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--build", help="build directory (default $RELAYQ_BUILD or <repo>/build)")
    parser.add_argument("--workdir", help="directory for the queue, config and logs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print a line per kill")
    args = parser.parse_args(argv)

    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.min_up is None:
        args.min_up = 0.2 if args.ci else 0.3
    if args.max_up is None:
        args.max_up = 1.2 if args.ci else 3.0
    if args.drain_timeout is None:
        args.drain_timeout = 40.0 if args.ci else 180.0
    if args.kills < 1 or args.min_up < 0 or args.max_up < args.min_up:
        parser.error("--kills must be at least 1 and 0 <= --min-up <= --max-up")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"crashloop: seed={args.seed} kills={args.kills} clients={args.clients}+"
          f"{args.sendmail_clients} sendmail", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
