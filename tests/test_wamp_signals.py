"""A service stopped by a signal ignores the signals that follow (Ctrl-C reaches every process of
``hometwin up``, and the launcher's SIGTERM comes after it): no ``KeyboardInterrupt`` traceback
while it exits, and its exit work (the last state write) runs to the end."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    from hometwin.runtime.wamp import component, run_component

    comp = component("rs://127.0.0.1:9", "hometwin.nobody")  # nothing listens there: it keeps retrying
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    run_component(comp)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the stop, while the process exits
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("exit work done", flush=True)
""")


def test_signals_after_the_stop_are_ignored() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exit work done" in proc.stdout
    assert "KeyboardInterrupt" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
