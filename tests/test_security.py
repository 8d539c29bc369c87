"""The live twin locked down (issue 18): every attack found on the open router, against the real
Crossbar router and a running home, is refused — by the router where a role may not do it, by the
services where an element speaks for another — and counted, and the run's results equal
``hometwin run`` exactly.

Attackers join with credentials of the home (an element's, the viewer's, the controller's): the
worst case, a compromised service or a stolen key, since without credentials nobody joins at all.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np
import pytest
from autobahn.asyncio.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from hometwin import auth
from hometwin.runtime import messages as m
from hometwin.engine import Engine
from hometwin.runtime.launcher import Launcher
from hometwin.runtime.router import Router
from hometwin.runtime.wamp import Credentials, stop_component, transport
from hometwin.spec import load_home
from runtime_support import CAPE_TOWN, ROOT, Up, free_ports, max_diff

pytestmark = pytest.mark.timeout(600)
MINIMAL = ROOT / "examples" / "homes" / "minimal.yaml"
REALM = "hometwin.cape-town"
PAUSE = 600  # step 600 (10:00): the attacks happen while the twin is paused there
UNTIL = 86400
WINDOW = 60
MARKER = "hometwin-test-marker-3f9c"  # in every service's environment: must never show in an answer


# -- joining -------------------------------------------------------------------------------------

def session_do(url: str, realm: str, credentials: Credentials | None,
               action: Callable[[Any], Awaitable[Any]], timeout_s: float = 60, **kw: Any) -> Any:
    """Join as ``credentials`` (None: anonymously), run ``action(session)``, leave.  Returns its
    result, or ``("refused", reason)`` when the router did not let the session join."""

    async def main() -> Any:
        tr = dict(transport(url, **kw), max_retries=0)
        comp = Component(transports=[tr], realm=realm,
                         authentication=credentials.authentication() if credentials is not None else None)
        out: asyncio.Future = asyncio.get_running_loop().create_future()

        @comp.on_join
        async def joined(session: Any, details: Any) -> None:
            try:
                result = await action(session)
                out.done() or out.set_result(result)
            except BaseException as exc:
                out.done() or out.set_exception(exc)

        @comp.on_leave
        async def left(session: Any, details: Any) -> None:
            out.done() or out.set_result(("refused", details.reason))

        done = comp.start(asyncio.get_running_loop())
        done.add_done_callback(lambda f: out.done() or out.set_result(("refused", repr(f.exception()))))
        try:
            return await asyncio.wait_for(out, timeout_s)
        except asyncio.TimeoutError:  # e.g. a plain client at a TLS port: no handshake ever completes
            return ("refused", f"no session within {timeout_s} s")
        finally:
            await stop_component(comp)

    return asyncio.run(main())


def refused(outcome: Any) -> str:
    """The WAMP error of an action the router refused (not_authorized …), else fail."""
    if isinstance(outcome, ApplicationError):
        return outcome.error
    raise AssertionError(f"not refused: {outcome!r}")


async def _catch(coro: Awaitable[Any]) -> Any:
    try:
        return await coro
    except ApplicationError as exc:
        return exc


# -- nobody joins without the home's credentials ----------------------------------------------------

def test_anonymous_and_wrong_secret_cannot_join(router):  # type: ignore[no-untyped-def]
    async def nothing(session: Any) -> str:
        return "joined"

    for url in (router.url, router.unix_url, router.ws_url):
        anon = session_do(url, REALM, None, nothing)
        assert anon[0] == "refused" and "joined" not in anon, (url, anon)
        wrong = session_do(url, REALM, Credentials("controller", "not-the-secret"), nothing)
        assert wrong[0] == "refused", (url, wrong)
        nobody = session_do(url, REALM, Credentials("element.toaster", "x"), nothing)
        assert nobody[0] == "refused", (url, nobody)
    assert session_do(router.url, REALM, router.credentials("viewer"), nothing) == "joined"


def _handshake(port: int, origin: str | None) -> str:
    """The status line of a WebSocket opening handshake to the router's ``/ws`` with ``Origin``."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: wamp.2.json"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return s.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_websocket_checks_the_origin(router):  # type: ignore[no-untyped-def]
    """A page on another site (or a sandboxed one, Origin: null) cannot open the router's WebSocket;
    a page served from this machine and a client that is no browser can (then they authenticate)."""
    for origin in ("http://127.0.0.1:4200", "http://localhost:8000", None):
        assert _handshake(router.port, origin).startswith("HTTP/1.1 101 "), origin
    for origin in ("http://evil.example", "https://attacker.example:443", "null", "http://127.0.0.1.evil.example"):
        status = _handshake(router.port, origin)
        assert status.startswith("HTTP/1.1 4") and "not allowed" in status, (origin, status)


