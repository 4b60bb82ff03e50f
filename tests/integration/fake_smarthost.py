"""
Scriptable fake smart host for fault injection: aiosmtpd servers on
127.0.0.1, each in its own thread and event loop. Replies, delays, dropped
connections and stalls are set per SMTP stage, and every connection,
command, AUTH attempt and DATA transaction is recorded for the test.

aiosmtpd supplies the command loop, line framing, STARTTLS upgrade and idle
timeout. The commands are implemented here because aiosmtpd's own MAIL
rejects the null sender and unknown parameters, and its DATA keeps neither
the dot-stuffed wire bytes nor a way to drop the connection after the dot.

Reply scripts. A stage's reply comes from a spec, which is one of:
  None        the default reply of that stage
  str         this reply every time, e.g. "451 4.3.0 try later"
  list        one item per occurrence, consumed in order, then the default
              (an item of None also means the default)
  callable    fn(n, arg) with n counting occurrences from 0 and arg the
              stage's argument (address, mechanism, message bytes);
              returns a reply or None
A reply of several lines is written with "\\n" between lines. DROP closes
the connection without a reply and HANG never replies.

Stages: greeting, helo, ehlo, starttls, auth, mail, rcpt, data (the 354
reply), data_end (the reply after the final dot), rset, noop, quit.
"""

import asyncio
import base64
import binascii
import collections
import dataclasses
import email
import hmac
import email.message
import email.policy
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from aiosmtpd.smtp import SMTP

DROP = "<drop>"
HANG = "<hang>"

STAGES = ("greeting", "helo", "ehlo", "starttls", "auth", "mail", "rcpt",
          "data", "data_end", "rset", "noop", "quit")

# AUTH rejections that a server sends at once, before any challenge.
AUTH_IMMEDIATE_CODES = ("500", "501", "502", "503", "504", "534", "538")

HANG_SECONDS = 24 * 3600


@dataclasses.dataclass
class Connection:
    """One client connection and what happened on it."""

    number: int
    peer: Any
    commands: list = dataclasses.field(default_factory=list)
    tls: bool = False
    auth_user: Optional[str] = None
    ehlo_count: int = 0
    transactions: list = dataclasses.field(default_factory=list)
    closed: bool = False


@dataclasses.dataclass
class AuthAttempt:
    """One AUTH command: mechanism, decoded credentials and the reply sent."""

    connection: int
    mechanism: str
    username: Optional[str]
    password: Optional[str]
    reply: str


@dataclasses.dataclass
class Transaction:
    """
    One complete DATA transaction. WIRE is the DATA content exactly as it
    arrived, dot-stuffed, without the final ".\\r\\n". CONTENT is WIRE with
    the transparency dots removed (RFC 5321 section 4.5.2).
    """

    connection: int
    mail_from: str
    rcpt_tos: list
    mail_options: list
    rcpt_options: list
    wire: bytes
    content: bytes
    tls: bool
    auth_user: Optional[str]
    reply: str = ""
    accepted: bool = False

    def message(self) -> email.message.Message:
        """Parse CONTENT as an RFC 5322 message."""
        return email.message_from_bytes(self.content, policy=email.policy.compat32)

    def header(self, name: str) -> list:
        """Return every value of header NAME, unfolded, in order."""
        values = self.message().get_all(name) or []
        return [re.sub(r"\r?\n[ \t]", " ", str(v)).strip() for v in values]


def format_reply(text: str) -> bytes:
    """Turn "250 a\\n250 b" (or "250 a\\nb") into a CRLF-ended multi-line reply."""
    lines = text.split("\n")
    code = lines[0][:3]
    out = []
    for i, line in enumerate(lines):
        if re.match(r"^\d{3}([ -]|$)", line):
            line = line[4:]
        separator = "-" if i < len(lines) - 1 else " "
        out.append(f"{code}{separator}{line}".rstrip())
    return ("\r\n".join(out)).encode("utf-8")


def resolve_spec(spec, n: int, arg):
    """Pick the reply (or delay) for occurrence N from a reply spec."""
    if spec is None:
        return None
    if callable(spec):
        return spec(n, arg)
    if isinstance(spec, list):
        return spec.pop(0) if spec else None
    return spec


def stage_selected(selection, stage: str) -> bool:
    """True when SELECTION (None, a stage name or a collection of names) names STAGE."""
    if selection is None:
        return False
    if isinstance(selection, str):
        return selection == stage
    return stage in selection


