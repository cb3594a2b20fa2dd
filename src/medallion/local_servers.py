"""Servers this package starts on 127.0.0.1 for users and tests (the bundled Kafka broker, the
Spark Connect server): a free port, waiting until one listens, stopping one by its PID."""

from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float) -> str | None:
    """Wait until ``process`` accepts connections on ``port``; what went wrong, else None
    (the process is stopped when it did not come up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited at start (code {process.returncode})"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return None
        except OSError:
            time.sleep(0.05)
    stop(process)
    return f"did not listen on 127.0.0.1:{port} within {timeout_s:g} s"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s; waits for the process to end."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