# -- attacks on a running home ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def attacked(router, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Cape Town, 1 day in hour windows, paused at step 600: every attack, then resumed to the end."""
    os.environ["HOMETWIN_TEST_MARKER"] = MARKER  # the services inherit it (the grid's /proc/self/environ)
    up = Up(router, window=WINDOW, until_s=UNTIL, pause_at=PAUSE, metrics_port=free_ports(32)).start()
    info: dict[str, Any] = {"up": up}
    with up.driving():
        up.wait_paused_at(PAUSE, timeout_s=240)
        info["attacks"] = run_attacks(router, up)
        info["before"] = up.scrape("inverter", "geyser")
        up.call("hometwin.clock.resume")  # the controller: accepted, and recorded
    info["result"] = up.join(300)
    os.environ.pop("HOMETWIN_TEST_MARKER", None)
    return info


def run_attacks(router: Any, up: Up) -> dict[str, Any]:
    url, realm = router.url, up.realm
    got: dict[str, Any] = {}
    tv, viewer, controller = (router.credentials(a) for a in ("element.tv", "viewer", "controller"))
    forged_flows = {"seq": 10, "i0": 600, "n": 1, "k": 0, "dt_s": 60.0, "flows": {"pv_ac_j": [1e12]},
                    "served": {}, "roles": {}}

    def publish(uri: str, payload: Any) -> Callable[[Any], Awaitable[Any]]:
        async def act(session: Any) -> Any:
            return await _catch(session.publish(uri, payload, options=PublishOptions(acknowledge=True)))
        return act

    def call(uri: str, *args: Any, **kwargs: Any) -> Callable[[Any], Awaitable[Any]]:
        async def act(session: Any) -> Any:
            return await _catch(session.call(uri, *args, **kwargs))
        return act

    # forged flows and a forged end of run: only the inverter publishes flows, only the clock run.done
    got["flows_by_viewer"] = session_do(url, realm, viewer, publish(m.FLOWS, forged_flows))
    got["flows_by_element"] = session_do(url, realm, tv, publish(m.FLOWS, forged_flows))
    got["run_done_by_element"] = session_do(url, realm, tv, publish(m.RUN_DONE, {"seq": 11, "i": 660, "n_steps": 1440}))
    got["tick_by_controller"] = session_do(url, realm, controller, publish(m.TICK, {"seq": 11}))
    # an element posing as the geyser (load ×5), and a ghost element announcing itself: the router
    # lets the TV publish on the shared topics, the inverter sees who did and refuses
    geyser_request = {"seq": 11, "element": "geyser", "role": "load", "n": WINDOW,
                      "joules": np.full(WINDOW, -3e5).tobytes()}
    got["request_as_geyser"] = session_do(url, realm, tv, publish(m.REQUEST, geyser_request))
    got["ghost_announce"] = session_do(url, realm, tv, publish(m.ANNOUNCE, {
        "element": "ghost", "kind": "tv", "role": "load", "session": 1}))
    # registering another element's RPC first; serving the clock's or the roster
    # (on a realm where no battery runs yet: in this one the router would say it is taken)
    got["register_battery_dispatch"] = session_do(
        url, "hometwin.minimal", tv,
        lambda s: _catch(s.register(lambda *a, **k: None, m.element_uri("battery", "dispatch"))))
    got["register_battery_port"] = session_do(
        url, realm, tv, lambda s: _catch(s.register(lambda *a, **k: None, m.element_uri("battery", "set_plan"))))
    got["register_roster"] = session_do(url, "hometwin.minimal", tv,
                                        lambda s: _catch(s.register(lambda: None, m.ROSTER_GET)))
    # control RPCs without the controller role
    got["inverter_set_by_viewer"] = session_do(url, realm, viewer, call(m.element_uri("inverter", "set"),
                                                                        mode="self_use"))
    got["speed_by_viewer"] = session_do(url, realm, viewer, call(m.clock_uri("set_speed"), "60"))
    got["speed_by_element"] = session_do(url, realm, tv, call(m.clock_uri("set_speed"), "60"))
    got["snapshot_by_viewer"] = session_do(url, realm, viewer, call(m.element_uri("battery", "snapshot")))
    got["launcher_off_by_viewer"] = session_do(url, realm, viewer, call(m.launcher_uri("off"), "oven"))
    # the controller may set, but a file property reads only inside the spec's folder
    got["tariff_file_environ"] = session_do(url, realm, controller, call(
        m.element_uri("grid", "set"), tariff={"type": "series", "file": "/proc/self/environ"}))
    got["tariff_file_passwd"] = session_do(url, realm, controller, call(
        m.element_uri("grid", "set"), tariff={"type": "series", "file": "../../../../../../etc/passwd"}))
    # what a viewer is for: reading
    got["viewer_reads_status"] = session_do(url, realm, viewer, call(m.clock_uri("status")))
    return got


