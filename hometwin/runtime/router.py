"""The home's WAMP router: a Crossbar.io node config and the ``crossbar start`` subprocess.

One realm per home (``hometwin.<home>``), a RawSocket transport (services: msgpack,
the fast path) and a WebSocket transport (browsers: msgpack or JSON), both on the
loopback interface unless told otherwise.  Config format: Crossbar node config
version 2 (``workers[].type = "router"`` with ``realms`` and ``transports``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from hometwin.runtime.state import write_atomic

log = logging.getLogger("hometwin.router")

#: Crossbar's (and autobahn's RawSocket) largest frame: 16 MiB.  A day-long window of a
#: big home's Flows is well below it (30 arrays × 1440 × 8 B ≈ 350 kB).
MAX_MESSAGE_SIZE = 2**24


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """``port`` can be listened on now (bound as servers bind, with ``SO_REUSEADDR``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int, host: str = "127.0.0.1") -> str:
    """Who listens on TCP ``port``, in words (``pid 123 (crossbar-controller)``), as far as this
    user may see (psutil; else ``another process``)."""
    try:
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port \
                    and conn.laddr.ip in (host, "0.0.0.0", "::", "::ffff:" + host):
                if conn.pid is None:
                    break
                try:
                    return f"pid {conn.pid} ({' '.join(' '.join(psutil.Process(conn.pid).cmdline()[:4]).split())[:120]})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except Exception:  # psutil missing, or not allowed to list sockets here
        pass
    return "another process"


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; else IANA's)."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 49152, 65535


def free_ports(n: int = 1, host: str = "127.0.0.1") -> int:
    """The first of ``n`` consecutive TCP ports that were free a moment ago (for tests and
    ``hometwin up``: its router, one metrics port per process).

    They are chosen outside the kernel's ephemeral range: there any outgoing connection may
    get one as its local port before our server binds it (a service then cannot serve its
    /metrics and crash-loops; a router fails to start), which a port asked of the kernel
    (``bind(0)``, from that very range) risks most."""
    lo, hi = _ephemeral_range()
    if lo - 10000 >= 4 * n:
        span = (10000, lo - n)
    elif 65536 - (hi + 1) >= 4 * n:
        span = (hi + 1, 65536 - n)
    else:
        span = (1024, 65536 - n)
    for _ in range(500):
        base = _rng.randrange(*span)
        if all(port_free(p, host) for p in range(base, base + n)):
            return base
    raise OSError(f"no {n} consecutive free TCP ports on {host} in {span[0]}–{span[1] + n - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (:func:`free_ports`)."""
    return free_ports(1, host)


_rng = random.Random()  # its own: a test that seeds the global generator must not make two runs collide


#: Browser pages that may open the router's WebSocket (``Origin``): pages served from this machine.
#: A page elsewhere (any site the user visits) is refused at the handshake; so is ``Origin: null``
#: (sandboxed frames, ``file://``).  Clients that are not browsers send no Origin.
DEFAULT_ALLOWED_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "https://127.0.0.1:*", "https://localhost:*")


def node_config(realm: str, host: str = "127.0.0.1", port: int = 8080, rawsocket_port: int = 8081,
                realms: tuple[str, ...] = (), unix_path: str | Path | None = None, *,
                roles: list[Any], secrets: dict[str, str],
                allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS,
                tls: tuple[str | Path, str | Path] | None = None) -> dict[str, Any]:
    """A Crossbar node config (version 2): one router worker, realm(s), RawSocket + WebSocket,
    and RawSocket on a Unix socket at ``unix_path`` when given (services on the same machine).

    No anonymous access: every transport authenticates with WAMP-CRA against ``secrets``
    (authid → secret; each principal's role has its name) and every realm has exactly ``roles``
    (:func:`hometwin.auth.roles_for`), whose permissions the router enforces.  The WebSocket checks
    ``Origin`` against ``allowed_origins``.  ``tls`` = (certificate file, key file): both TCP
    transports speak TLS only (``rss://``, ``wss://``); the Unix socket stays plain (its folder
    is the owner's alone)."""
    from hometwin.auth import wampcra_users

    if not secrets:
        raise ValueError("a router needs its principals' secrets (hometwin.auth): anonymous access is off")
    auth = {"wampcra": wampcra_users(secrets)}
    crossbar_roles = [r.crossbar() for r in roles]
    all_realms = [realm] + [r for r in realms if r != realm]
    tcp = {"type": "tcp", "interface": host}
    if tls is not None:
        tcp["tls"] = {"certificate": str(Path(tls[0]).resolve()), "key": str(Path(tls[1]).resolve())}
    return {
        "version": 2,
        "controller": {},
        "workers": [{
            "type": "router",
            "realms": [{"name": r, "roles": crossbar_roles} for r in all_realms],
            "transports": [
                {"type": "rawsocket", "endpoint": {**tcp, "port": rawsocket_port},
                 "serializers": ["msgpack", "json"], "options": {"max_message_size": MAX_MESSAGE_SIZE},
                 "auth": auth},
                {"type": "websocket", "endpoint": {**tcp, "port": port},
                 "serializers": ["msgpack", "json"],
                 "options": {"max_message_size": MAX_MESSAGE_SIZE, "allowed_origins": list(allowed_origins),
                             "allow_null_origin": False},
                 "auth": auth},
            ] + ([{"type": "rawsocket", "endpoint": {"type": "unix", "path": str(unix_path)},
                   "serializers": ["msgpack"], "options": {"max_message_size": MAX_MESSAGE_SIZE},
                   "auth": auth}]
                 if unix_path else []),
        }],
    }


