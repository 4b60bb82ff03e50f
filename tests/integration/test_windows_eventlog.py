"""
Logging of relayqd.exe as a Windows service, under Wine: the Event Log
source that "relayqd install" registers, the message table in
relayqd.exe, the log file in C:\\ProgramData\\relayq\\log, and the events
the service reports.

Wine 8 keeps no Event Log: its ReportEventW() is a stub that prints the
event type and id on the "fixme:advapi" debug channel and each string on
"trace:eventlog". The event test reads those lines from the standard
error of Wine's services, which is the standard error of the first Wine
process of a session. Rotation of the log file is covered by the unit
test test_log_file_win32.

Skipped like test_windows_wine.py unless RELAYQ_WIN_BUILD names a
Windows build directory.
"""

import re
import shutil
import subprocess
import time

import pytest
import yaml

from test_windows_wine import (  # noqa: F401 (pytestmark and fixtures)
    WINE, end_wine_session, message_bytes, programdata_dir, pytestmark, service_log_path,
    service_log_since, service_log_size, stop_service, swaks, wait_port, wait_service_state,
    win_binary, win_path, windows_smarthost_config, wine_env, wine_relayq, wine_run)

EVENTLOG_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\relayq"
OBJDUMP = shutil.which("x86_64-w64-mingw32-objdump")

# Event types of ReportEventW() and the message ids of relayqd_messages.mc.
EVENT_ERROR = (0x0001, 0xc0000001)
EVENT_INFO = (0x0004, 0x40000003)
EVENT_WARNING = (0x0002, 0x80000002)


def relayqd_exe() -> str:
    return str(win_binary("daemon/relayqd.exe"))


def skip_if_service_exists():
    if wine_run("sc", "query", "relayq").returncode == 0:
        pytest.skip("a service named relayq is already installed in this Wine prefix")


def reg_query_eventlog() -> subprocess.CompletedProcess:
    return wine_run("reg", "query", EVENTLOG_KEY)