def test_router_refuses_what_a_role_may_not_do(attacked):  # type: ignore[no-untyped-def]
    a = attacked["attacks"]
    for what in ("flows_by_viewer", "flows_by_element", "run_done_by_element", "tick_by_controller",
                 "register_battery_dispatch", "register_battery_port", "register_roster", "inverter_set_by_viewer", "speed_by_viewer",
                 "speed_by_element", "snapshot_by_viewer", "launcher_off_by_viewer"):
        assert refused(a[what]) == "wamp.error.not_authorized", (what, a[what])
    assert a["viewer_reads_status"]["paused"] and a["viewer_reads_status"]["i"] == PAUSE


def test_services_refuse_and_count_an_element_speaking_for_another(attacked):  # type: ignore[no-untyped-def]
    a, inv = attacked["attacks"], attacked["before"]["inverter"]
    # the router let the TV publish (acknowledged) …
    assert not isinstance(a["request_as_geyser"], Exception) and not isinstance(a["ghost_announce"], Exception)
    forged = {k.split('uri="')[1].split('"')[0]: v for k, v in inv.items()
              if k.startswith("hometwin_messages_rejected_total") and 'reason="forged"' in k}
    assert forged.get(m.REQUEST) == 1 and forged.get(m.ANNOUNCE) == 1, forged  # … the inverter refused both
    roster = attacked["up"].launcher.roster
    assert "ghost" not in roster


def test_a_set_naming_a_file_outside_the_folder_is_refused_without_its_content(attacked):  # type: ignore[no-untyped-def]
    for what in ("tariff_file_environ", "tariff_file_passwd"):
        exc = attacked["attacks"][what]
        assert isinstance(exc, ApplicationError) and exc.error == "hometwin.error.invalid_property", (what, exc)
        said = json.dumps([exc.args, exc.kwargs], default=str)
        assert MARKER not in said and "root:" not in said and "PATH=" not in said, said
        assert "tariff" in said, said  # it names the field


def test_the_attacked_run_equals_hometwin_run(attacked):  # type: ignore[no-untyped-def]
    res = attacked["result"]
    ref = Engine(load_home(CAPE_TOWN), window=WINDOW, until_s=UNTIL).run()
    assert len(res.frame) == len(ref.frame) == UNTIL // 60
    assert res.meta["steps_without"] == {}
    assert max_diff(res.frame, ref.frame) <= 1e-9
    assert res.kpis()["max_ledger_residual_j"] <= 1e-6


def test_accepted_control_actions_are_recorded(attacked, tmp_path):  # type: ignore[no-untyped-def]
    """The controller's resume is in the results' events (events.json), with who asked; the refused
    actions are not."""
    paths = attacked["result"].write(tmp_path)
    events = json.loads(paths["events"].read_text())
    assert [(e["action"], e["source"], e["by"]) for e in events] == [("resume", "clock", "controller")], events
    assert events[0]["step"] == PAUSE


# -- credentials on disk, TLS, the docs' table -------------------------------------------------------

def test_up_writes_credentials_only_the_owner_can_read(tmp_path):  # type: ignore[no-untyped-def]
    """``hometwin up`` with its own router: a fresh secret per principal, folder 0700 and files 0600,
    the router's config 0600 too; no secret in any log line."""
    logs: list[str] = []
    la = Launcher(spec_path=MINIMAL, window=60, until_s=3 * 3600, port=0, rawsocket_port=0, live=False,
                  out=tmp_path / "out", log_sink=lambda name, color, line: logs.append(line))
    res = asyncio.run(la.run())
    assert len(res.frame) == 180
    folder = tmp_path / "out" / "credentials"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(auth.principals_for(auth.home_elements(la.home)))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    secrets = {}
    for p in folder.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        secrets[p.name] = p.read_text()
    assert len(set(secrets.values())) == len(secrets) and all(len(s) >= 40 for s in secrets.values())
    text = "\n".join(logs)
    assert not any(s in text for s in secrets.values())


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hometwin-test-router")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "router.crt", folder / "router.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    os.chmod(pem, 0o600)
    return crt, pem


