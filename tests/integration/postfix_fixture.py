"""Private Postfix instance on 127.0.0.1 that acts as the smart host in tests.

The instance has its own config, queue and data directories under a temporary
directory. It offers STARTTLS with a certificate from a throwaway test CA,
accepts mail only from clients that did SASL AUTH (PLAIN or LOGIN, offered
only after STARTTLS), and delivers every recipient in VIRTUAL_DOMAINS into one
Maildir. Postfix's master must run as root, so without root the fixture skips.
"""

import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"

HOSTNAME = "smarthost.test"
SASL_REALM = HOSTNAME
USERNAME = "relayq"
VIRTUAL_DOMAINS = ("example.net", "example.com")

# Maildir owner. virtual(8) rejects uids below virtual_minimum_uid (default
# 100), which rules out root.
MAILBOX_USER = "nobody"

START_ATTEMPTS = 5
COMMAND_TIMEOUT = 60
BANNER_TIMEOUT = 10
STOP_TIMEOUT = 10

# The Received: header that smtpd adds, for example
# "by smarthost.test (Postfix) with ESMTPSA id 4Qx1Yz2KXcz9s".
RECEIVED_QUEUE_ID = re.compile(rb"\(Postfix\) with [A-Z]+ id ([0-9A-Za-z]+)")
HEADER_END = re.compile(rb"\r?\n\r?\n")


