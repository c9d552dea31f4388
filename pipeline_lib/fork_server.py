"""A warm ML-environment process that forks one child per step, so a step's imports are paid once.

Each fresh `python -m pipeline_lib.cli <step>` spends 5-9 s importing TensorFlow, TFDV, TFT, TFMA
and Beam (docs/benchmarks.md). The server (`python -m pipeline_lib.fork_server`, ML env) imports
them once, runs nothing TF-side itself (no op, no session, no Beam pipeline: forking after that is
unsafe), and for each request forks a child that runs the CLI exactly as `python -m` would, with
the client's argv, environment and working directory, its stdout/stderr on a pipe the client
passed over the socket. A crashing or leaking step dies alone; the server stays. The server loop
is single-threaded (forking a multi-threaded process is what breaks), so concurrent requests are
safe. The child is killed when its client goes away (a killed Airflow task).

The client side (`ForkedStep`, `connect`) is stdlib only: the Airflow environment uses it. One
server per ML environment, on a Unix socket named after the environment's stamp (interpreter,
venv, installed packages): when the environment changes, the next step starts a new server and
the old one exits; an idle server exits after IDLE_SECONDS. `make demo` and `make airflow` start it
in the background (`start`); a starting server holds the start lock until its socket is up, so a
step that connects meanwhile waits for it instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# what the steps import at module level; pipeline_lib itself is imported fresh in each child
STACK = ("tensorflow", "tf_keras", "apache_beam", "tensorflow_data_validation", "tensorflow_transform",
         "tensorflow_transform.beam", "tensorflow_model_analysis", "tfx_bsl.public.tfxio",
         "tfx_bsl.coders.example_coder")
IDLE_SECONDS = 1800  # an unused server gives its memory back
CHECK_SECONDS = 2.0
START_TIMEOUT_SECONDS = 300  # the imports take 10-20 s, more on a loaded machine
_MESSAGE = 1 << 20


class Unavailable(Exception):
    """No server could be reached or started; the launcher runs the step as a plain process."""


def environment_stamp(python: Path) -> str:
    """Changes when the ML environment does: its interpreter, its venv (`.synced` is touched by
    `make envs`), the installed packages (site-packages' entries)."""
    venv = python.parent.parent
    parts = [str(python), str(python.resolve())]
    for path in (python.resolve(), venv / "pyvenv.cfg", venv / ".synced", *sorted(venv.glob("lib/python*/site-packages"))):
        if path.exists():
            st = path.stat()
            parts.append(f"{path} {st.st_ino} {st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def socket_path(runtime_dir: Path, python: Path) -> Path:
    return runtime_dir / f"ml-{environment_stamp(python)}.sock"


# ------------------------------------------------------------------------------------ client side

def _connect_once(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None


def connect(python: Path, runtime_dir: Path, env: dict[str, str]) -> socket.socket:
    """A connection to this environment's server. When none answers: waits for the one starting
    (it holds the start lock until its socket is in place), else starts one."""
    try:
        runtime_dir.mkdir(parents=True, exist_ok=True)
        path = socket_path(runtime_dir, python)
        sock = _connect_once(path)
        if sock:
            return sock
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        with open(path.with_suffix(".lock"), "w") as lock:
            while not _try_lock(lock):
                if time.monotonic() > deadline:
                    raise Unavailable(f"the fork server did not start in {START_TIMEOUT_SECONDS} s")
                time.sleep(0.2)
            sock = _connect_once(path)
            if sock:
                return sock
            server = _spawn(python, path, env, lock)
        while time.monotonic() < deadline:
            sock = _connect_once(path)
            if sock:
                return sock
            if server.poll() is not None:
                raise Unavailable(f"the fork server exited with {server.returncode} (log: {path.with_suffix('.log')})")
            time.sleep(0.2)
        server.kill()
        raise Unavailable(f"the fork server did not start in {START_TIMEOUT_SECONDS} s")
    except OSError as e:  # unwritable runtime dir, a socket path too long, ...
        raise Unavailable(f"{type(e).__name__}: {e}") from None


def start(python: Path, runtime_dir: Path, env: dict[str, str]) -> bool:
    """Starts this environment's server in the background, unless one is there or starting; does
    not wait for it. Returns whether it started one."""
    try:
        runtime_dir.mkdir(parents=True, exist_ok=True)
        path = socket_path(runtime_dir, python)
        if path.exists():
            return False
        with open(path.with_suffix(".lock"), "w") as lock:
            if not _try_lock(lock) or path.exists():
                return False
            _spawn(python, path, env, lock)
            return True
    except OSError as e:
        raise Unavailable(f"{type(e).__name__}: {e}") from None


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _spawn(python: Path, path: Path, env: dict[str, str], lock) -> subprocess.Popen:
    """The server process. It inherits the held start `lock` and lets it go once its socket is in
    place (or when it dies), so that clients meanwhile wait for it rather than start another."""
    # a temp folder of its own: a library that caches the temp folder at import would otherwise
    # send every child's files to the system's
    tmp = path.with_suffix(".tmp")
    tmp.mkdir(exist_ok=True)
    with open(path.with_suffix(".log"), "ab") as log:
        return subprocess.Popen([str(python), "-m", "pipeline_lib.fork_server", "--socket", str(path),
                                 "--python", str(python), "--lock-fd", str(lock.fileno())],
                                env={**env, "TMPDIR": str(tmp)}, pass_fds=(lock.fileno(),),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class ForkedStep:
    """A step forked by the server, used like subprocess.Popen: `stdout` (its stdout and stderr),
    `pid`, `wait()`, `kill()`, `returncode`."""

    def __init__(self, sock: socket.socket, argv: list[str], env: dict[str, str], cwd: str):
        read_end, write_end = os.pipe()
        self.sock, self.returncode = sock, None
        self.stdout = open(read_end, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by close()
        try:
            socket.send_fds(sock, [json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()], [write_end])
            reply = self._receive()
        except OSError as e:  # a server that just retired; it kills a child whose client hung up
            reply = {"error": str(e)}
        finally:
            os.close(write_end)
        if "pid" not in reply:
            self.close()
            raise Unavailable(f"the fork server refused the step: {reply}")
        self.pid = reply["pid"]

    def _receive(self) -> dict:
        message = self.sock.recv(_MESSAGE)
        return json.loads(message) if message else {}

    def wait(self) -> int:
        """The step's exit status, as Popen gives it (-N: killed by signal N); call once stdout is read."""
        if self.returncode is None:
            reply = self._receive()
            if "exit" not in reply:  # the server died: its status is lost, make sure it is gone
                self.kill()
            self.returncode = reply.get("exit", -signal.SIGKILL)
            self.close()
        return self.returncode

    def kill(self):
        """The step and the processes it started (its process group); stdout then ends."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self):
        self.sock.close()
        self.stdout.close()


def stop(runtime_dir: Path):
    """Ask every server under `runtime_dir` to exit (they do once their running steps finish)."""
    for path in runtime_dir.glob("ml-*.sock"):
        with contextlib.closing(_connect_once(path) or socket.socket()) as sock, contextlib.suppress(OSError):
            sock.send(json.dumps({"stop": True}).encode())
            sock.recv(_MESSAGE)


# ------------------------------------------------------------------------------------ server side

class Server:
    def __init__(self, path: Path, python: Path):
        self.path, self.python = path, python
        self.stamp, self.source = environment_stamp(python), Path(__file__).stat().st_mtime_ns
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # pid -> its client's connection
        self.last_used, self.accepting = time.monotonic(), True
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        self.listener.bind(str(staging))
        self.listener.listen(64)
        os.rename(staging, path)  # clients never see a server that is not ready
        self.inode = path.stat().st_ino
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))

    def serve(self):
        while self.accepting or self.children:
            for key, _ in self.selector.select(CHECK_SECONDS):
                kind, pid = key.data
                if kind == "accept":
                    self.accept()
                elif kind == "exited":
                    self.reap(pid, key.fileobj)
                else:  # the client hung up before the step ended: its task was killed
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            if self.accepting and (reason := self.retire_reason()):
                self.retire(reason)

    def retire_reason(self) -> str | None:
        if not self.children and time.monotonic() - self.last_used > IDLE_SECONDS:
            return f"idle for {IDLE_SECONDS} s"
        if not self.path.exists() or self.path.stat().st_ino != self.inode:
            return "its socket was removed"
        if environment_stamp(self.python) != self.stamp or Path(__file__).stat().st_mtime_ns != self.source:
            return "the ML environment changed"
        return None

    def retire(self, reason: str):
        print(f"fork server {os.getpid()} stops accepting: {reason}", flush=True)
        self.accepting = False
        self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()

    def accept(self):
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            message, fds, _, _ = socket.recv_fds(conn, _MESSAGE, 1)
            request = json.loads(message)
        except (OSError, ValueError) as e:
            print(f"bad request: {e}", flush=True)
            conn.close()
            return
        if request.get("stop"):
            conn.send(json.dumps({"stopping": True}).encode())
            conn.close()
            self.retire("asked to stop")
            return
        self.last_used = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.run_child(request, fds[0], conn)
        os.close(fds[0])
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        self.children[pid] = conn
        self.selector.register(os.pidfd_open(pid), selectors.EVENT_READ, ("exited", pid))
        self.selector.register(conn, selectors.EVENT_READ, ("client", pid))
        conn.send(json.dumps({"pid": pid}).encode())

    def reap(self, pid: int, pidfd: int):
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        conn = self.children.pop(pid)
        if conn.fileno() != -1:
            self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
            conn.close()
        self.last_used = time.monotonic()

    def run_child(self, request: dict, out: int, conn: socket.socket):
        """In the forked child: become `python -m pipeline_lib.cli <argv>` run by the client."""
        code = 1
        try:
            os.setpgid(0, 0)  # its own process group: killing the step kills its Beam workers too
            for key in list(self.selector.get_map().values()):  # the server's sockets and pidfds
                key.fileobj.close() if isinstance(key.fileobj, socket.socket) else os.close(key.fd)
            self.selector.close()
            conn.close()
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            import tempfile

            import numpy as np

            tempfile.tempdir = None  # found again from the step's TMPDIR, as in a fresh process
            np.random.seed()  # a fresh process draws a new seed; a fork would repeat the parent's
            sys.path[0] = request["cwd"]
            sys.argv = ["-m", *request["argv"]]
            import runpy

            runpy.run_module("pipeline_lib.cli", run_name="__main__", alter_sys=True)  # exits itself
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - a forked step reports any failure as its exit code
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def main():
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="pipeline_lib.fork_server", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--python", required=True, type=Path, help="the interpreter path clients use (its stamp)")
    parser.add_argument("--lock-fd", type=int, help="the start lock, held until the socket is in place")
    args = parser.parse_args()
    start = time.perf_counter()
    for module in STACK:
        importlib.import_module(module)
    # the imported objects go to the permanent generation: the children's collections skip them
    # (else each full collection walks the whole stack, and copies its pages out of the parent)
    gc.collect()
    gc.freeze()
    server = Server(args.socket, args.python)
    if args.lock_fd is not None:
        os.close(args.lock_fd)  # the children must not hold it either
    print(f"fork server {os.getpid()} on {args.socket}: imported the ML stack in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    server.serve()
    import shutil

    shutil.rmtree(os.environ["TMPDIR"], ignore_errors=True)
    os._exit(0)  # no interpreter teardown (TF's destructors are noisy and slow)


if __name__ == "__main__":
    main()
