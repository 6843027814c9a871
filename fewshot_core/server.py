"""The workflow's warm server: one process that imports torch and the package once and forks every local job.

Started by the workflow when a local run begins (``onstart``) and stopped when it ends; a job's
``fewshot`` command (:mod:`fewshot_core.launch`) hands it its arguments, working folder, environment and
standard streams, and gets back the exit status of a child forked for it. The child runs
:func:`fewshot_core.cli.main` exactly as a fresh process would: it changes to the job's folder, takes
the job's environment (``OMP_NUM_THREADS`` sets its torch threads), writes to the job's log, and every
stage seeds its own random generators, so its outputs are those of a fresh process. The server never
runs torch itself (no thread pool, no GPU context exists when it forks). A child whose launcher dies
(Snakemake killed the job) is killed too; the server exits when the Snakemake process that started it
does. Single-threaded: a ``selectors`` loop, so that forking is safe.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewshot_core.launch import recv_exactly
from fewshot_core.outputs import digest_imported_modules

#: What every job imports: loaded once here before the server listens, shared by the forked children.
PRELOAD = ("torch", "numpy", "pandas", "pyarrow.parquet", "fewshot_core.cli", "fewshot_core.stages",
           "fewshot_core.train", "fewshot_core.metrics", "fewshot_core.space", "fewshot_core.data",
           "fewshot_core.splitting", "fewshot_core.tree", "fewshot_core.labels")
#: What some jobs import (an optimiser's first step loads torch._dynamo, ntk torch.func, a ranking
#: scipy.stats, a figure matplotlib): loaded when a second job arrives, so that a run of one job (a
#: rerun after a change, a fault) does not pay for them; 2.6 s of its 4.8 s of imports on 2 cores.
PRELOAD_LATER = ("torch._dynamo", "torch.func", "scipy.stats", "fewshot_core.ranking", "fewshot_core.report")
MAX_FDS = 3


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The launcher's request and the file descriptors it passed (stdin, stdout, stderr)."""
    size = struct.calcsize(f"{MAX_FDS}i")
    head, ancdata, _, _ = conn.recvmsg(4, socket.CMSG_SPACE(size))
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4]))
    (length,) = struct.unpack("!I", head)
    return json.loads(recv_exactly(conn, length)), fds


def _child(request: dict, fds: list[int], server: int) -> None:
    """Run the job's command in this forked process, as a fresh ``fewshot`` process would, and exit."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # not the server's handler, which stops the other jobs
        _end_with_parent(server)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        sys.argv = ["fewshot", *request["argv"]]
        from fewshot_core.cli import main

        main(request["argv"])
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
    except BaseException:  # what a fresh process would print before exiting 1
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _end_with_parent(server: int) -> None:
    """Have the kernel stop this child when the server dies, however it dies (``kill -9`` included), so
    that no job goes on writing after its run ended (Linux's PR_SET_PDEATHSIG; elsewhere a no-op); a
    server that died before this took effect ends the child at once."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        os._exit(1)


def _launcher_gone(conn: socket.socket) -> bool:
    """True when a job's launcher closed its connection, or died before reading what the server sent it."""
    try:
        return not conn.recv(1)
    except OSError:  # ECONNRESET: it was killed with the pid unread
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(path: str, owner: int) -> None:
    """Accept launchers on the socket ``path`` until the process ``owner`` is gone."""
    for name in PRELOAD:
        importlib.import_module(name)
    digest_imported_modules()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.replace(path + ".tmp", path)  # the socket appears only once it is bound and ready
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}

    def stop(_signum=None, _frame=None):
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    later, served = list(PRELOAD_LATER), 0
    try:
        while _alive(owner):
            later, served = _serve_once(listener, selector, children, later, served)
    finally:  # whatever ends the loop, no job is left running without its server, and no socket behind
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(OSError):  # Snakemake killed outright (kill -9) removes nothing itself
            os.unlink(path)
            os.rmdir(os.path.dirname(path))


def _serve_once(listener: socket.socket, selector: selectors.BaseSelector, children: dict[int, socket.socket],
                later: list[str], served: int) -> tuple[list[str], int]:
    """Accept what arrived, fork a child per request, and report the children that ended. A request the
    server cannot fork for (a full process table, no memory) is closed unanswered: its launcher then runs
    the job in its own process, and the server goes on."""
    for key, _ in selector.select(timeout=0.1):
        if key.fileobj is listener:
            conn, _ = listener.accept()
            try:
                request, fds = _recv_request(conn)
            except (OSError, ValueError, ConnectionError):
                conn.close()
                continue
            if served and later:  # a second job: the run has more than one
                for name in later:
                    with contextlib.suppress(ImportError):  # the job imports it itself, as a fresh process would
                        importlib.import_module(name)
                digest_imported_modules()
                later = []
            served += 1
            sys.stdout.flush()
            sys.stderr.flush()
            server = os.getpid()
            try:
                pid = os.fork()
            except OSError as err:
                print(f"fewshot server: cannot start a job here ({err.strerror}); it runs in its own process",
                      file=sys.stderr, flush=True)
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            if pid == 0:
                listener.close()
                for other in children.values():
                    other.close()
                conn.close()
                _child(request, fds, server)
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(struct.pack("!i", pid))
            children[pid] = conn
            selector.register(conn, selectors.EVENT_READ, pid)
        elif _launcher_gone(key.fileobj):  # Snakemake stopped the job
            selector.unregister(key.fileobj)
            with contextlib.suppress(ProcessLookupError):
                os.kill(key.data, signal.SIGKILL)
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError, KeyError, ValueError):
            conn.sendall(struct.pack("!i", code if code >= 0 else 128 - code))
            selector.unregister(conn)
        conn.close()
    return later, served



class Server:
    """The server as the workflow sees it: started for a local run, stopped at its end."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fewshot-"))
        self.path = str(self.folder / "server.sock")
        self.process = subprocess.Popen([sys.executable, "-m", "fewshot_core.server", self.path, str(os.getpid())])

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once the server listens (it has imported everything); False if it died or took too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(self.path).exists():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)  # the server removes it itself when it ends in time


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
