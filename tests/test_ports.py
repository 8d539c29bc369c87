"""Ports: chosen where no outgoing connection takes them, and a taken one refused in words.

A /metrics port taken by another process made that element's service crash-loop while the
clock waited 60 s for it and then started the run without it (its load missing from the first
windows).  ``hometwin up`` now refuses such a port before anything starts, a service says in
one line which port it cannot listen on, and ports are chosen below the kernel's ephemeral
range, where an outgoing connection's local port never lands.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hometwin.runtime.launcher import Launcher, PortsInUse
from hometwin.runtime.router import _ephemeral_range, free_ports, port_free
from runtime_support import CAPE_TOWN

CLI = [sys.executable, "-m", "hometwin.cli"]


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _words(proc: subprocess.CompletedProcess) -> str:
    """The process's output as one line of words (without the boxes rich draws round an error)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", proc.stdout + proc.stderr).split())


def _order() -> list[str]:
    """The processes in launch order (clock, then the elements as the spec lists them)."""
    from hometwin.spec import load_home

    return ["clock"] + [e.name for e in load_home(CAPE_TOWN).spec.elements]


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40))
def test_free_ports_are_free_and_below_the_ephemeral_range(n: int) -> None:
    lo, hi = _ephemeral_range()
    base = free_ports(n)
    assert all(port_free(p) for p in range(base, base + n))
    assert base + n - 1 < lo or base > hi  # an outgoing connection's local port is never one of them


def test_a_listening_port_is_not_free() -> None:
    base = free_ports(1)
    with _listen(base):
        assert not port_free(base)
    assert port_free(base)


def test_up_refuses_a_taken_metrics_port_before_anything_starts(tmp_path: Path) -> None:
    names = _order()
    fridge = names.index("fridge")
    base = free_ports(len(names))
    with _listen(base + fridge):
        la = Launcher(spec_path=CAPE_TOWN, metrics_port=base, live=False, out=tmp_path)
        with pytest.raises(PortsInUse, match=rf"{base + fridge} \(fridge\) in use"):
            la.check_metrics_ports()
        proc = subprocess.run(CLI + ["up", "-f", str(CAPE_TOWN), "--days", "0.01", "--no-live", "--metrics-port",
                                     str(base), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=120)
    text = _words(proc)
    assert proc.returncode == 2, text
    # (hometwin up also starts the recorder: one port more, the last)
    assert f"{base + fridge} (fridge) in use" in text and f"{base}–{base + len(names)} free" in text
    # refused before the router, any element or the clock (whose 60 s wait for the fridge it spares)
    assert "crossbar up" not in text and "fridge │" not in proc.stderr and not (tmp_path / "out").exists()


def test_up_refuses_metrics_ports_past_65535(tmp_path: Path) -> None:
    la = Launcher(spec_path=CAPE_TOWN, metrics_port=65530, live=False, out=tmp_path)
    with pytest.raises(PortsInUse, match=r"--metrics-port: 65530 \+ 13 .* must lie in 1–65535"):
        la.check_metrics_ports()


def test_a_service_whose_metrics_port_is_taken_says_which_in_one_line(tmp_path: Path) -> None:
    from hometwin import auth

    port = free_ports(1)
    creds = auth.write_credentials(tmp_path / "credentials", auth.new_secrets(["element.fridge"]))
    with _listen(port):
        proc = subprocess.run(CLI + ["service", "fridge", "--name", "fridge", "--spec", str(CAPE_TOWN),
                                     "--credentials", str(creds),
                                     "--router", "rs://127.0.0.1:1", "--metrics-port", str(port),
                                     "--metrics-host", "127.0.0.1"],
                              capture_output=True, text=True, timeout=120)
    text = _words(proc)
    assert proc.returncode == 2, text
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in text
    assert "Traceback" not in text
