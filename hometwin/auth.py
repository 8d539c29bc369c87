"""Who may do what on a home's realm: principals, roles, permissions and credentials (pure).

Every WAMP session authenticates (WAMP-CRA: the router sends a challenge, the client answers
with an HMAC of it under its secret; the secret itself never crosses the wire), and the router
enforces what its role may do on every URI — not the services.  One principal per process:

=================  ==================  ==========================================================
authid             role                who
=================  ==================  ==========================================================
``element.<name>`` ``element.<name>``  one element's service (the inverter's included)
``clock``          ``clock``           the clock
``launcher``       ``launcher``        ``hometwin up``'s own session (records flows, serves on/off)
``recorder``       ``recorder``        a recorder of flows and events
``viewer``         ``viewer``          read-only: dashboards, ``hometwin ctl status``
``controller``     ``controller``      ``hometwin ctl`` (set, on/off, pause, speed …), the UI
=================  ==================  ==========================================================

Each element has a role of its own, so an element may publish its packets and register only its
own RPCs (``hometwin.element.<name>.``); the topics every element publishes on
(``hometwin.request`` …) are shared, so the router *discloses* the publisher to subscribers there
and the services check that a packet names the element that sent it (:func:`element_of`).
Only the inverter publishes flows and settles, only the clock ticks and ends a run.

Permissions are generated from the spec as exact URIs (Crossbar takes the longest matching
permission, and an exact one that is only a prefix of a URI denies it), with a prefix for an
element's own RPC namespace.  :func:`crossbar_realm_roles` is the realm's ``roles`` list and
:func:`wampcra_users` the transports' ``auth``; :func:`roles_table` renders both for
docs/security.md.

Credentials are one random secret per principal, kept as files named by authid in a folder
(``hometwin up``: ``<out>/credentials``, mode 0700, files 0600; Kubernetes: a Secret with the
same keys, each pod mounting only its own key).  A new run makes new secrets.
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hometwin.runtime import messages as m

ELEMENT_PREFIX = "element."
SYSTEM_PRINCIPALS = ("clock", "launcher", "recorder", "viewer", "controller")
#: A secret file larger than this is not a secret file (a misplaced path).
MAX_SECRET_BYTES = 4096
#: WAMP-CRA: the secrets are random, so the router may keep them as they are (no salted key
#: derivation needed: that protects guessable passwords).
SECRET_BYTES = 32

#: What each element service publishes (hometwin.runtime.service), by what its kind does: every one
#: announces itself and records the sets it accepted; one with outputs publishes signals, a source or
#: a load its energy requests, the battery its status.
_ELEMENT_PUBLISH = (m.ANNOUNCE, m.EVENT)
_SIGNALS_PUBLISH = (m.SIGNALS, m.SIGNALS_AHEAD)
_REQUEST_PUBLISH = (m.REQUEST, m.REQUEST_AHEAD)
_STORAGE_PUBLISH = (m.STORAGE,)
_ELEMENT_SUBSCRIBE = (m.TICK_WINDOW, m.SETTLE, m.SIGNALS, m.ROSTER_QUERY, m.TICK_AHEAD, m.SETTLE_AHEAD,
                      m.SIGNALS_AHEAD)
#: What the inverter's service (hometwin.runtime.balancer) does besides.
_INVERTER_PUBLISH = (m.TICK_DONE, m.TICK_WINDOW, m.SETTLE, m.FLOWS, m.ROSTER, m.ROSTER_QUERY, m.RUN_FAILED,
                     m.TICK_AHEAD, m.SETTLE_AHEAD, m.SIGNALS)
_INVERTER_SUBSCRIBE = (m.TICK, m.SIGNALS, m.REQUEST, m.STORAGE, m.SIGNALS_AHEAD, m.REQUEST_AHEAD, m.ANNOUNCE,
                       m.SESSION_ON_LEAVE, m.RUN_DONE)
_INVERTER_REGISTER = (m.ROSTER_GET, m.SETTLE_AHEAD_NOW)
#: Topics whose publisher the services check against the element the packet names.
IDENTIFIED_TOPICS = frozenset((m.SIGNALS, m.REQUEST, m.STORAGE, m.ANNOUNCE, m.SIGNALS_AHEAD, m.REQUEST_AHEAD,
                               m.EVENT, m.TELEMETRY))
CLOCK_OPS = ("pause", "resume", "set_speed", "run_until", "status")
CLOCK_CONTROL_OPS = ("pause", "resume", "set_speed", "run_until")
LAUNCHER_OPS = ("on", "off", "status", "flows")
#: An element's RPCs a viewer may call (read-only) and the controller's besides.
VIEW_RPCS = ("describe", "get")
CONTROL_RPCS = ("set", "snapshot")
#: What a recorder, the launcher and a viewer receive.
_RECORD_SUBSCRIBE = (m.FLOWS, m.RUN_DONE, m.RUN_FAILED, m.ROSTER, m.CLOCK_STATUS_EVENT, m.EVENT)

ACTIONS = ("call", "register", "publish", "subscribe")


def element_authid(name: str) -> str:
    """The principal of element ``name``'s service (its role has the same name)."""
    return ELEMENT_PREFIX + name


