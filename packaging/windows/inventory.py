#!/usr/bin/python3
"""List what keeps each C file of relayq from compiling for Windows.

A normal cross build stops each file at its first missing header, which
hides everything after it. This script compiles every file of a configured
Windows build directory again with -fsyntax-only and a directory of stand-in
headers in front of the include path:

- the BSD socket headers include <winsock2.h> and <ws2tcpip.h>, as a
  compatibility header would;
- <sys/queue.h> and <sysexits.h> are copied from the build machine, because
  they are only macros and a port can ship its own;
- every other POSIX-only header is empty, so each function, type or macro
  that a file takes from it shows up as an error or an implicit declaration.

Usage: packaging/windows/inventory.py [BUILD_DIR]   (default: build-win)

Prints, for each file, the POSIX headers it includes that mingw-w64 lacks
and the diagnostics grouped by message, with their line numbers.
"""

import collections
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

SOCKET_HEADERS = ["arpa/inet.h", "netinet/in.h", "netinet/tcp.h", "netdb.h",
                  "sys/socket.h", "poll.h"]
COPIED_HEADERS = ["sys/queue.h", "sysexits.h"]
BUILD_MACHINE_INCLUDE_DIRS = ["/usr/include/x86_64-linux-gnu", "/usr/include"]
EMPTY_HEADERS = ["sys/un.h", "pwd.h", "grp.h", "sys/random.h", "sys/wait.h",
                 "syslog.h", "sys/inotify.h", "sys/uio.h", "termios.h",
                 "sys/mman.h", "sys/resource.h", "sys/select.h",
                 "sys/statvfs.h", "sys/ioctl.h", "sys/utsname.h",
                 "sys/epoll.h", "systemd/sd-daemon.h", "langinfo.h",
                 "fnmatch.h", "glob.h", "libgen.h", "err.h"]

# Diagnostics that are not about portability are left out.
PORTABILITY = re.compile(
    r"implicit declaration|undeclared|unknown type name|storage size|"
    r"incomplete type|undefined type|declared inside parameter list|"
    r"too many arguments to function|incompatible pointer type|"
    r"makes pointer from integer|comparison between pointer and integer|"
    r"conversion type character|expects argument of type|"
    r"too many arguments for format")
DIAGNOSTIC = re.compile(r"^(\S+?):(\d+):\d+: (error|warning): (.*)$")
FORMAT_MESSAGE = ("printf format checked as ms_printf: "
                  "%zu, %lld and friends are rejected")


def find_build_machine_header(name):
    for directory in BUILD_MACHINE_INCLUDE_DIRS:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    sys.exit("inventory.py: %s not found in %s" %
             (name, ", ".join(BUILD_MACHINE_INCLUDE_DIRS)))


def write_stub_headers(root):
    for name in SOCKET_HEADERS:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("#include <winsock2.h>\n#include <ws2tcpip.h>\n")
    for name in COPIED_HEADERS:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(find_build_machine_header(name), path)
    for name in EMPTY_HEADERS:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


def syntax_only_command(command, stub_dir):
    """Turn a compile_commands.json command into a -fsyntax-only run."""
    args = shlex.split(command)
    out = []
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg in ("-o", "-MQ", "-MF"):
            skip = True
            continue
        if arg in ("-MD", "-c"):
            continue
        out.append(arg)
    # Meson adds -fdiagnostics-color=always, so the override goes last.
    return ([args[0], "-I" + stub_dir, "-H", "-fsyntax-only",
             "-fmax-errors=0"] + out + ["-fdiagnostics-color=never"])


def normalize(message):
    message = re.sub(r"; did you mean .*", "", message)
    message = re.sub(r" \[-W[^\]]*\]$", "", message)
    if re.search(r"conversion type character|expects argument of type|"
                 r"too many arguments for format", message):
        return FORMAT_MESSAGE
    return message


def inspect(entry, stub_dir, repo_dir):
    command = syntax_only_command(entry["command"], stub_dir)
    result = subprocess.run(command, cwd=entry["directory"],
                            capture_output=True, text=True)
    headers = []
    found = collections.OrderedDict()
    for line in result.stderr.splitlines():
        # -H prints one line per header, its depth as leading dots.
        header = re.match(r"^\.+ (.*)$", line)
        if header is not None and header.group(1).startswith(stub_dir):
            name = os.path.relpath(header.group(1), stub_dir)
            if name not in headers:
                headers.append(name)
            continue
        match = DIAGNOSTIC.match(line)
        if match is None or not PORTABILITY.search(match.group(4)):
            continue
        path = os.path.normpath(os.path.join(entry["directory"],
                                             match.group(1)))
        key = (os.path.relpath(path, repo_dir), normalize(match.group(4)))
        found.setdefault(key, [])
        if match.group(2) not in found[key]:
            found[key].append(match.group(2))
    return headers, found


def main():
    repo_dir = os.path.realpath(os.path.join(os.path.dirname(__file__),
                                             "..", ".."))
    build_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        repo_dir, "build-win")
    commands = os.path.join(build_dir, "compile_commands.json")
    if not os.path.exists(commands):
        sys.exit("inventory.py: %s not found; run packaging/windows/build.sh "
                 "first" % commands)
    with open(commands) as f:
        entries = json.load(f)

    stub_dir = tempfile.mkdtemp(prefix="relayq-win-stubs.")
    try:
        write_stub_headers(stub_dir)
        for entry in entries:
            source = os.path.relpath(
                os.path.normpath(os.path.join(entry["directory"],
                                              entry["file"])), repo_dir)
            headers, found = inspect(entry, stub_dir, repo_dir)
            if not headers and not found:
                continue
            print(source)
            if headers:
                print("  POSIX headers: " + ", ".join(headers))
            for (path, message), lines in found.items():
                where = path if path != source else "line"
                print("  %s %s: %s" % (where, ",".join(lines), message))
    finally:
        shutil.rmtree(stub_dir)


if __name__ == "__main__":
    main()
