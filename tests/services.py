"""Real services for the tests, on loopback only: a two-node Ray cluster and an S3 server.

Each service runs as processes in sessions of their own (`start_new_session`), so stopping
one is "signal every process of its sessions": that reaches the processes Ray forks for
its workers too, which leave the process group of `ray start` but not its session. Nothing
here uses `ray stop`, which stops every Ray process on the machine, other people's too.
A watchdog process kills the sessions if the test process dies without stopping them.

Ray turns 127.0.0.1 into the machine's outward address, so the nodes take other loopback
addresses (127.0.0.2, 127.0.0.3: all of 127/8 is loopback on Linux); Ray's servers still
listen on every interface, as they always do.

Only the standard library is imported at the top: the watchdog runs this file as a script.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HEAD_IP = "127.0.0.2"
NODE_IPS = ("127.0.0.3", "127.0.0.4", "127.0.0.5")
OBJECT_STORE_BYTES = 150 * 1024 * 1024
START_SECONDS = 60.0
STOP_GRACE_SECONDS = 1.0  # Ray's daemons mostly sit out a SIGTERM: a short grace
WATCH_SECONDS = 0.5
# Ray's unix sockets live under its temp dir: a socket path must stay under 108 bytes.
MAX_RAY_TEMP_DIR = 40
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def reply(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> None:
    """Answer the request `handler` is serving: `status`, the headers, `body`."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server with `handler` on a free port of 127.0.0.1; yields its base URL
    (`http://127.0.0.1:PORT`) and shuts it down on exit."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for(ready: Callable[[], bool], what: str, timeout: float = START_SECONDS) -> None:
    """Poll `ready` until it holds; TimeoutError naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


# ---------------------------------------------------------------- process sessions


def session_members(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def signal_sessions(sids: Iterable[int], signum: int) -> int:
    """Send `signum` to every process of the sessions; returns how many were signalled."""
    sent = 0
    for sid in sids:
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
                sent += 1
    return sent


def stop_sessions(sids: list[int], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every process of the sessions, SIGKILL what is left after `grace` seconds
    (again, until none is left: a dying daemon may have started one more)."""
    signum = signal.SIGTERM
    deadline = time.monotonic() + grace
    while signal_sessions(sids, signum):
        time.sleep(0.1)
        if time.monotonic() > deadline:
            signum = signal.SIGKILL


def start_watchdog(sids: list[int]) -> subprocess.Popen[bytes]:
    """A process that kills the sessions once this process is gone (say, SIGKILLed)."""
    args = [sys.executable, __file__, "watch", str(os.getpid()), *map(str, sids)]
    return subprocess.Popen(args, start_new_session=True)


def watch(parent: int, sids: list[int]) -> None:
    """The watchdog's loop: wait for `parent` to exit, then kill the sessions."""
    while True:
        time.sleep(WATCH_SECONDS)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            signal_sessions(sids, signal.SIGKILL)
            return


@dataclass
class Service:
    """Processes started in sessions of their own, stopped together."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    watchdog: subprocess.Popen[bytes] | None = None

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        with open(log, "ab") as out:
            self.processes.append(
                subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )
        self.guard()

    def guard(self) -> None:
        """(Re)start the watchdog over every session started so far."""
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        self.watchdog = start_watchdog([p.pid for p in self.processes])

    def check_running(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"service process {process.pid} exited ({process.returncode})")

    def stop(self) -> None:
        stop_sessions([p.pid for p in self.processes])
        for process in self.processes:
            process.wait()
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()


# ---------------------------------------------------------------- Ray


@dataclass
class RayCluster(Service):
    """A head and worker nodes started with `ray start --block`, one CPU each."""

    address: str = ""
    temp_dir: Path = field(default_factory=Path)
    nodes: int = 0
    remove_temp_dir: bool = False  # a folder of our own under /tmp, not the caller's

    def stop(self) -> None:
        super().stop()
        if self.remove_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def node_args(self, head: bool, index: int) -> list[str]:
        common = [
            "--num-cpus=1",
            "--disable-usage-stats",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--block",
        ]
        if head:
            return [
                "--head",
                f"--node-ip-address={HEAD_IP}",
                f"--port={self.address.rsplit(':', 1)[1]}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
                *common,
            ]
        return [f"--address={self.address}", f"--node-ip-address={NODE_IPS[index]}", *common]

    def wait_for_nodes(self, timeout: float = START_SECONDS) -> None:
        """Return once all `nodes` are alive (asked by a driver in a separate process)."""
        code = (
            "import sys, time, ray\n"
            "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
            "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]):\n"
            "    time.sleep(0.1)\n"
        )
        args = [sys.executable, "-c", code, self.address, str(self.nodes)]
        try:
            subprocess.run(args, capture_output=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"{self.nodes} Ray nodes not alive after {timeout:.0f}s") from err


def ray_env() -> dict[str, str]:
    """The cluster's environment: workers import this checkout (tests included)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "RAY_USAGE_STATS_ENABLED": "0"}


def ray_temp_dir(base: Path) -> Path:
    """`base`, or a short folder under /tmp when `base` would make socket paths too long."""
    if len(str(base)) <= MAX_RAY_TEMP_DIR:
        return base
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))


def start_ray_cluster(base: Path, nodes: int = 2) -> RayCluster:
    """A head plus `nodes - 1` worker nodes on loopback, waited for until all are alive."""
    temp_dir = ray_temp_dir(base)
    cluster = RayCluster(
        address=f"{HEAD_IP}:{free_port(HEAD_IP)}",
        temp_dir=temp_dir,
        nodes=nodes,
        remove_temp_dir=temp_dir != base,
    )
    ray = str(BIN / "ray")
    env = ray_env()
    try:
        cluster.spawn([ray, "start", *cluster.node_args(True, 0)], temp_dir / "head.log", env)
        host, port = cluster.address.rsplit(":", 1)

        def gcs_up() -> bool:
            cluster.check_running()
            return answers(host, int(port))

        wait_for(gcs_up, "Ray's GCS")
        for index in range(nodes - 1):
            log = temp_dir / f"node{index + 1}.log"
            cluster.spawn([ray, "start", *cluster.node_args(False, index)], log, env)
        cluster.wait_for_nodes()
        cluster.check_running()
    except BaseException:
        cluster.stop()
        raise
    return cluster


# ---------------------------------------------------------------- S3 (moto)


@dataclass
class S3Server(Service):
    """`moto_server`: an in-memory S3 at `endpoint`."""

    endpoint: str = ""

    def answers(self) -> bool:
        self.check_running()
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False


def start_s3_server(log: Path) -> S3Server:
    """moto_server on 127.0.0.1 at a free port, waited for until it answers."""
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}")
    try:
        server.spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
        wait_for(server.answers, "moto_server")
    except BaseException:
        server.stop()
        raise
    return server


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "watch":
        sys.exit(f"usage: {sys.argv[0]} watch PARENT_PID SESSION_ID...")
    watch(int(sys.argv[2]), [int(s) for s in sys.argv[3:]])
