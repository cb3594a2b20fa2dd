"""A webhook that trickles its answer a byte at a time never stalls a run nor the process's
exit: delivery has one deadline, and the thread still stuck on that server is abandoned."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

SEND = """
import sys, time
from pydantic import SecretStr
from medallion.alerts import Alerter, Destination, generic_payload, Alert
alerter = Alerter([Destination("webhook", SecretStr(sys.argv[1]), generic_payload)],
                  timeout_s=1.0, retries=1)
alert = Alert(kind="failure", title="bronze.orders failed", text="boom", run_id="r1",
              job="medallion_pipeline")
started = time.monotonic()
print(alerter.send(alert), round(time.monotonic() - started, 1), flush=True)
"""


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """Accepts, reads the request, then answers one byte every 0.3 s for up to a minute."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_trickling_webhook_costs_one_deadline_and_never_holds_the_exit(
    trickling_server: str,
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SEND, trickling_server],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("{'webhook': False}"), done.stdout
    # the budget is timeout_s * (retries + 1) = 2 s plus grace; the interpreter then exits at
    # once instead of waiting for the thread that still reads the trickle
    assert float(done.stdout.split()[-1]) < 3.5
    assert wall < 10, f"the process took {wall:.1f} s to exit"