def split_path_argument(arg: Optional[str], keyword: str):
    """
    Parse "FROM:<a@b> SIZE=1" (or "TO:<...>"). Returns (address, params),
    or None when the syntax is invalid. The null path gives "".
    """
    if arg is None:
        return None
    match = re.match(r"^" + keyword + r":\s*<([^<>]*)>(.*)$", arg, re.IGNORECASE)
    if match is None:
        return None
    return match.group(1), match.group(2).split()


def undo_dot_stuffing(wire: bytes) -> bytes:
    lines = re.split(rb"(?<=\r\n)", wire)
    return b"".join(line[1:] if line.startswith(b".") else line for line in lines)


class ScriptedSMTP(SMTP):
    """One connection's protocol: aiosmtpd's engine with the scripted commands below."""

    command_size_limit = 2048
    # The stream reader limit; long body lines are recorded, not rejected,
    # so that tests can check how the client folded them.
    line_length_limit = 1 << 20

    def __init__(self, host: "FakeSmarthost", loop: asyncio.AbstractEventLoop):
        super().__init__(
            _NoHooks(),
            loop=loop,
            hostname=host.hostname,
            tls_context=host.starttls_context(),
            require_starttls=host.require_starttls,
            timeout=host.idle_timeout,
            decode_data=False,
            enable_SMTPUTF8=True,
            data_size_limit=None,
            auth_required=host.auth_required,
            auth_require_tls=True,
        )
        self.host = host
        self.record: Optional[Connection] = None
        self.greeted = False

        # NOTE: _smtp_methods is aiosmtpd's private dispatch table (checked
        # with aiosmtpd 1.4.3). Wrapping it records every command line.
        self._smtp_methods = {
            name: self.recording(name, method)
            for name, method in self._smtp_methods.items()
        }

    def recording(self, name, method):
        async def run(arg):
            line = name if arg is None else f"{name} {arg}"
            self.host.record_command(self.record, line)
            return await method(arg)
        return run

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.record is None:
            self.record = self.host.open_connection(self, self.session.peer)
            self.record.tls = self.tls_active()

    def connection_lost(self, error):
        self.host.close_connection(self, self.record)
        super().connection_lost(error)

    def tls_active(self) -> bool:
        return (self.transport is not None
                and self.transport.get_extra_info("ssl_object") is not None)

    async def script(self, stage: str, default: str, key=None, arg=None) -> str:
        """Choose the reply for STAGE and apply it. Returns only when the reply is to be sent."""
        reply = self.host.choose_reply(stage, default, key, arg)
        await self.perform(stage, reply)
        return reply

    async def perform(self, stage: str, reply: str):
        """Apply the stage's delay, then DROP or HANG. Returns only when REPLY is to be sent."""
        delay = self.host.choose_delay(stage)
        if delay:
            await asyncio.sleep(delay)
        if reply == DROP:
            if self.transport is not None:
                self.transport.abort()
            # connection_lost() cancels this coroutine.
            await asyncio.sleep(HANG_SECONDS)
        if reply == HANG:
            await asyncio.sleep(HANG_SECONDS)

    async def reply(self, text: str):
        await super().push(format_reply(text))

    async def push(self, status):
        # aiosmtpd's first push is always the greeting.
        if not self.greeted:
            self.greeted = True
            default = f"220 {self.host.hostname} ESMTP fake smart host"
            status = await self.script("greeting", default)
            await self.reply(status)
            return
        await super().push(status)

    async def smtp_HELO(self, hostname):
        if not hostname:
            await self.reply("501 5.5.4 Syntax: HELO hostname")
            return
        reply = await self.script("helo", f"250 {self.host.hostname}", arg=hostname)
        if reply.startswith("2"):
            self._set_rset_state()
            self.session.host_name = hostname
            self.session.extended_smtp = False
        await self.reply(reply)

    async def smtp_EHLO(self, hostname):
        if not hostname:
            await self.reply("501 5.5.4 Syntax: EHLO hostname")
            return
        self.record.ehlo_count += 1
        keywords = self.host.ehlo_keywords(self.tls_active())
        default = "\n".join([f"250 {self.host.hostname}"] + keywords)
        reply = await self.script("ehlo", default, arg=hostname)
        if reply.startswith("2"):
            self._set_rset_state()
            self.session.host_name = hostname
            self.session.extended_smtp = True
        await self.reply(reply)

    async def smtp_STARTTLS(self, arg):
        if arg:
            await self.reply("501 5.5.4 Syntax: STARTTLS")
            return
        if self.tls_context is None or self.tls_active():
            await self.reply("502 5.5.1 STARTTLS not available")
            return
        reply = await self.script("starttls", "220 2.0.0 Ready to start TLS")
        if not reply.startswith("220"):
            await self.reply(reply)
            return
        # aiosmtpd writes its own 220 line and performs the handshake.
        await super().smtp_STARTTLS(arg)
        self.record.tls = True

    async def smtp_AUTH(self, arg):
        error = self.check_auth_preconditions()
        if error is not None:
            await self.reply(error)
            return

        words = arg.split() if arg else []
        if not words or len(words) > 2:
            await self.reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        mechanism = words[0].upper()
        initial = words[1] if len(words) > 1 else None
        if mechanism not in self.host.auth_mechanisms:
            await self.reply("504 5.5.4 Unrecognized authentication type")
            return

        scripted = self.host.choose_auth_reply(mechanism)
        if scripted is not None and scripted[:3] in AUTH_IMMEDIATE_CODES:
            self.host.record_auth(self.record, mechanism, None, None, scripted)
            await self.perform("auth", scripted)
            await self.reply(scripted)
            return

        credentials = await self.run_auth_exchange(mechanism, initial)
        if isinstance(credentials, str):
            self.host.record_auth(self.record, mechanism, None, None, credentials)
            await self.reply(credentials)
            return

        username, password = credentials
        valid = self.host.auth is not None and (username, password) == tuple(self.host.auth)
        default = ("235 2.7.0 Authentication successful" if valid
                   else "535 5.7.8 Authentication credentials invalid")
        reply = scripted if scripted is not None else default
        if stage_selected(self.host.drop_at, "auth"):
            reply = DROP
        if stage_selected(self.host.hang_at, "auth"):
            reply = HANG
        self.host.record_auth(self.record, mechanism, username, password, reply)
        await self.perform("auth", reply)
        if reply.startswith("2"):
            self.session.authenticated = True
            self.record.auth_user = username
        await self.reply(reply)

    def check_auth_preconditions(self) -> Optional[str]:
        if not self.session.host_name or not self.session.extended_smtp:
            return "503 5.5.1 Error: send EHLO first"
        if self.host.auth is None:
            return "502 5.5.1 AUTH not available"
        if self.host.auth_require_tls and not self.tls_active():
            return "538 5.7.11 Encryption required for requested authentication mechanism"
        if self.session.authenticated:
            return "503 5.5.1 Already authenticated"
        return None

    async def run_auth_exchange(self, mechanism: str, initial: Optional[str]):
        """
        Run the challenges of MECHANISM. Returns (username, password), or a
        reply text when the client aborted or sent invalid base64.
        """
        try:
            if mechanism == "PLAIN":
                response = initial
                if response is None:
                    response = await self.challenge("")
                if response is None:
                    return "501 5.7.0 Authentication aborted"
                parts = self.decode_base64(response).split(b"\0")
                if len(parts) != 3:
                    return "501 5.5.2 Invalid PLAIN response"
                return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")

            if mechanism == "LOGIN":
                username = initial
                if username is None:
                    username = await self.challenge(base64.b64encode(b"Username:").decode())
                if username is None:
                    return "501 5.7.0 Authentication aborted"
                password = await self.challenge(base64.b64encode(b"Password:").decode())
                if password is None:
                    return "501 5.7.0 Authentication aborted"
                return (self.decode_base64(username).decode("utf-8", "replace"),
                        self.decode_base64(password).decode("utf-8", "replace"))

            if mechanism == "CRAM-MD5":
                return await self.run_cram_md5(initial)

            if mechanism == "XOAUTH2":
                return await self.run_xoauth2(initial)

            # Other mechanisms get one empty challenge and never verify;
            # tests script their reply.
            response = initial if initial is not None else await self.challenge("")
            if response is None:
                return "501 5.7.0 Authentication aborted"
            return self.decode_base64(response).decode("utf-8", "replace"), None
        except binascii.Error:
            return "501 5.5.2 Cannot decode base64"

    async def run_cram_md5(self, initial: Optional[str]):
        """
        RFC 2195: send a challenge and check the HMAC-MD5 in the response.
        Returns (username, password) with the configured password when the
        digest matches, else (username, None), which fails verification.
        """
        if initial is not None:
            return "501 5.5.2 CRAM-MD5 takes no initial response"
        nonce = f"<{self.host.next_queue_number()}.{int(time.time())}@{self.host.hostname}>"
        response = await self.challenge(base64.b64encode(nonce.encode()).decode())
        if response is None:
            return "501 5.7.0 Authentication aborted"
        decoded = self.decode_base64(response).decode("utf-8", "replace")
        username, _, digest = decoded.rpartition(" ")
        if self.host.auth is None or not username:
            return username or decoded, None
        expected = hmac.new(self.host.auth[1].encode(), nonce.encode(), "md5").hexdigest()
        return username, self.host.auth[1] if hmac.compare_digest(expected, digest) else None

    async def run_xoauth2(self, initial: Optional[str]):
        """
        The XOAUTH2 exchange: "user=U^Aauth=Bearer TOKEN^A^A" as the initial
        response (or after an empty challenge). The token counts as the
        password. A wrong token gets the 334 error challenge with a JSON
        status, then the reply to the client's empty response.
        """
        response = initial if initial is not None else await self.challenge("")
        if response is None:
            return "501 5.7.0 Authentication aborted"
        decoded = self.decode_base64(response).decode("utf-8", "replace")
        fields = dict(part.split("=", 1) for part in decoded.split("\x01") if "=" in part)
        username = fields.get("user")
        token = fields.get("auth", "")
        token = token[len("Bearer "):] if token.startswith("Bearer ") else None
        if self.host.auth is not None and (username, token) == tuple(self.host.auth):
            return username, token
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await self.challenge(error)
        return username, None

    async def challenge(self, text: str) -> Optional[str]:
        await super().push(f"334 {text}")
        line = await self._reader.readline()
        line = line.rstrip(b"\r\n").decode("ascii", "replace")
        if line == "*":
            return None
        return line

    @staticmethod
    def decode_base64(text: str) -> bytes:
        if text == "=":
            return b""
        return base64.b64decode(text, validate=True)

    async def smtp_MAIL(self, arg):
        if await self.check_helo_needed("EHLO"):
            return
        if await self.check_auth_needed("MAIL"):
            return
        parsed = split_path_argument(arg, "FROM")
        if parsed is None:
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        if self.envelope.mail_from is not None:
            await self.reply("503 5.5.1 Error: nested MAIL command")
            return

        address, params = parsed
        reply = await self.script("mail", "250 2.1.0 Ok", key=address, arg=address)
        if reply.startswith("2"):
            self.envelope.mail_from = address
            self.envelope.mail_options = params
        await self.reply(reply)

    async def smtp_RCPT(self, arg):
        if await self.check_helo_needed("EHLO"):
            return
        if await self.check_auth_needed("RCPT"):
            return
        if self.envelope.mail_from is None:
            await self.reply("503 5.5.1 Error: need MAIL command")
            return
        parsed = split_path_argument(arg, "TO")
        if parsed is None:
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return

        address, params = parsed
        reply = await self.script("rcpt", "250 2.1.5 Ok", key=address, arg=address)
        if reply.startswith("2"):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.append(params)
        await self.reply(reply)

    async def smtp_DATA(self, arg):
        if await self.check_helo_needed("EHLO"):
            return
        if await self.check_auth_needed("DATA"):
            return
        if arg:
            await self.reply("501 5.5.4 Syntax: DATA")
            return
        if self.envelope.mail_from is None:
            await self.reply("503 5.5.1 Error: need MAIL command")
            return
        if not self.envelope.rcpt_tos:
            await self.reply("554 5.5.1 Error: no valid recipients")
            return

        reply = await self.script("data", "354 End data with <CR><LF>.<CR><LF>")
        await self.reply(reply)
        if not reply.startswith("354"):
            return

        wire = await self.read_data()
        transaction = Transaction(
            connection=self.record.number,
            mail_from=self.envelope.mail_from,
            rcpt_tos=list(self.envelope.rcpt_tos),
            mail_options=list(self.envelope.mail_options),
            rcpt_options=list(self.envelope.rcpt_options),
            wire=wire,
            content=undo_dot_stuffing(wire),
            tls=self.tls_active(),
            auth_user=self.record.auth_user,
        )
        self._set_post_data_state()

        default = f"250 2.0.0 Ok: queued as FAKE{self.host.next_queue_number():04d}"
        reply = self.host.choose_reply("data_end", default, None, transaction.content)
        transaction.reply = reply
        self.host.record_transaction(self.record, transaction)
        await self.perform("data_end", reply)
        await self.reply(reply)
        if reply.startswith("2"):
            self.host.record_accepted(transaction)

    async def read_data(self) -> bytes:
        """
        Read DATA content up to the terminating CRLF.CRLF. Only a "."
        line that follows a CRLF ends it, so a bare LF before the dot does not.
        """
        lines = []
        at_line_start = True
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                line = await self._reader.readexactly(overrun.consumed)
            if at_line_start and line == b".\r\n":
                return b"".join(lines)
            lines.append(line)
            at_line_start = line.endswith(b"\r\n")

    async def smtp_RSET(self, arg):
        self._set_rset_state()
        await self.reply(await self.script("rset", "250 2.0.0 Ok"))

    async def smtp_NOOP(self, arg):
        await self.reply(await self.script("noop", "250 2.0.0 Ok"))

    async def smtp_QUIT(self, arg):
        reply = await self.script("quit", "221 2.0.0 Bye")
        await self.reply(reply)
        self._handler_coroutine.cancel()
        self.transport.close()