def test_install_registers_eventlog_source(wine_relayq, fake_smarthost):
    daemon = wine_relayq(windows_smarthost_config(fake_smarthost()))
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    skip_if_service_exists()
    assert reg_query_eventlog().returncode != 0, "the Event Log key exists before install"

    installed = wine_run(relayqd_exe(), "install", "--config", win_path(daemon.config_path))
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "Registered the Event Log source relayq" in installed.stdout

        query = reg_query_eventlog()
        assert query.returncode == 0, query.stdout + query.stderr
        values = {m.group(1): (m.group(2), m.group(3).strip()) for m in re.finditer(
            r"^\s+(\S+)\s+(REG_\w+)\s+(.*)$", query.stdout, re.MULTILINE)}
        exe = win_path(win_binary("daemon/relayqd.exe")).replace("/", "\\")
        assert values.get("EventMessageFile") == ("REG_EXPAND_SZ", exe), query.stdout
        assert values.get("TypesSupported") == ("REG_DWORD", "0x7"), query.stdout
    finally:
        removed = wine_run(relayqd_exe(), "uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    query = reg_query_eventlog()
    assert query.returncode != 0, f"the Event Log key is still there:\n{query.stdout}"


@pytest.mark.skipif(OBJDUMP is None, reason="x86_64-w64-mingw32-objdump is not installed")
def test_message_table_resource_in_exe():
    dump = subprocess.run([OBJDUMP, "-p", relayqd_exe()], capture_output=True,
                          text=True, check=True).stdout
    assert "The .rsrc Resource Directory section:" in dump
    resources = dump.split("The .rsrc Resource Directory section:", 1)[1]
    # The type table's first entry: RT_MESSAGETABLE is type 11, and
    # windmc writes the table as resource 1 in language 0x409 (US English).
    entries = re.findall(r"Entry: ID: (0x[0-9a-f]+)", resources)
    assert entries[:3] == ["0x00000b", "0x000001", "0x000409"], resources[:800]


def wait_for_wineserver_exit(timeout=60):
    """Wait until no Wine process runs in the prefix, so the next one starts Wine's services."""
    wineserver = shutil.which("wineserver")
    if wineserver is None:
        pytest.skip("wineserver is not installed")
    try:
        subprocess.run([wineserver, "-w"], env=wine_env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("other Wine processes keep running in this prefix")


@pytest.fixture(autouse=True)
def programdata_restored():
    """relayqd install and the service create C:\\ProgramData\\relayq: remove it if they did."""
    existed = programdata_dir().exists()
    yield
    if not existed:
        shutil.rmtree(programdata_dir(), ignore_errors=True)


@pytest.fixture
def traced_wine_session(tmp_path):
    """
    A Wine process that lives for the whole test and starts Wine's
    services, so that they and the relayq service write their debug
    output, with the Event Log channels on, to the file it yields.
    """
    wait_for_wineserver_exit()
    existed = programdata_dir().exists()
    trace = tmp_path / "wine-services.err"
    env = wine_env()
    env["WINEDEBUG"] = "-all,fixme+advapi,+eventlog"
    with open(trace, "wb") as err:
        keeper = subprocess.Popen([WINE, "cmd.exe"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=err, env=env)
    # Another Wine command started before the services are up would
    # start them itself, with its own standard error.
    deadline = time.monotonic() + 60
    while "starting Event Log Service" not in trace.read_text(errors="replace"):
        if time.monotonic() > deadline:
            keeper.kill()
            keeper.wait()
            pytest.fail(f"Wine did not start its Event Log service within 60 s:\n"
                        f"{trace.read_text(errors='replace')}")
        time.sleep(0.2)
    yield trace
    end_wine_session(keeper, existed)


def reported_events(trace_text: str) -> list:
    """(type, id, text) of each ReportEventW() call in Wine's debug output."""
    events = []
    pending = None
    for line in trace_text.splitlines():
        call = re.search(r"fixme:advapi:ReportEventW \([0-9A-Fa-f]+,0x([0-9a-f]+),"
                         r"0x[0-9a-f]+,0x([0-9a-f]+),", line)
        if call:
            pending = (int(call.group(1), 16), int(call.group(2), 16))
            continue
        # Wine prints the string as an error, warning or trace by the event type.
        text = re.search(r'(?:err|warn|trace):eventlog:ReportEventW L"(.*)"$', line)
        if text and pending is not None:
            events.append((*pending, text.group(1)))
            pending = None
    return events


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_service_logs_to_programdata_and_eventlog(wine_relayq, traced_wine_session,
                                                  fake_smarthost, tmp_path):
    srv = fake_smarthost()
    # Windows ignores "user" with a warning, which makes a warning event.
    daemon = wine_relayq(windows_smarthost_config(srv), user="nobody")
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    skip_if_service_exists()
    log_offset = service_log_size()

    installed = wine_run(relayqd_exe(), "install", "--config", win_path(daemon.config_path))
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        started = wine_run("net", "start", "relayq")
        assert started.returncode == 0, started.stdout + started.stderr
        wait_port(daemon.port, listening=True)
        data_file = tmp_path / "eventlog.eml"
        data_file.write_bytes(message_bytes("wine eventlog", b"logged by the service\r\n"))
        result = swaks(daemon.port, data_file)
        assert result.returncode == 0, result.stdout + result.stderr
        srv.wait_for_messages(1, timeout=60)
        stop_service()
    finally:
        removed = wine_run(relayqd_exe(), "uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr

    # The file gets every level, with the usual line prefix.
    log = service_log_since(log_offset)
    assert re.search(r"^\S+Z relayqd\[\d+\]: info: event=started ", log, re.MULTILINE), log
    assert "warning: event=user_unchanged user=nobody" in log
    assert "debug: event=control_listening" in log
    assert "event=stopped" in log
    assert not (daemon.dir / "relayqd.log").exists()

    # The Event Log gets error, warning and info lines with their own type.
    events = reported_events(traced_wine_session.read_text(errors="replace"))
    texts = {text.split(" ", 1)[0]: (event_type, event_id)
             for event_type, event_id, text in events}
    assert texts.get("event=started") == EVENT_INFO, events
    assert texts.get("event=user_unchanged") == EVENT_WARNING, events
    assert texts.get("event=stopped") == EVENT_INFO, events
    assert "event=control_listening" not in texts, "debug lines must stay out of the Event Log"


def test_service_config_error_logged(wine_relayq, traced_wine_session, fake_smarthost):
    daemon = wine_relayq(windows_smarthost_config(fake_smarthost()))
    daemon.config["retry"]["initial"] = "soon"
    daemon.config_path.write_text(yaml.safe_dump(daemon.config, sort_keys=False))
    skip_if_service_exists()
    log_offset = service_log_size()

    installed = wine_run(relayqd_exe(), "install", "--config", win_path(daemon.config_path))
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # Wine's net start reports success once the service has been
        # started, even when it stops again at once.
        wine_run("net", "start", "relayq")
        wait_service_state("STOPPED")
        query = wine_run("sc", "query", "relayq").stdout
    finally:
        removed = wine_run(relayqd_exe(), "uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr

    # The service logs the config error, which main() prints to a stderr
    # that a service lacks, to the file and as an error event.
    log = service_log_since(log_offset)
    assert re.search(r"^\S+Z relayqd\[\d+\]: error: event=config_invalid error=\".*soon",
                     log, re.MULTILINE), log
    assert "event=started" not in log
    events = reported_events(traced_wine_session.read_text(errors="replace"))
    errors = [text for event_type, event_id, text in events if
              (event_type, event_id) == EVENT_ERROR]
    assert any(text.startswith("event=config_invalid") for text in errors), events
    # EX_CONFIG (78) as the service-specific exit code, where sc shows it.
    if "SERVICE_EXIT_CODE" in query:
        assert re.search(r"SERVICE_EXIT_CODE\s*:\s*78\b", query), query
