"""
Windows DACLs of relayqd.exe's queue and password file, under Wine.
relayqd.exe rejects a password file that Everyone can read. It creates
its queue directory and database for SYSTEM and Administrators only, and
leaves a queue directory that the administrator created as it is.

Wine 8 keeps no security descriptors. It maps a DACL to the Unix mode
(Everyone to the "other" bits) and builds a DACL from the mode when
asked, so these tests set and check modes on the Linux side.

Skipped unless RELAYQ_WIN_BUILD names a Windows build directory, like
test_windows_wine.py, whose fixtures this file uses.
"""
import stat
from pathlib import Path

import pytest
import yaml

from test_windows_wine import (PASSWORD, USERNAME, run_wine, skip_reason,
                               win_binary, win_path, wine_relayq)

pytestmark = pytest.mark.skipif(skip_reason() is not None,
                                reason=skip_reason() or "")

# pytest takes fixtures from the names of a test module.
__all__ = ["wine_relayq"]


def other_bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) & stat.S_IRWXO


def smarthost_with_password_file(srv) -> tuple[dict, Path]:
    """The smart host section with Windows paths, and the password file's Linux path."""
    config = srv.smarthost_config()
    secret = Path(config["password_file"])
    config["password_file"] = win_path(secret)
    config["ca_file"] = win_path(config["ca_file"])
    return config, secret


def test_wine_readable_password_file_rejected(wine_relayq, fake_smarthost):
    srv = fake_smarthost(tls="starttls", auth=(USERNAME, PASSWORD))
    config, secret = smarthost_with_password_file(srv)
    daemon = wine_relayq(config)
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    secret.chmod(0o644)

    result = run_wine(str(win_binary("daemon/relayqd.exe")), "-f", "-c",
                      win_path(daemon.config_path), timeout=120)
    output = result.stderr.decode(errors="replace")
    assert result.returncode == 78, output
    assert "smarthost.password_file" in output
    assert "Everyone (S-1-1-0)" in output
    assert "icacls" in output
    assert PASSWORD not in output

    # Only the owner can read it now, and relayqd.exe starts.
    secret.chmod(0o600)
    daemon.start()
    assert "password_file" not in daemon.log_text()


def test_wine_queue_created_private(wine_relayq, fake_smarthost):
    srv = fake_smarthost()
    daemon = wine_relayq(srv.smarthost_config())
    spool = daemon.dir / "spool"
    daemon.config["queue"] = {"path": win_path(spool / "queue.db")}
    daemon.start()

    assert spool.is_dir()
    assert other_bits(spool) == 0, oct(spool.stat().st_mode)
    assert other_bits(spool / "queue.db") == 0, oct((spool / "queue.db").stat().st_mode)
    assert "event=queue_dir_readable" not in daemon.log_text()
    # relayq.exe runs as the same account, the owner, and still reads the queue.
    assert daemon.cli_json("list")["messages"] == []


def test_wine_existing_queue_dir_keeps_acl(wine_relayq, fake_smarthost):
    srv = fake_smarthost()
    daemon = wine_relayq(srv.smarthost_config())
    daemon.dir.chmod(0o755)
    daemon.start()

    assert stat.S_IMODE(daemon.dir.stat().st_mode) == 0o755
    assert other_bits(daemon.dir / "queue.db") == 0
    log = daemon.log_text()
    assert "event=queue_dir_readable" in log
    assert 'readers="Everyone (S-1-1-0)"' in log