def element_of(authid: str | None) -> str | None:
    """The element an authid speaks for (``element.oven`` → ``oven``); None for other principals."""
    if authid and authid.startswith(ELEMENT_PREFIX):
        return authid[len(ELEMENT_PREFIX):]
    return None


@dataclass
class _Perm:
    actions: set[str] = field(default_factory=set)
    disclose: bool = False  # disclose the caller / publisher to the callee / subscribers


@dataclass(frozen=True)
class Role:
    """One role's permissions: URI (a trailing ``.`` = a prefix) → actions, and which disclose."""

    name: str
    perms: dict[str, _Perm]

    def crossbar(self) -> dict[str, Any]:
        out = []
        for uri in sorted(self.perms):
            p = self.perms[uri]
            out.append({"uri": uri, "match": "prefix" if uri.endswith(".") else "exact",
                        "allow": {a: a in p.actions for a in ACTIONS},
                        "disclose": {"caller": p.disclose, "publisher": p.disclose},
                        "cache": True})
        return {"name": self.name, "permissions": out}


class _Builder:
    def __init__(self, name: str):
        self.name = name
        self.perms: dict[str, _Perm] = {}

    def allow(self, action: str, uris: Iterable[str], disclose: bool = False) -> "_Builder":
        """``disclose``: the callee learns the caller.  A publication on an identified topic always
        discloses its publisher: its receivers refuse a packet whose sender they cannot see."""
        for uri in uris:
            p = self.perms.setdefault(uri, _Perm())
            p.actions.add(action)
            p.disclose = p.disclose or disclose or (action == "publish" and uri in IDENTIFIED_TOPICS)
        return self

    def role(self) -> Role:
        # An exact URI under a prefix of the same role gets the prefix's actions too: Crossbar
        # takes the longest match only.
        for pre, pp in self.perms.items():
            if pre.endswith("."):
                for uri, p in self.perms.items():
                    if uri != pre and uri.startswith(pre):
                        p.actions |= pp.actions
        return Role(self.name, self.perms)


def _element_role(name: str, kind: str, everyone: list[str]) -> Role:
    from hometwin.registry import element_class

    cls = element_class(kind)
    b = _Builder(element_authid(name))
    b.allow("publish", _ELEMENT_PUBLISH)
    if cls.outputs:
        b.allow("publish", _SIGNALS_PUBLISH)
    if cls.role.value in ("source", "load"):
        b.allow("publish", _REQUEST_PUBLISH)
    if cls.role.value == "storage":
        b.allow("publish", _STORAGE_PUBLISH)
    if cls.state_quantities:
        b.allow("publish", (m.TELEMETRY,))
    b.allow("subscribe", _ELEMENT_SUBSCRIBE)
    b.allow("register", [m.element_uri(name, "")])
    if kind == "inverter":
        b.allow("publish", _INVERTER_PUBLISH)
        b.allow("subscribe", _INVERTER_SUBSCRIBE)
        b.allow("register", _INVERTER_REGISTER)
        # The optimizer drives the other elements: dispatch, planner ports, plan_stage; a restarted
        # inverter asks them and the clock where the run was settled.
        b.allow("call", [m.element_uri(other, "") for other in everyone if other != name])
        b.allow("call", (m.clock_uri("status"),))
    return b.role()


def roles_for(elements: Iterable[tuple[str, str]]) -> list[Role]:
    """Every role of a realm whose elements are ``(name, kind)`` pairs (disabled ones included:
    ``ctl on`` may start them)."""
    elements = list(elements)
    names = [n for n, _ in elements]
    roles = [_element_role(n, k, names) for n, k in elements]

    clock = _Builder("clock")
    clock.allow("publish", (m.TICK, m.RUN_DONE, m.CLOCK_STATUS_EVENT, m.EVENT))
    clock.allow("subscribe", (m.TICK_DONE, m.RUN_FAILED))
    clock.allow("register", [m.clock_uri(op) for op in CLOCK_OPS])
    clock.allow("call", (m.ROSTER_GET, m.SETTLE_AHEAD_NOW))
    roles.append(clock.role())

    recorder = _Builder("recorder").allow("subscribe", _RECORD_SUBSCRIBE + (m.TELEMETRY,))
    # a restarted recorder asks hometwin up for the settled steps it missed (hometwin.recording.service)
    recorder.allow("call", (m.launcher_uri("flows"),))
    roles.append(recorder.role())

    launcher = _Builder("launcher").allow("subscribe", _RECORD_SUBSCRIBE)
    launcher.allow("register", [m.launcher_uri(op) for op in LAUNCHER_OPS])
    launcher.allow("publish", (m.EVENT,))
    launcher.allow("call", (m.ROSTER_GET, m.clock_uri("status")))
    roles.append(launcher.role())

    def viewer(name: str) -> _Builder:
        b = _Builder(name).allow("subscribe", _RECORD_SUBSCRIBE + (m.SIGNALS, m.TELEMETRY))
        b.allow("call", (m.ROSTER_GET, m.clock_uri("status"), m.launcher_uri("status")))
        b.allow("call", [m.element_uri(n, op) for n in names for op in VIEW_RPCS])
        return b

    roles.append(viewer("viewer").role())
    ctl = viewer("controller")
    ctl.allow("call", [m.clock_uri(op) for op in CLOCK_CONTROL_OPS], disclose=True)
    ctl.allow("call", [m.launcher_uri(op) for op in ("on", "off")], disclose=True)
    ctl.allow("call", [m.element_uri(n, op) for n in names for op in CONTROL_RPCS], disclose=True)
    roles.append(ctl.role())
    return roles


