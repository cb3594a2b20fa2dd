"""A webhook that trickles its answer a byte at a time never stalls a run nor the process's
exit: delivery has one deadline, and the thread still stuck on that server is abandoned.

The trickling server is the ``trickling_url`` fixture (``conftest.py`` beside this file)."""

from __future__ import annotations

import subprocess
import sys
import time

SEND = """
import sys, time
from pydantic import SecretStr
from medallion.alerts import Alerter, Destination, generic_payload, Alert
alerter = Alerter([Destination("webhook", SecretStr(sys.argv[1]), generic_payload)],
                  timeout_s=1.0, retries=1)
alert = Alert(kind="failure", title="bronze.orders failed", text="boom", run_id="r1",
              job="medallion_pipeline")
started = time.monotonic()
print(alerter.send(alert), round(time.monotonic() - started, 2), flush=True)
"""


def test_a_trickling_webhook_costs_one_deadline_and_never_holds_the_exit(
    trickling_url: str,
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SEND, trickling_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("{'webhook': False}"), done.stdout
    # the deadline is timeout_s * (retries + 1) = 2 s, whatever the trickle; the interpreter
    # then exits at once instead of waiting for the thread that still reads the trickle
    took = float(done.stdout.split()[-1])
    print(f"trickle in a fresh process: send took {took:.2f} s; deadline 2.00 s")
    assert took < 2.5
    assert wall < 10, f"the process took {wall:.1f} s to exit"