class _NoHooks:
    """aiosmtpd handler without hooks: the commands above do the work."""


class FakeSmarthost:
    """
    A fake smart host on 127.0.0.1. Set the script attributes at any time,
    also while a client is connected:
      replies      {stage: spec} for any stage
      rcpt_reply   {address: spec}, before replies["rcpt"]
      auth_reply   spec, or {mechanism: spec}, for the reply to AUTH
      delay        {stage: seconds or spec of seconds} before the reply
      drop_at      stage name or names: close the connection there, no reply
      hang_at      stage name or names: never reply there
    Records: connections, commands (every command line, in order), auth_attempts,
    transactions (every complete DATA) and messages (those whose 2xx reply was written).
    """

    def __init__(self, *, tls="none", auth=None, auth_mechanisms=("PLAIN", "LOGIN"),
                 auth_require_tls=None, auth_required=False, require_starttls=False,
                 pipelining=True, size=10 * 1024 * 1024, ehlo_extensions=None,
                 hostname="smarthost.test", idle_timeout=300, certificates=None,
                 workdir=None, port=0, tls_max_version=None, client_ca=None):
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be none, starttls or implicit, not {tls!r}")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.auth = tuple(auth) if auth is not None else None
        self.auth_mechanisms = [m.upper() for m in auth_mechanisms]
        self.auth_require_tls = (tls != "none") if auth_require_tls is None else auth_require_tls
        self.auth_required = auth_required
        self.require_starttls = require_starttls
        self.pipelining = pipelining
        self.size = size
        self.ehlo_extensions = ehlo_extensions
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self.certificates = certificates
        self.workdir = Path(workdir) if workdir is not None else None
        # An ssl.TLSVersion the server offers at most, and a CA file whose
        # client certificates the server requires (None: no client certificate).
        self.tls_max_version = tls_max_version
        self.client_ca = client_ca

        self.replies = {}
        self.rcpt_reply = {}
        self.auth_reply = None
        self.delay = {}
        self.drop_at = None
        self.hang_at = None

        self.connections = []
        self.commands = []
        self.auth_attempts = []
        self.transactions = []
        self.messages = []

        self.lock = threading.Condition()
        self.counts = collections.Counter()
        self.queue_number = 0
        self.protocols = set()
        self.loop = None
        self.thread = None
        self.server = None

    def __repr__(self):
        state = "running" if self.running else "stopped"
        return f"<FakeSmarthost {self.host}:{self.port} tls={self.tls} {state}>"

    @property
    def running(self) -> bool:
        return self.thread is not None

    def starttls_context(self) -> Optional[ssl.SSLContext]:
        if self.tls != "starttls":
            return None
        return self.server_tls_context()

    def server_tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.cert_file, self.certificates.key_file)
        if self.tls_max_version is not None:
            context.maximum_version = self.tls_max_version
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(self.client_ca))
        return context

    def ehlo_keywords(self, tls_active: bool) -> list:
        """Return the EHLO keywords to advertise. ehlo_extensions (a list or fn(tls_active)) replaces them."""
        if callable(self.ehlo_extensions):
            return list(self.ehlo_extensions(tls_active))
        if self.ehlo_extensions is not None:
            return list(self.ehlo_extensions)

        keywords = []
        if self.pipelining:
            keywords.append("PIPELINING")
        if self.size:
            keywords.append(f"SIZE {self.size}")
        keywords += ["8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.tls == "starttls" and not tls_active:
            keywords.append("STARTTLS")
        if self.auth is not None and (tls_active or not self.auth_require_tls):
            keywords.append("AUTH " + " ".join(self.auth_mechanisms))
        return keywords

    def smarthost_config(self, **overrides) -> dict:
        """The relayq "smarthost:" section that points at this server, with credentials if set."""
        config = {"host": self.host, "port": self.port, "tls": self.tls}
        if self.tls != "none":
            config["ca_file"] = str(self.certificates.ca_file)
        if self.auth is not None:
            secret = self.workdir / f"smarthost-{self.port}.secret"
            secret.write_text(self.auth[1])
            secret.chmod(0o600)
            config["username"] = self.auth[0]
            config["password_file"] = str(secret)
        config.update(overrides)
        return config

    # Scripting, called from the server thread.

    def choose_reply(self, stage: str, default: str, key, arg) -> str:
        with self.lock:
            n = self.counts[(stage, key)]
            self.counts[(stage, key)] += 1
            spec = self.replies.get(stage)
            if stage == "rcpt" and key in self.rcpt_reply:
                spec = self.rcpt_reply[key]
            reply = resolve_spec(spec, n, arg)
        if reply is None:
            reply = default
        if stage_selected(self.drop_at, stage):
            reply = DROP
        if stage_selected(self.hang_at, stage):
            reply = HANG
        return reply

    def choose_auth_reply(self, mechanism: str) -> Optional[str]:
        with self.lock:
            n = self.counts[("auth", mechanism)]
            self.counts[("auth", mechanism)] += 1
            spec = self.auth_reply
            if isinstance(spec, dict):
                spec = spec.get(mechanism)
            if spec is None:
                spec = self.replies.get("auth")
            return resolve_spec(spec, n, mechanism)

    def choose_delay(self, stage: str) -> float:
        with self.lock:
            n = self.counts[("delay", stage)]
            self.counts[("delay", stage)] += 1
            return resolve_spec(self.delay.get(stage), n, None) or 0

    def next_queue_number(self) -> int:
        with self.lock:
            self.queue_number += 1
            return self.queue_number

    # Records, written from the server thread.

    def open_connection(self, protocol, peer) -> Connection:
        with self.lock:
            record = Connection(number=len(self.connections) + 1, peer=peer)
            self.connections.append(record)
            self.protocols.add(protocol)
            self.lock.notify_all()
            return record

    def close_connection(self, protocol, record: Optional[Connection]):
        with self.lock:
            self.protocols.discard(protocol)
            if record is not None:
                record.closed = True
            self.lock.notify_all()

    def record_command(self, record: Connection, line: str):
        with self.lock:
            record.commands.append(line)
            self.commands.append(line)
            self.lock.notify_all()

    def record_auth(self, record: Connection, mechanism, username, password, reply):
        with self.lock:
            attempt = AuthAttempt(record.number, mechanism, username, password, reply)
            self.auth_attempts.append(attempt)
            self.lock.notify_all()

    def record_transaction(self, record: Connection, transaction: Transaction):
        with self.lock:
            record.transactions.append(transaction)
            self.transactions.append(transaction)
            self.lock.notify_all()

    def record_accepted(self, transaction: Transaction):
        with self.lock:
            transaction.accepted = True
            self.messages.append(transaction)
            self.lock.notify_all()

    # Waiting, called from the test thread.

    def wait_for(self, predicate, timeout=15.0, message=""):
        """Wait until PREDICATE(), which runs under the record lock, returns a true value."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"{self!r}: timed out after {timeout}s waiting for "
                                f"{message or predicate}\n{self.summary()}")
                self.lock.wait(min(remaining, 0.5))

    def wait_for_messages(self, n: int, timeout=15.0) -> list:
        """Wait until at least N messages were accepted. Returns a copy of messages."""
        self.wait_for(lambda: len(self.messages) >= n, timeout,
                      f"{n} accepted message(s)")
        with self.lock:
            return list(self.messages)

    def summary(self, last=40) -> str:
        with self.lock:
            lines = [f"connections: {len(self.connections)}, transactions: "
                     f"{len(self.transactions)}, accepted messages: {len(self.messages)}",
                     "last commands:"]
            lines += [f"  {line}" for line in self.commands[-last:]]
            return "\n".join(lines)

    def commands_starting(self, verb: str) -> list:
        with self.lock:
            return [c for c in self.commands if c.upper().startswith(verb.upper())]

    # Life cycle.

    def start(self):
        """Listen on self.port, the same one after stop(), so that clients see the host come back."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        ready = threading.Event()
        errors = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.run, args=(ready, errors),
                                       name=f"fake-smarthost-{self.port}", daemon=True)
        self.thread.start()
        if not ready.wait(10) or errors:
            self.thread.join(5)
            self.thread = None
            raise RuntimeError(f"fake smart host on port {self.port} failed to start: {errors}")
        return self

    def run(self, ready: threading.Event, errors: list):
        asyncio.set_event_loop(self.loop)
        ssl_context = self.server_tls_context() if self.tls == "implicit" else None
        try:
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: ScriptedSMTP(self, self.loop), self.host, self.port,
                ssl=ssl_context, reuse_address=True))
        except OSError as error:
            errors.append(error)
            ready.set()
            self.loop.close()
            return
        ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def shutdown(self):
        """Close the listener, cut every connection and end every task of this loop."""
        self.server.close()
        with self.lock:
            protocols = list(self.protocols)
        for protocol in protocols:
            # After STARTTLS the socket belongs to the original transport.
            for transport in (protocol._original_transport, protocol.transport):
                if transport is not None and not transport.is_closing():
                    transport.abort()
        await self.server.wait_closed()

        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self):
        """Stop listening and drop every open connection, as a host that goes down."""
        if not self.running:
            return
        future = asyncio.run_coroutine_threadsafe(self.shutdown(), self.loop)
        try:
            future.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.thread = None
            self.server = None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the kernel reports as unused at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmarthostCertificates:
    """
    A throwaway CA and a server certificate for localhost, 127.0.0.1 and
    ::1, created with the openssl command on first use.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.created = False
        self.lock = threading.Lock()

    @property
    def ca_file(self) -> Path:
        self.make()
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        self.make()
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        self.make()
        return self.directory / "server.key"

    def make(self):
        with self.lock:
            if self.created:
                return
            self.openssl_commands()
            self.created = True

    def openssl_commands(self):
        d = self.directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        (d / "server.ext").write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
            "subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1\n")
        commands = [
            ["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "30", "-subj", "/CN=relayq test CA",
             "-addext", "basicConstraints = critical, CA:TRUE",
             "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
            ["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
             "-CAkey", "ca.key", "-set_serial", "2", "-days", "30",
             "-extfile", "server.ext", "-out", "server.pem"],
        ]
        for argv in commands:
            result = subprocess.run(argv, cwd=d, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr}")


@pytest.fixture(scope="session")
def fake_smarthost_certificates(tmp_path_factory) -> SmarthostCertificates:
    return SmarthostCertificates(tmp_path_factory.mktemp("fake-smarthost-pki"))


class FakeSmarthostFactory:
    """fake_smarthost(**options) makes a FakeSmarthost and starts it unless start=False."""

    def __init__(self, certificates: SmarthostCertificates, workdir: Path):
        self.certificates = certificates
        self.workdir = workdir
        self.hosts = []

    def __call__(self, start=True, **options) -> FakeSmarthost:
        options.setdefault("certificates", self.certificates)
        options.setdefault("workdir", self.workdir)
        host = FakeSmarthost(**options)
        self.hosts.append(host)
        if start:
            host.start()
        return host

    def stop_all(self):
        for host in self.hosts:
            host.stop()


@pytest.fixture
def fake_smarthost(fake_smarthost_certificates, tmp_path_factory):
    factory = FakeSmarthostFactory(fake_smarthost_certificates,
                                   tmp_path_factory.mktemp("fake-smarthost"))
    yield factory
    factory.stop_all()