def home_elements(home: Any) -> list[tuple[str, str]]:
    return [(el.name, el.kind) for el in home.spec.elements]


def principals_for(elements: Iterable[tuple[str, str]]) -> list[str]:
    """Every authid of a realm: one per element, then the system principals."""
    return [element_authid(n) for n, _ in elements] + list(SYSTEM_PRINCIPALS)


def merge_roles(*role_lists: list[Role]) -> list[Role]:
    """Roles of several homes on one router (tests share one): same-named roles are united."""
    merged: dict[str, _Builder] = {}
    for roles in role_lists:
        for r in roles:
            b = merged.setdefault(r.name, _Builder(r.name))
            for uri, p in r.perms.items():
                for a in p.actions:
                    b.allow(a, [uri], disclose=p.disclose)
    return [b.role() for b in merged.values()]


# -- credentials ---------------------------------------------------------------------------------

def new_secrets(authids: Iterable[str]) -> dict[str, str]:
    """A fresh random secret per principal."""
    return {a: _secrets.token_urlsafe(SECRET_BYTES) for a in authids}


def write_credentials(folder: str | Path, secrets: dict[str, str]) -> Path:
    """One file per principal (``folder/<authid>``): folder 0700, files 0600, written atomically;
    files of principals no longer named are removed (a folder belongs to one realm)."""
    from hometwin.runtime.state import write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for authid, secret in secrets.items():
        write_atomic(folder / authid, secret, mode=0o600)
    for p in folder.iterdir():
        if p.is_file() and p.name not in secrets and not p.name.startswith("."):
            p.unlink()
    return folder


class CredentialError(ValueError):
    """A secret could not be read (never says what the file held)."""


def read_secret(folder: str | Path, authid: str) -> str:
    """The secret of ``authid`` from ``folder/<authid>`` (a regular file, at most
    :data:`MAX_SECRET_BYTES`); the error names the file and the rule, never its content."""
    path = Path(folder) / authid
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CredentialError(f"no credentials for {authid!r}: {path} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CredentialError(f"credentials {path} must be a regular file")
    if st.st_size > MAX_SECRET_BYTES or st.st_size == 0:
        raise CredentialError(f"credentials {path} must hold one secret (1–{MAX_SECRET_BYTES} bytes)")
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise CredentialError(f"credentials {path} are not readable text") from None
    if not text:
        raise CredentialError(f"credentials {path} are empty")
    return text


def read_credentials(folder: str | Path, authids: Iterable[str]) -> dict[str, str]:
    """Every named principal's secret (the router's view of a credentials folder)."""
    return {a: read_secret(folder, a) for a in authids}


def wampcra_users(secrets: dict[str, str]) -> dict[str, Any]:
    """Crossbar's static WAMP-CRA principal table (each principal's role has its authid's name)."""
    return {"type": "static", "users": {a: {"secret": s, "role": a} for a, s in sorted(secrets.items())}}


def authentication(authid: str, secret: str) -> dict[str, Any]:
    """An autobahn ``Component``'s ``authentication`` for this principal."""
    return {"wampcra": {"authid": authid, "secret": secret}}


# -- the table in docs/security.md ---------------------------------------------------------------

def roles_table(elements: Iterable[tuple[str, str]]) -> str:
    """Markdown: every role of a realm with ``elements`` and what it may do on which URIs."""
    lines = ["| role | call | register | publish | subscribe |", "|---|---|---|---|---|"]
    for r in roles_for(elements):
        cells = []
        for a in ACTIONS:
            shown = [f"`{u}{'*' if u.endswith('.') else ''}`"
                     + (" (disclosed)" if p.disclose and a in ("publish", "call") else "")
                     for u, p in sorted(r.perms.items()) if a in p.actions]
            cells.append(", ".join(shown) or "–")
        lines.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def claimed_authid(uri: str, payload: Any) -> str | None:
    """The principal a packet on an identified topic says published it: the element it names
    (``element.<name>``), or a ``ControlEvent``'s ``source``; None when it names none."""
    if not isinstance(payload, dict):
        return None
    if uri == m.EVENT:
        src = payload.get("source")
        return src if isinstance(src, str) else None
    name = payload.get("element")
    return element_authid(name) if isinstance(name, str) else None
