"""The warm server: a job run through it writes what the same job writes in a fresh process, exits as it
would, and is stopped with its launcher."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fewshot_core import artifacts
from fewshot_core.launch import SERVER_VARIABLE
from fewshot_core.server import Server
from fewshot_core.settings import canonical_json
from tests.conftest import ENV

#: Every test here starts jobs in processes of their own (through the server or without it).
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def server():
    s = Server()
    assert s.wait_ready(), "the server did not start"
    yield s
    s.stop()


def fewshot(*args, server=None, cwd=None, **kwargs):
    env = {k: v for k, v in ENV.items() if k != SERVER_VARIABLE}
    if server is not None:
        env[SERVER_VARIABLE] = server.path
    return subprocess.run([sys.executable, "-m", "fewshot_core.launch", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, **kwargs)


def test_a_job_through_the_server_writes_what_a_fresh_process_writes(server, tmp_path, defaults):
    import pandas as pd

    spec = canonical_json(defaults.holdout_spec(0))
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    assert fewshot("make-holdout", "--spec", spec, "--out", "h.json", cwd=here).returncode == 0
    proc = fewshot("make-holdout", "--spec", spec, "--out", "h.json", server=server, cwd=there)
    assert proc.returncode == 0 and "training and" in proc.stdout  # its output reaches the launcher's stdout
    assert (here / "h.json").read_bytes() == (there / "h.json").read_bytes()  # relative paths: the job's folder
    root = canonical_json(defaults.root_spec(0))
    for work in (here, there):
        run = fewshot("train-root", "--spec", root, "--holdout", "h.json", "--checkpoints", "ck", "--out", "root.pt",
                      "--device", "cpu", server=server if work is there else None, cwd=work)
        assert run.returncode == 0, run.stderr
    a = artifacts.load_weights(here / "root.pt", {"kind": "root"})["nodes"]["r"]
    b = artifacts.load_weights(there / "root.pt", {"kind": "root"})["nodes"]["r"]
    assert all(pd.Series(a[k].flatten().tolist()).equals(pd.Series(b[k].flatten().tolist())) for k in a)


def test_a_users_mistake_through_the_server_is_one_line_and_its_status(server, tmp_path):
    proc = fewshot("make-holdout", "--spec", "{}", "--out", "h.json", server=server, cwd=tmp_path)
    assert proc.returncode == 2 and "--spec is not a valid HoldoutSpec" in proc.stderr
    assert "Traceback" not in proc.stderr


def first_epoch(launcher: subprocess.Popen) -> None:
    """Wait until the job behind ``launcher`` has trained an epoch: it is mid-training."""
    for line in launcher.stdout:
        if " epoch 1/" in line:
            return
    raise AssertionError("the job ended before its first epoch")


def test_stopping_the_launcher_stops_the_job(server, tmp_path, defaults):
    import dataclasses

    long = dataclasses.replace(defaults.root_spec(0), warmup=dataclasses.replace(defaults.warmup, epochs=500))
    assert fewshot("make-holdout", "--spec", canonical_json(defaults.holdout_spec(0)), "--out", "h.json",
                   server=server, cwd=tmp_path).returncode == 0
    env = {**ENV, SERVER_VARIABLE: server.path}
    launcher = subprocess.Popen([sys.executable, "-m", "fewshot_core.launch", "train-root", "--spec",
                                 canonical_json(long), "--holdout", "h.json", "--checkpoints", "ck", "--out", "root.pt",
                                 "--device", "cpu"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    first_epoch(launcher)
    launcher.send_signal(signal.SIGTERM)  # as Snakemake stops a job
    out, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGTERM and not (tmp_path / "root.pt").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    launcher = subprocess.Popen([sys.executable, "-m", "fewshot_core.launch", "train-root", "--spec",
                                 canonical_json(long), "--holdout", "h.json", "--checkpoints", "ck2", "--out",
                                 "root2.pt", "--device", "cpu"], cwd=tmp_path, env=env)
    time.sleep(2)
    launcher.kill()  # SIGKILL: the launcher cannot pass it on, the server sees it gone and kills the job
    launcher.wait()
    time.sleep(1)
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    assert children == [], f"the job outlived its launcher: {children}"


def test_without_a_server_the_command_runs_in_its_own_process(tmp_path, defaults):
    env = {**ENV, SERVER_VARIABLE: str(tmp_path / "no-such.sock")}
    proc = subprocess.run([sys.executable, "-m", "fewshot_core.launch", "make-holdout", "--spec",
                           canonical_json(defaults.holdout_spec(0)), "--out", "h.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "h.json").exists()


def test_the_server_digests_the_code_it_imported_once_for_every_job():
    """Digests of what the server imported are cached before it forks, and only those: a job records the
    code it runs without parsing the package, and a module the server never loaded is read by the job."""
    code = ("import sys, fewshot_core.stages, fewshot_core.splitting\n"
            "from fewshot_core import outputs\n"
            "outputs.digest_imported_modules()\n"
            "named = {m for o in outputs.OUTPUTS.values() for m in outputs.dependencies.stage_code(o.rule)}\n"
            "loaded = {m for m in named if 'fewshot_core.' + m in sys.modules}\n"
            "from fewshot_core import digests\n"
            "print(digests.of_code_cached.cache_info().currsize, len(loaded), len(named))")
    cached, loaded, named = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                    env=ENV, check=True).stdout.split())
    assert cached == loaded and 0 < loaded < named


def test_a_failed_fork_runs_that_job_in_its_own_process_and_a_killed_server_takes_its_jobs(tmp_path, defaults):
    """A full process table makes the server's fork fail: that job runs in its launcher's process and the
    server serves the next; and a server killed outright (``kill -9``) leaves no job running."""
    import contextlib
    import dataclasses
    import os

    code = ("import os, sys\n"
            "from fewshot_core import server\n"
            "real, calls = os.fork, []\n"
            "def fork():\n"
            "    calls.append(1)\n"
            "    if len(calls) == 1:\n"
            "        raise BlockingIOError(11, 'Resource temporarily unavailable')\n"
            "    return real()\n"
            "os.fork = fork\n"
            "server.serve(sys.argv[1], int(sys.argv[2]))\n")
    sock = tmp_path / "server.sock"
    proc = subprocess.Popen([sys.executable, "-c", code, str(sock), str(os.getpid())], stderr=subprocess.PIPE,
                            text=True, env=ENV)
    deadline = time.time() + 120
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.05)
    env = {**ENV, SERVER_VARIABLE: str(sock)}
    holdout = canonical_json(defaults.holdout_spec(0))
    for name in ("a.json", "b.json"):
        run = subprocess.run([sys.executable, "-m", "fewshot_core.launch", "make-holdout", "--spec", holdout, "--out",
                              name], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0 and (tmp_path / name).exists(), run.stderr
    long = dataclasses.replace(defaults.root_spec(0), warmup=dataclasses.replace(defaults.warmup, epochs=500))
    launcher = subprocess.Popen([sys.executable, "-m", "fewshot_core.launch", "train-root", "--spec",
                                 canonical_json(long), "--holdout", "a.json", "--checkpoints", "ck", "--out",
                                 "root.pt", "--device", "cpu"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    first_epoch(launcher)
    jobs = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(jobs) == 1
    proc.kill()
    proc.wait()
    launcher.wait(timeout=30)
    assert launcher.returncode != 0 and not (tmp_path / "root.pt").exists()
    def running(pid: str) -> bool:
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read().lower()
        return False

    while running(jobs[0]) and time.time() < deadline:
        time.sleep(0.1)
    assert not running(jobs[0]), "the job outlived its server"
    assert "cannot start a job here (Resource temporarily unavailable)" in proc.stderr.read()


def test_a_launcher_that_died_unread_counts_as_gone_not_as_the_servers_end():
    """A launcher killed before it read its job's pid resets the connection: the server's read of it raises,
    which must stop that job alone, not end the server (and with it every other job)."""
    import socket

    from fewshot_core.server import _launcher_gone

    class Reset:
        def recv(self, _n):
            raise ConnectionResetError(104, "Connection reset by peer")

    a, b = socket.socketpair()
    b.close()
    assert _launcher_gone(Reset()) and _launcher_gone(a)
    c, d = socket.socketpair()
    d.sendall(b"x")
    assert not _launcher_gone(c)
    for s in (a, c, d):
        s.close()


def test_a_server_whose_run_was_killed_outright_ends_and_leaves_no_socket_folder(tmp_path):
    """Snakemake killed with SIGKILL cannot stop its server: the server sees its owner gone, ends, and removes
    its socket and the folder it was made in."""
    code = ("import sys, time\n"
            "from fewshot_core.server import Server\n"
            "s = Server()\n"
            "assert s.wait_ready()\n"
            "print(s.folder, s.process.pid, flush=True)\n"
            "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    folder, pid = owner.stdout.readline().split()
    owner.kill()
    owner.wait()
    deadline = time.time() + 60
    while Path(folder).exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(folder).exists()

    def running() -> bool:
        status = Path(f"/proc/{pid}/status")
        return status.exists() and "zombie" not in status.read_text().lower()

    while running() and time.time() < deadline:
        time.sleep(0.1)
    assert not running(), "the server outlived its run"
