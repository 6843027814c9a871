"""The ``fewshot`` command: run a stage in a process forked from the workflow's warm server, or here.

A job's fixed cost was mostly importing torch and the package (2-4 s a job). During a local run the
workflow starts one server (:mod:`fewshot_core.server`) that has imported them once, and sets
``FEWSHOT_SERVER`` to its socket. This launcher, which imports nothing heavy, hands the server its
arguments, working folder, environment and its own standard input, output and error; the server forks
a child that runs the command exactly as :func:`fewshot_core.cli.main` would here, writing to this
process's files (the job's log), and reports the child's exit status, which this process exits with.
Signals sent to this process (Snakemake stopping a job) go to the child. The job reads and writes
only its declared files, as before. Without a server, or when it cannot be reached, the command runs
in this process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

SERVER_VARIABLE = "FEWSHOT_SERVER"


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``sock``; ConnectionError when it closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def run_remotely(path: str, argv: list[str]) -> int | None:
    """The command's exit status as run by the server at ``path``; None when no server answers (the
    command then runs here)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        return None
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    fds = [sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno()]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        sock.sendmsg([struct.pack("!I", len(request)), request],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
        (pid,) = struct.unpack("!i", recv_exactly(sock, 4))
    except OSError:
        return None  # nothing ran yet: run here instead

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        (status,) = struct.unpack("!i", recv_exactly(sock, 4))
    except (OSError, ConnectionError):
        print("fewshot: error: the workflow's server stopped before the job ended; rerun the workflow",
              file=sys.stderr)
        return 1
    return status


def main() -> None:
    path = os.environ.get(SERVER_VARIABLE)
    if path:
        status = run_remotely(path, sys.argv[1:])
        if status is not None:
            raise SystemExit(status)
    from fewshot_core.cli import main as run_here

    run_here()


if __name__ == "__main__":
    main()