def _free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(argv, **kwargs):
    """Run ARGV, raising with its output when it exits non-zero."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, argv))} exited {result.returncode}:\n"
                           f"{result.stdout}{result.stderr}")
    return result


def _run_on_tty(argv):
    """Run ARGV on a pseudo-terminal and return (exit code, output).

    Postfix commands write warnings and fatal errors to stderr only when
    stderr is a terminal. Otherwise they go to syslog, which does not run
    here. script(1) provides the terminal.
    """
    result = subprocess.run(["script", "-qec", shlex.join(argv), "/dev/null"],
                            stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=COMMAND_TIMEOUT)
    output = result.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    return result.returncode, output


def _make_test_ca(tls_dir):
    """Create a test CA and a server certificate for localhost and 127.0.0.1.

    Returns the paths (ca_file, cert_file, key_file).
    """
    ca_key = tls_dir / "ca.key"
    ca_file = tls_dir / "ca.pem"
    key_file = tls_dir / "server.key"
    csr_file = tls_dir / "server.csr"
    cert_file = tls_dir / "server.pem"
    ext_file = tls_dir / "server.ext"
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]

    _run(["openssl", "req", "-x509", "-new", *ec_key, "-keyout", ca_key,
          "-out", ca_file, "-days", "2", "-subj", "/CN=relayq test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    _run(["openssl", "req", "-new", *ec_key, "-keyout", key_file,
          "-out", csr_file, "-subj", "/CN=localhost"])

    ext_file.write_text("basicConstraints = critical, CA:FALSE\n"
                        "keyUsage = critical, digitalSignature\n"
                        "extendedKeyUsage = serverAuth\n"
                        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                        "subjectKeyIdentifier = hash\n"
                        "authorityKeyIdentifier = keyid, issuer\n")
    serial = "0x" + secrets.token_hex(8)
    _run(["openssl", "x509", "-req", "-in", csr_file, "-CA", ca_file,
          "-CAkey", ca_key, "-set_serial", serial, "-days", "2",
          "-extfile", ext_file, "-out", cert_file])

    return ca_file, cert_file, key_file


def _chown_to_postfix_group(path, mode):
    """Let Postfix daemons, which run as the postfix user, read PATH."""
    os.chown(path, 0, pwd.getpwnam("postfix").pw_gid)
    os.chmod(path, mode)


def _write_sasl_config(sasl_dir, password):
    """Create the sasldb with USERNAME and the smtpd.conf that uses it."""
    sasldb = sasl_dir / "sasldb2"
    subprocess.run([SASLPASSWD2, "-c", "-p", "-f", str(sasldb), "-u", SASL_REALM,
                    USERNAME], input=password.encode(), capture_output=True,
                   check=True, timeout=COMMAND_TIMEOUT)
    _chown_to_postfix_group(sasldb, 0o640)

    # smtpd is not chrooted, so an absolute sasldb_path works as written.
    (sasl_dir / "smtpd.conf").write_text("pwcheck_method: auxprop\n"
                                         "auxprop_plugin: sasldb\n"
                                         f"sasldb_path: {sasldb}\n"
                                         "mech_list: PLAIN LOGIN\n")


def _main_cf(root, tls_cert, tls_key, mailbox_uid, mailbox_gid):
    """Return the text of main.cf for the instance under ROOT."""
    meta_directory = _run([POSTCONF, "-dh", "meta_directory"]).stdout.strip()
    bounce_transport = "error:5.1.2 this test smart host delivers only to its virtual domains"
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": root / "queue",
        "data_directory": root / "data",
        # postfix-files, which "postfix check" uses to create the queue, is here.
        "meta_directory": meta_directory,
        "myhostname": HOSTNAME,
        "mydomain": HOSTNAME,
        "myorigin": "$myhostname",
        "mydestination": "",
        "mynetworks": "",
        "relay_domains": "",
        "relayhost": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        # No traffic may leave this machine: other destinations bounce, and
        # master.cf has no smtp client service at all.
        "default_transport": bounce_transport,
        "relay_transport": bounce_transport,
        "smtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        "maillog_file": root / "maillog",
        "maillog_file_prefixes": root,
        "smtpd_tls_security_level": "may",
        "smtpd_tls_chain_files": f"{tls_key}, {tls_cert}",
        "smtpd_tls_loglevel": "1",
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_auth_only": "yes",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        # Debian 12's Postfix 3.7 ignores this setting and reads smtpd.conf
        # from $config_directory/sasl (seen with strace), so both agree.
        "cyrus_sasl_config_path": root / "etc" / "sasl",
        "smtpd_sasl_local_domain": SASL_REALM,
        "smtpd_sasl_security_options": "noanonymous",
        "smtpd_sasl_tls_security_options": "noanonymous",
        "smtpd_sasl_authenticated_header": "yes",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        # The virtual domains are local destinations, which the relay
        # restrictions let through, so recipients need AUTH as well.
        "smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
        "virtual_mailbox_domains": ", ".join(VIRTUAL_DOMAINS),
        "virtual_mailbox_base": root / "mail",
        # A trailing slash selects Maildir format.
        "virtual_mailbox_maps": "static:inbox/",
        "virtual_uid_maps": f"static:{mailbox_uid}",
        "virtual_gid_maps": f"static:{mailbox_gid}",
    }
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


def _master_cf(port):
    """Return the text of master.cf: only the services these tests need.

    Nothing runs chrooted, and there is no pickup, smtp, lmtp or local
    service. postlog is needed for maillog_file.
    """
    services = [
        f"127.0.0.1:{port} inet n - n - - smtpd",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "virtual unix - n n - - virtual",
        "anvil unix - - n - 1 anvil",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    return "".join(line + "\n" for line in services)


def _instance_pids(config_dir):
    """Return the live processes whose environment names CONFIG_DIR.

    postfix(1) exports MAIL_CONFIG to master, and master passes it on to
    every daemon it starts. A zombie has an empty environment, so it is
    skipped like a process that exited meanwhile.
    """
    marker = f"MAIL_CONFIG={config_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _describe_pids(pids):
    lines = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        command = cmdline.replace(b"\0", b" ").decode(errors="replace")
        lines.append(f"  {pid}: {command}")
    return "\n".join(lines)


class PostfixSmarthost:
    """One private Postfix instance and its Maildir.

    Attributes for a client: host, port, ca_file, username, password and
    password_file (the password alone, mode 0600).
    """

    host = "127.0.0.1"

    def __init__(self, root):
        self.root = Path(root)
        self.config_dir = self.root / "etc"
        self.maildir = self.root / "mail" / "inbox"
        self.maillog_file = self.root / "maillog"
        self.username = USERNAME
        self.password = secrets.token_urlsafe(18)
        self.password_file = str(self.root / "smarthost.secret")
        self.ca_file = None
        self.port = None
        self._maillog_offset = 0

    def _prepare(self):
        """Write the config, certificates, sasldb and directories."""
        # virtual(8) delivers as MAILBOX_USER and must traverse ROOT.
        os.chmod(self.root, 0o755)
        for name in ("etc", "etc/sasl", "queue", "data", "tls", "mail"):
            (self.root / name).mkdir()

        # master refuses to create its lock file in a data_directory that
        # the postfix user does not own.
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.root / "data", postfix_user.pw_uid, postfix_user.pw_gid)

        mailbox_user = pwd.getpwnam(MAILBOX_USER)
        os.chown(self.root / "mail", mailbox_user.pw_uid, mailbox_user.pw_gid)

        ca_file, cert_file, key_file = _make_test_ca(self.root / "tls")
        _chown_to_postfix_group(key_file, 0o640)
        self.ca_file = str(ca_file)

        _write_sasl_config(self.config_dir / "sasl", self.password)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as secret:
            secret.write(self.password)

        (self.config_dir / "main.cf").write_text(
            _main_cf(self.root, cert_file, key_file, mailbox_user.pw_uid,
                     mailbox_user.pw_gid))

    def start(self):
        """Start the instance on a free port and wait for its greeting."""
        self._prepare()
        failures = []
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            (self.config_dir / "master.cf").write_text(_master_cf(self.port))
            if self._try_start(failures):
                return
            # Another process may have taken the port between our probe and
            # master's bind, so a bind failure is worth another port.
            if "Address already in use" not in self.maillog():
                break
        raise RuntimeError("Postfix failed to start:\n" + "\n".join(failures) +
                           "\nmaillog:\n" + self.maillog())

    def _try_start(self, failures):
        code, output = _run_on_tty([POSTFIX, "-c", str(self.config_dir), "check"])
        if code != 0:
            failures.append(f"postfix check exited {code}:\n{output}")
            return False

        code, output = _run_on_tty([POSTFIX, "-c", str(self.config_dir), "start"])
        if code != 0:
            failures.append(f"postfix start exited {code}:\n{output}")
            return False

        try:
            self._wait_for_banner()
        except OSError as error:
            failures.append(f"no SMTP greeting on port {self.port}: {error}")
            self.stop()
            return False
        return True

    def _wait_for_banner(self):
        deadline = time.monotonic() + BANNER_TIMEOUT
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    banner = sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                if banner.startswith(b"220 "):
                    return
                raise ConnectionError(f"unexpected greeting {banner!r}")
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self):
        """Stop the instance and raise if any of its processes is left."""
        code, output = _run_on_tty([POSTFIX, "-c", str(self.config_dir), "stop"])
        deadline = time.monotonic() + STOP_TIMEOUT
        while _instance_pids(self.config_dir) and time.monotonic() < deadline:
            time.sleep(0.05)

        left = _instance_pids(self.config_dir)
        if not left:
            return
        # Kill what is left so no daemon outlives the session, then fail.
        description = _describe_pids(left)
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        raise AssertionError(f"Postfix processes left {STOP_TIMEOUT}s after "
                             f"'postfix stop' (exit {code}, {output.strip()!r}):\n"
                             f"{description}")

    def maillog(self, since_clear=False):
        """Return the instance's log, or only the part written since clear()."""
        try:
            data = self.maillog_file.read_bytes()
        except FileNotFoundError:
            return ""
        if since_clear:
            data = data[self._maillog_offset:]
        return data.decode("utf-8", "replace")

    def queue_listing(self):
        """Return postqueue -p output: the messages Postfix has not delivered."""
        code, output = _run_on_tty([POSTQUEUE, "-c", str(self.config_dir), "-p"])
        return output if code == 0 else f"postqueue -p exited {code}: {output}"

    def _message_paths(self):
        paths = []
        for sub in ("new", "cur"):
            directory = self.maildir / sub
            if directory.is_dir():
                paths.extend(p for p in directory.iterdir() if p.is_file())
        # The name breaks ties because it starts with the delivery time.
        paths.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return paths

    def messages(self, wait_count=None, timeout=10):
        """Return the delivered messages as bytes, oldest first.

        With WAIT_COUNT, wait up to TIMEOUT seconds until at least that many
        have arrived, and raise AssertionError with the maillog if not.
        The Maildir stores lines with LF endings, as virtual(8) writes them.
        """
        deadline = time.monotonic() + timeout
        while True:
            paths = self._message_paths()
            if wait_count is None or len(paths) >= wait_count:
                return [p.read_bytes() for p in paths]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {wait_count} message(s) in {self.maildir} within "
                    f"{timeout}s, found {len(paths)}\n"
                    f"Postfix queue:\n{self.queue_listing()}\n"
                    f"Postfix maillog:\n{self.maillog(since_clear=True)}")
            time.sleep(0.05)

    def clear(self):
        """Delete the delivered messages and mark the current end of the log."""
        for path in self._message_paths():
            path.unlink()
        try:
            self._maillog_offset = self.maillog_file.stat().st_size
        except FileNotFoundError:
            self._maillog_offset = 0

    @staticmethod
    def split_message(message):
        """Split raw MESSAGE bytes into (header block, body) at the first empty line."""
        match = HEADER_END.search(message)
        if match is None:
            return message, b""
        return message[:match.start()], message[match.end():]

    @staticmethod
    def topmost_received(message):
        """Return the first Received: field of MESSAGE, unfolded to one line.

        virtual(8) puts Return-Path:, X-Original-To: and Delivered-To: above
        it, so the first Received: field, not the first line, is the one
        smtpd added.
        """
        header, _ = PostfixSmarthost.split_message(message)
        unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header)
        for line in unfolded.splitlines():
            if line.lower().startswith(b"received:"):
                return line
        raise AssertionError(f"message has no Received: header:\n{header!r}")

    @staticmethod
    def queue_id(message):
        """Return Postfix's queue id from the topmost Received: header of MESSAGE."""
        received = PostfixSmarthost.topmost_received(message)
        match = RECEIVED_QUEUE_ID.search(received)
        if match is None:
            raise AssertionError(f"topmost Received: header has no Postfix queue id: "
                                 f"{received!r}")
        return match.group(1).decode()


@pytest.fixture(scope="session")
def postfix_smarthost_instance():
    """Start one Postfix instance for the test session."""
    if os.geteuid() != 0:
        pytest.skip("Postfix's master must run as root")
    for tool in (POSTFIX, SASLPASSWD2, "/usr/bin/script", "/usr/bin/openssl"):
        if not os.access(tool, os.X_OK):
            pytest.skip(f"{tool} is missing; run scripts/install-deps")

    root = tempfile.mkdtemp(prefix="relayq-postfix-")
    server = PostfixSmarthost(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root)


@pytest.fixture
def postfix_smarthost(postfix_smarthost_instance):
    """The session's Postfix instance with an empty Maildir."""
    postfix_smarthost_instance.clear()
    return postfix_smarthost_instance


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach this test's part of the Postfix log to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    server = getattr(item, "funcargs", {}).get("postfix_smarthost")
    if server is not None:
        report.sections.append(("Postfix maillog", server.maillog(since_clear=True)))