def write_config(cbdir: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` into a Crossbar node directory (``.crossbar``); it holds the
    principals' secrets, so the folder is 0700 and the file 0600."""
    cbdir = Path(cbdir)
    cbdir.mkdir(parents=True, exist_ok=True)
    os.chmod(cbdir, 0o700)
    path = cbdir / "config.json"
    write_atomic(path, json.dumps(config, indent=2), mode=0o600)
    return path


def crossbar_executable() -> str:
    """``crossbar`` next to this interpreter (a venv), else on PATH."""
    here = Path(sys.executable).parent / "crossbar"
    if here.exists():
        return str(here)
    found = shutil.which("crossbar")
    if found is None:
        raise FileNotFoundError("crossbar is not installed (pip install 'hometwin[services]')")
    return found


def _wait_accepting(connect: Callable[[], None], where: str, timeout_s: float,
                    proc: subprocess.Popen | None) -> None:
    """Return once ``connect()`` succeeds; raise on timeout or if ``proc`` died first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"router exited with code {proc.returncode} before accepting connections")
        try:
            connect()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"router at {where} did not accept connections within {timeout_s} s")
            time.sleep(0.1)


def wait_for_port(host: str, port: int, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Return once ``host:port`` accepts a TCP connection; raise on timeout or if ``proc`` died."""
    def connect() -> None:
        with socket.create_connection((host, port), timeout=0.5):
            pass

    _wait_accepting(connect, f"{host}:{port}", timeout_s, proc)


def wait_for_unix(path: str | Path, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Return once the Unix socket ``path`` accepts a connection; raise on timeout or if ``proc`` died."""
    def connect() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(path))

    _wait_accepting(connect, str(path), timeout_s, proc)


class RouterExited(RuntimeError):
    """Crossbar exited before it accepted connections (``port_taken``: a port was in use)."""

    def __init__(self, message: str, port_taken: bool = False):
        super().__init__(message)
        self.port_taken = port_taken


@dataclass
class Router:
    """A running ``crossbar start`` subprocess; ``url`` is its RawSocket URL for services."""

    realm: str
    host: str = "127.0.0.1"
    port: int = 0  # WebSocket; 0 = a free one
    rawsocket_port: int = 0  # RawSocket; 0 = a free one
    unix: bool = False  # also RawSocket on a Unix socket in the node directory (``unix_url``)
    realms: tuple[str, ...] = ()  # more realms on the same router (tests share one)
    #: Who may join and what each may do (hometwin.auth): every realm gets these roles, and the
    #: principals these secrets (authid → secret).  Required: nobody joins anonymously.
    roles: list[Any] = field(default_factory=list, repr=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    tls: tuple[str, str] | None = None  # (certificate file, key file): TCP transports speak TLS only
    cbdir: Path | None = None
    log: IO[Any] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    #: Called with crossbar's pid (its process group) as soon as it is started (a launcher's reaper).
    on_spawn: Callable[[int], None] | None = field(default=None, repr=False)
    _tmp: str | None = field(default=None, repr=False)

    @classmethod
    def for_homes(cls, homes: list[Any], **kw: Any) -> "Router":
        """A router for these homes' realms (the first is ``realm``), with their roles and a fresh
        secret for every principal (:meth:`credentials` hands them out)."""
        from hometwin import auth
        from hometwin.deploy import realm_of

        elements = [auth.home_elements(h) for h in homes]
        roles = auth.merge_roles(*(auth.roles_for(e) for e in elements))
        authids = dict.fromkeys(a for e in elements for a in auth.principals_for(e))
        realms = tuple(dict.fromkeys(realm_of(h) for h in homes))
        return cls(realm=realms[0], realms=realms, roles=roles, secrets=auth.new_secrets(authids), **kw)

    def credentials(self, authid: str) -> Any:
        """How ``authid`` joins this router (:class:`hometwin.runtime.wamp.Credentials`)."""
        from hometwin.runtime.wamp import Credentials

        return Credentials(authid, self.secrets[authid])

    @property
    def url(self) -> str:
        return f"rs{'s' if self.tls else ''}://{self.host}:{self.rawsocket_port}"

    @property
    def unix_path(self) -> Path | None:
        return (Path(self.cbdir) / "router.sock") if self.unix and self.cbdir is not None else None

    @property
    def unix_url(self) -> str | None:
        """``rs+unix:///…/router.sock`` — services on this machine; no TCP stack, no Nagle."""
        return f"rs+unix://{self.unix_path}" if self.unix_path is not None else None

    @property
    def ws_url(self) -> str:
        return f"ws{'s' if self.tls else ''}://{self.host}:{self.port}/ws"

    def prepare(self) -> "Router":
        """Choose the ports and the node directory, write the config: the URLs are known from
        here on, before crossbar starts (the launcher starts the services meanwhile)."""
        if not self.port or not self.rawsocket_port:
            self.port = self.port or free_port(self.host)
            while not self.rawsocket_port or self.rawsocket_port == self.port:  # two asks may get one port
                self.rawsocket_port = free_port(self.host)
        if self.cbdir is None:
            self._tmp = tempfile.mkdtemp(prefix="hometwin-router-")
            self.cbdir = Path(self._tmp) / ".crossbar"
        write_config(self.cbdir, node_config(self.realm, self.host, self.port, self.rawsocket_port,
                                             realms=tuple(self.realms), unix_path=self.unix_path,
                                             roles=self.roles, secrets=self.secrets,
                                             allowed_origins=self.allowed_origins, tls=self.tls))
        return self

    def start(self, timeout_s: float = 60.0) -> "Router":
        """Write the config (:meth:`prepare`), start crossbar, wait until every transport accepts
        connections.

        A port found free a moment ago can be taken before crossbar binds it (another process's
        outgoing connection gets it as its local port).  When this call chose the ports, nobody
        has the URLs yet, so a crossbar that exits before accepting connections is started again
        on new ones (up to three times, logged with crossbar's own words); a router whose URLs
        were handed out (:meth:`prepare` called first) fails at once instead, with those words."""
        auto_ws, auto_rs = not self.port, not self.rawsocket_port  # ours to choose (again)
        for attempt in range(3):
            self.prepare()
            try:
                return self._start_once(timeout_s)
            except RouterExited as exc:
                if (auto_ws or auto_rs) and attempt < 2:
                    log.warning("crossbar exited before accepting connections (attempt %d of 3); starting it "
                                "again on new ports. %s", attempt + 1, exc)
                    self.port = 0 if auto_ws else self.port  # new free ports, a new config;
                    self.rawsocket_port = 0 if auto_rs else self.rawsocket_port  # given ones stay
                    continue
                self.stop()
                raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout_s: float) -> "Router":
        cmd = [crossbar_executable(), "start", "--cbdir", str(self.cbdir), "--loglevel", "warn"]
        own_log = self.log is None
        out: Any = open(Path(self.cbdir) / "crossbar.log", "w+b") if own_log else self.log
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if self.on_spawn is not None:
            self.on_spawn(self.proc.pid)
        try:
            wait_for_port(self.host, self.rawsocket_port, timeout_s, self.proc)
            wait_for_port(self.host, self.port, timeout_s, self.proc)
            if self.unix_path is not None:
                wait_for_unix(self.unix_path, timeout_s, self.proc)
        except Exception as exc:
            exited = self.proc.poll() is not None  # crossbar gave up (rather than a timeout of ours)
            said = ""
            if own_log:
                out.seek(0)
                said = out.read()[-4000:].decode(errors="replace")
            self._kill()
            if exited:
                raise RouterExited(f"{exc}; crossbar said:\n{said.strip() or '(nothing)'}",
                                   port_taken="already in use" in said or "CannotListenError" in said) from None
            raise
        finally:
            if own_log:
                out.close()  # crossbar keeps its own descriptor
        return self

    def restart(self, timeout_s: float = 60.0) -> "Router":
        """Start crossbar again after it exited, on the same ports, node directory and Unix socket
        (the services reconnect to the URLs they have).  What is left of the old node — a worker
        in its process group, the socket file, its pid file — is removed first."""
        old, self.proc = self.proc, None
        if old is not None:
            try:
                os.killpg(old.pid, signal.SIGKILL)  # (crossbar started it with start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                old.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.unix_path is not None:
            self.unix_path.unlink(missing_ok=True)
        if self.cbdir is not None:
            (Path(self.cbdir) / "node.pid").unlink(missing_ok=True)
        return self._start_once(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the node (crossbar stops its workers), SIGKILL if it lingers; remove our temp folder."""
        self._kill(timeout_s)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _kill(self, timeout_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)

    def __enter__(self) -> "Router":
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
