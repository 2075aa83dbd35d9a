"""Real Ray nodes on loopback for the tests: ``ray start --block`` processes, always stopped, by their own ids."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def worker_env(**extra: str) -> dict[str, str]:
    """This checkout and the tests' backends importable in every Ray process and driver."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {
        **os.environ,
        "PYTHONPATH": path.rstrip(os.pathsep),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        **extra,
    }
    env.pop("PROMPTASK_BACKEND", None)
    return env


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Node:
    def __init__(self, process: subprocess.Popen[str], address: str, log: IO[str]) -> None:
        self.process = process
        self.address = address
        self.log = log

    def workers(self) -> dict[int, str]:
        """This node's worker processes (where actors and tasks run), by pid, with their titles."""
        found = {pid: command_line(pid) for pid in descendants(self.process.pid)}
        return {pid: line for pid, line in found.items() if "default_worker.py" in line or line.startswith("ray::")}

    def stop(self) -> None:
        pids = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)
        for pid in pids:  # anything left behind: by its own id, never by name
            if Path(f"/proc/{pid}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.log.close()


def start_node(cpus: int, store_mb: int, head_address: str | None = None, temp_dir: str | None = None) -> Node:
    ports = {
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    args = [str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
            f"--object-store-memory={store_mb * 1024**2}", "--disable-usage-stats"]  # fmt: skip
    args += [f"{flag}={port}" for flag, port in ports.items()]
    if head_address is None:
        port = free_port()
        address = f"127.0.0.1:{port}"
        args += ["--head", f"--port={port}", "--include-dashboard=false"]
        if temp_dir:
            args.append(f"--temp-dir={temp_dir}")
    else:
        address = head_address
        args.append(f"--address={head_address}")
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by Node.stop)
    process = subprocess.Popen(args, env=worker_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    node = Node(process, address, log)
    deadline = time.monotonic() + 120
    while True:
        log.seek(0)
        text = log.read()
        if "Ray runtime started" in text:
            return node
        if process.poll() is not None or time.monotonic() > deadline:
            node.stop()
            raise RuntimeError(f"ray start failed:\n{text[-3000:]}")
        time.sleep(0.3)


@contextmanager
def head_node(cpus: int = 3, store_mb: int = 300) -> Iterator[Node]:
    temp_dir = tempfile.mkdtemp(prefix="pt-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    node = start_node(cpus, store_mb, temp_dir=temp_dir)
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