def test_tls_router_admits_tls_clients_only(tmp_path):  # type: ignore[no-untyped-def]
    crt, key = _self_signed(tmp_path)
    r = Router.for_homes([load_home(MINIMAL)], cbdir=tmp_path / ".crossbar", tls=(str(crt), str(key)))
    r.start(timeout_s=90)
    try:
        assert r.url.startswith("rss://") and r.ws_url.startswith("wss://")

        async def status(session: Any) -> Any:
            return "joined"

        viewer = r.credentials("viewer")
        assert session_do(r.url, r.realm, viewer, status, ca_file=str(crt)) == "joined"
        assert session_do(r.ws_url, r.realm, viewer, status, ca_file=str(crt)) == "joined"
        plain = r.url.replace("rss://", "rs://")
        assert session_do(plain, r.realm, viewer, status, timeout_s=20)[0] == "refused"
        # a client that does not trust the certificate does not join either
        assert session_do(r.url, r.realm, viewer, status, timeout_s=20)[0] == "refused"
    finally:
        r.stop()


def test_docs_roles_table_is_the_router_config():  # type: ignore[no-untyped-def]
    """docs/security.md's table of roles is generated from the config the router gets."""
    text = (ROOT / "docs" / "security.md").read_text()
    assert auth.roles_table(auth.home_elements(load_home(CAPE_TOWN))) in text


def test_a_process_without_its_credentials_says_so_in_one_line(tmp_path):  # type: ignore[no-untyped-def]
    """No credentials, or a folder without this principal's file: exit 2 before anything starts,
    one line naming what is missing (and never a file's content)."""
    import subprocess
    import sys

    cli = [sys.executable, "-m", "hometwin.cli"]
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "element.oven").write_text(MARKER)  # someone else's key
    (tmp_path / "creds" / "element.tv").mkdir()  # not a file
    cases = [
        (["service", "tv", "--name", "tv", "--spec", str(CAPE_TOWN), "--router", "rs://127.0.0.1:1"],
         "--credentials DIR is required"),
        (["service", "tv", "--name", "tv", "--spec", str(CAPE_TOWN), "--router", "rs://127.0.0.1:1",
          "--credentials", str(tmp_path / "creds")], "must be a regular file"),
        (["clock", "--spec", str(CAPE_TOWN), "--router", "rs://127.0.0.1:1", "--credentials", str(tmp_path / "creds")],
         "no credentials for 'clock'"),
        (["ctl", "status", "--realm", REALM, "--router", "rs://127.0.0.1:1", "--credentials", str(tmp_path / "creds")],
         "no credentials for 'controller'"),
    ]
    for args, words in cases:
        proc = subprocess.run(cli + args, capture_output=True, text=True, timeout=120)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 2, (args, text)
        assert words in " ".join(text.split()), (args, text)
        assert "Traceback" not in text and MARKER not in text


def test_a_wrong_secret_is_refused_once_and_said_in_one_line(router, tmp_path):  # type: ignore[no-untyped-def]
    """A service or ctl whose key the router does not take: no retry loop (a log line every 2 s
    before), one line saying the router refused it, and an exit code that says so."""
    import subprocess
    import sys

    creds = auth.write_credentials(tmp_path / "creds", {"element.tv": "not-the-secret", "controller": "nor-this"})
    cli = [sys.executable, "-m", "hometwin.cli"]
    svc = subprocess.run(cli + ["service", "tv", "--name", "tv", "--spec", str(CAPE_TOWN), "--router", router.url,
                                "--credentials", str(creds)], capture_output=True, text=True, timeout=120)
    text = svc.stdout + svc.stderr
    assert svc.returncode == 77, text
    assert text.count("refused this session: wamp.error.not_authorized") == 1, text
    assert "Connection failed" not in text and "Traceback" not in text
    ctl = subprocess.run(cli + ["ctl", "status", "--realm", REALM, "--router", router.url, "--credentials", str(creds)],
                         capture_output=True, text=True, timeout=120)
    lines = ctl.stderr.strip().splitlines()
    assert ctl.returncode == 1 and len(lines) == 1, ctl.stdout + ctl.stderr
    assert "refused the controller" in lines[0] and "nor-this" not in lines[0]
