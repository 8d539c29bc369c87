"""Small autobahn (asyncio) helpers shared by every service: transports, handlers, running."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import struct
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

import numpy as np
from autobahn.asyncio.component import Component
from autobahn.wamp.types import SubscribeOptions
from pydantic import BaseModel

from hometwin.runtime.messages import Rejections

log = logging.getLogger("hometwin.runtime")


#: How a service retries reaching the router (it may start after the services, or be restarted
#: while they run): for as long as it takes, at most 2 s apart, with one log line (:func:`component`).
#: Whoever started the router decides when it is gone for good (``hometwin up`` stops everything).
RETRY = {"max_retries": -1, "initial_retry_delay": 0.2, "max_retry_delay": 2.0}

#: A service that lost its router exits with this code (EX_TEMPFAIL) once it has left, its state
#: written (``--state-dir``): whoever runs it starts it again (``hometwin up``, the kubelet), and
#: the new process rejoins when the router is back, on the restart path that is tested for a
#: crashed service (state restored, the clock asks where the run is).  Rejoining in the same
#: process would need every service's ``on_join`` to be safe to run twice.
EXIT_ROUTER_LOST = 75
#: Exit code of a service the router refused (wrong or unknown credentials): retrying cannot help.
EXIT_REFUSED = 77


def transport(url: str, ca_file: str | None = None) -> dict[str, Any]:
    """Autobahn transport config for ``rs://host:port`` (RawSocket, msgpack), ``rs+unix:///path``
    (RawSocket on a Unix socket) or ``ws://…`` (WebSocket); ``rss://`` and ``wss://`` over TLS,
    the router's certificate checked against ``ca_file`` (else the system's trust store)."""
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "rs+unix":
        return {"type": "rawsocket", "url": url, "endpoint": {"type": "unix", "path": parsed.path},
                "serializer": "msgpack", **RETRY}
    tls: dict[str, Any] | None = None
    if scheme in ("rss", "wss"):
        tls = {"hostname": parsed.hostname or "localhost"}
        if ca_file is not None:
            tls["trust_root"] = str(ca_file)
    elif ca_file is not None:
        raise ValueError(f"--ca-file is for rss:// or wss:// (TLS) router URLs, not {scheme}://")
    if scheme in ("rs", "rss", "ws", "wss"):
        out: dict[str, Any] = {"url": url, **RETRY}
        if tls is not None:
            port = parsed.port or (443 if scheme == "wss" else 8081)
            out["endpoint"] = {"type": "tcp", "host": parsed.hostname, "port": port, "tls": tls}
        if scheme.startswith("rs"):
            return {"type": "rawsocket", "serializer": "msgpack", **out}
        return {"type": "websocket", "serializers": ["msgpack"], **out}
    raise ValueError(f"router URL must start with rs://, rss://, rs+unix://, ws:// or wss:// (got {url!r})")


class Credentials:
    """Who a session joins as: a principal and its secret (WAMP-CRA, hometwin.auth)."""

    def __init__(self, authid: str, secret: str):
        self.authid, self._secret = authid, secret

    def authentication(self) -> dict[str, Any]:
        from hometwin.auth import authentication

        return authentication(self.authid, self._secret)

    def __repr__(self) -> str:  # never the secret
        return f"Credentials({self.authid!r})"

    @classmethod
    def from_folder(cls, folder: str | Any, authid: str) -> "Credentials":
        """``folder/<authid>`` (hometwin.auth.read_secret: a regular, small file; errors never
        show its content)."""
        from hometwin.auth import read_secret

        return cls(authid, read_secret(folder, authid))


def component(url: str, realm: str, quick_ack: bool = True, credentials: Credentials | None = None,
              ca_file: str | None = None) -> Component:
    """An autobahn asyncio component for ``url``/``realm`` joining as ``credentials`` (WAMP-CRA;
    without, anonymously — which a hometwin router refuses); see :func:`acknowledge_at_once`.

    While the router cannot be reached (not started yet, restarting) it retries quietly
    (:data:`RETRY`): one log line when it finds the router unreachable, one when it is back."""
    comp = Component(transports=[transport(url, ca_file)], realm=realm,
                     authentication=credentials.authentication() if credentials is not None else None,
                     is_fatal=_refused)
    comp.on("connect", lambda session, proto: one_write_per_frame(proto))
    if quick_ack:
        comp.on("connect", lambda session, proto: acknowledge_at_once(proto))
    away: list[float] = []  # when the router was first found unreachable (this outage)

    def unreachable(_comp: Any, exc: Any) -> None:
        # (a connection that was there and is lost is not an OSError: its session ends, and
        # run_component / the launcher say so in their words)
        if not away and isinstance(exc, OSError):
            away.append(time.monotonic())
            log.warning("router at %s unreachable (%s); retrying every %.0f s until it is back", url,
                        str(exc).strip() or type(exc).__name__, RETRY["max_retry_delay"])

    def joined(_session: Any, _details: Any) -> None:
        if away:
            log.info("router at %s reached again after %.0f s", url, time.monotonic() - away.pop())

    comp.on("connectfailure", unreachable)
    comp.on("join", joined)
    return comp


def _refused(exc: BaseException) -> bool:
    """The router refused this session (not authorized, no such realm …): retrying cannot help,
    and with :data:`RETRY` unbounded it would go on for good, a log line every 2 s.  A refused or
    lost connection (an OSError, TransportLost) is retried."""
    from autobahn.wamp.exception import ApplicationError

    return isinstance(exc, ApplicationError)


def one_write_per_frame(proto: Any) -> bool:
    """Send each RawSocket frame with one ``write`` (one ``send`` system call), not two.

    Why: autobahn's asyncio ``PrefixProtocol.sendString`` writes the 4-byte length prefix
    and the message as two ``transport.write`` calls.  asyncio sends at once whatever
    finds its buffer empty, so every WAMP message went out as two sends, and the router
    could wake up for the prefix alone.  A send is cheap here (~3 µs); what one frame per
    send saves is the receiver's extra wake-up, which was not measured on its own.  The
    frame's bytes are the same.
    Returns False for transports that are not RawSocket (WebSocket frames itself).
    """
    fmt = getattr(proto, "prefix_format", None)
    limit = getattr(proto, "max_length_send", None)
    if fmt is None or limit is None or not callable(getattr(proto, "sendString", None)):
        return False
    pack = struct.Struct(fmt).pack

    def send_string(data: bytes) -> None:
        if len(data) > limit:
            raise ValueError("Data too big")
        proto.transport.write(pack(len(data)) + data)

    proto.sendString = send_string  # looked up on the instance by send()
    return True


def acknowledge_at_once(proto: Any) -> bool:
    """Acknowledge every TCP segment from the router at once (Linux ``TCP_QUICKACK``).

    Why: Crossbar's Twisted transports do not set ``TCP_NODELAY`` on the sockets to
    its clients, so Nagle's algorithm holds a small event (the next ``Tick``) until the
    previous one (this window's ``Settle``) is acknowledged — and a client that does
    not answer acknowledges only when its kernel's delayed-ACK timer fires, 40 ms
    later.  That stall, not CPU, made single-step windows 40–50 ms each.  Re-arming
    ``TCP_QUICKACK`` after every read (the kernel clears it on its own) makes the
    client acknowledge at once, so the router's next frame leaves immediately.
    Returns False where the option does not exist (not Linux, not TCP).
    """
    opt = getattr(socket, "TCP_QUICKACK", None)
    transport_ = getattr(proto, "transport", None)
    sock = transport_.get_extra_info("socket") if transport_ is not None else None
    if opt is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    received = proto.data_received

    def data_received(data: bytes) -> None:
        received(data)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
        except OSError:  # the connection is closing
            pass

    proto.data_received = data_received  # asyncio looks it up on the instance for every read
    try:
        sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
    except OSError:
        return False
    return True


def handler(uri: str, fn: Callable[[Any], None], rejections: Rejections,
            count: Callable[[str, str], None] | None = None,
            claimed: Callable[[Any], str | None] | None = None) -> Callable[..., None]:
    """A WAMP event handler taking exactly one positional payload; anything else is rejected.

    With ``claimed`` (the principal a payload says sent it, :func:`hometwin.auth.claimed_authid`)
    the subscription asks for the publisher's identity (``SubscribeOptions(details=True)``, which
    the router discloses on these topics) and an event whose publisher is not that principal is
    rejected as ``forged`` and counted: an element can publish on the shared topics, but only as
    itself."""

    def on_event(*args: Any, **kwargs: Any) -> None:
        if count is not None:
            count("in", uri)
        details = kwargs.pop("details", None) if claimed is not None else None
        if len(args) != 1 or kwargs:
            rejections.reject(uri, "malformed", f"expected one positional argument, got {len(args)} and {sorted(kwargs)}")
            return
        if claimed is not None:
            said = claimed(args[0])
            sender = getattr(details, "publisher_authid", None)
            if said is None or sender != said:
                rejections.reject(uri, "forged", f"published by {sender or 'an undisclosed publisher'} "
                                                 f"as {str(said)[:80]}")
                return
        try:
            fn(args[0])
        except Exception:  # a bug in our handler must not kill the session
            log.exception("error handling %s", uri)

    return on_event


def subscribe(session: Any, uri: str, fn: Callable[[Any], None], rejections: Rejections,
              count: Callable[[str, str], None] | None = None) -> Any:
    """Subscribe ``fn`` to ``uri`` through :func:`handler`; on the topics whose packets name their
    sender (:data:`hometwin.auth.IDENTIFIED_TOPICS`) with the publisher checked."""
    from hometwin.auth import IDENTIFIED_TOPICS, claimed_authid

    if uri in IDENTIFIED_TOPICS:
        return session.subscribe(handler(uri, fn, rejections, count, claimed=lambda p: claimed_authid(uri, p)),
                                 uri, options=SubscribeOptions(details=True))
    return session.subscribe(handler(uri, fn, rejections, count), uri)


def plain(value: Any) -> Any:
    """msgpack-safe copy (numpy → Python, tuples → lists, pydantic models → their JSON data)."""
    if isinstance(value, BaseModel):  # a nested config value (a weather source, timers) set over RPC
        return plain(value.model_dump(mode="json"))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def autobahn_errors_only(out: Any) -> None:
    """Log autobahn's errors to ``out``, not its notes ("trying transport …"); once per process."""
    import txaio

    txaio.use_asyncio()
    txaio.start_logging(level="error", out=out)


def quiet_stop(loop: asyncio.AbstractEventLoop) -> None:
    """From here on this process is stopping on purpose: keep autobahn's shutdown noise out of the logs.

    Why: autobahn's asyncio ``Component`` reports even a clean close after ``leave()`` as
    "Connection failed: TransportLost: failed to complete connection" (its connection-lost
    hook runs before the session's disconnect event, which it schedules) and then starts
    to reconnect; cancelling that reconnect delay at loop close raises inside txaio
    (``_done_f`` is already gone), and the abandoned tasks are reported as "Task was
    destroyed but it is pending!".  None of it is news once a stop was asked for, so
    txaio's loggers go to ``critical`` and the loop's leftover errors go to our DEBUG log.
    """
    import txaio

    txaio.set_global_log_level("critical")

    def leftover(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log.debug("after stop: %s", context.get("message") or context.get("exception"))

    loop.set_exception_handler(leftover)


async def stop_component(comp: Component, timeout_s: float = 3.0) -> None:
    """Leave the realm (bounded by ``timeout_s``) with :func:`quiet_stop` in force, and no reconnecting."""
    quiet_stop(asyncio.get_running_loop())
    for t in getattr(comp, "_transports", ()):  # the clean close would otherwise start a reconnect
        t.failed()  # autobahn's own "do not try this transport again"
    try:
        await asyncio.wait_for(comp.stop(), timeout_s)
    except Exception:
        pass  # the router is gone already, or did not answer in time: we are stopping anyway


def cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending (status loops, a reconnect delay) and let them finish."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def run_component(comp: Component, stop: asyncio.Event | None = None,
                  extra: Callable[[asyncio.AbstractEventLoop], Any] | None = None,
                  linger: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Run one component until it is done, SIGTERM/SIGINT, or ``stop`` is set.  When stopped, it
    awaits ``linger()`` first with the session still up (its handlers go on: a last Settle on its
    way is still taken), e.g. until /metrics has been scraped once more
    (:meth:`hometwin.runtime.metrics.ServiceMetrics.linger`)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = stop or asyncio.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _stop)
        except (NotImplementedError, RuntimeError):
            pass

    lost = asyncio.Event()  # the router went away after this service had joined
    joined: list[bool] = []

    def on_disconnect(_session: Any, *_: Any, **__: Any) -> None:
        if joined and not stop.is_set():
            txaio_quiet()  # autobahn's "Connection failed: TransportLost": our one line says it
            lost.set()

    refused: list[str] = []  # the router turned this session away before it joined (credentials)

    def on_leave(_session: Any, details: Any) -> None:
        if not joined and not refused:
            refused.append(f"{getattr(details, 'reason', None) or 'refused'}"
                           + (f" ({details.message})" if getattr(details, "message", None) else ""))
            stop.set()

    comp.on("join", lambda *_: joined.append(True))
    comp.on("disconnect", on_disconnect)
    comp.on("leave", on_leave)

    async def main() -> None:
        done = comp.start(loop)
        if extra is not None:
            extra(loop)
        stopper = asyncio.ensure_future(stop.wait())
        lost_w = asyncio.ensure_future(lost.wait())
        await asyncio.wait([asyncio.ensure_future(done), stopper, lost_w], return_when=asyncio.FIRST_COMPLETED)
        if lost.is_set() and not stop.is_set():
            log.warning("lost the router at %s: leaving (exit code %d); started again, this service rejoins once "
                        "the router is back", url_of(comp), EXIT_ROUTER_LOST)
            await stop_component(comp)
            raise SystemExit(EXIT_ROUTER_LOST)
        if refused:
            txaio_quiet()
            log.error("the router at %s refused this session: %s; are these the credentials of this home's "
                      "router (--credentials)? Not retrying (exit code %d)", url_of(comp), refused[0][:300],
                      EXIT_REFUSED)
            await stop_component(comp)
            raise SystemExit(EXIT_REFUSED)
        if stop.is_set():
            if linger is not None:
                await linger()
            await stop_component(comp)
        else:
            exc = done.exception() if done.done() and not done.cancelled() else None
            if exc is not None:
                raise exc

    try:
        loop.run_until_complete(main())
    finally:
        _ignore_stop_signals(loop)
        try:
            cancel_leftovers(loop)
        finally:
            loop.close()


def url_of(comp: Component) -> str:
    """The router URL a component connects to (its first transport's)."""
    transports = getattr(comp, "_transports", ())
    return transports[0].url if transports else "?"


def txaio_quiet() -> None:
    """autobahn's own log lines off (a loss of the router is reported in our words instead)."""
    import txaio

    txaio.set_global_log_level("critical")


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """From here on SIGTERM/SIGINT are ignored: the component has stopped.  Closing the loop would
    put Python's default handlers back, and a late signal — Ctrl-C reaches every process of
    ``hometwin up`` and the launcher's SIGTERM follows — then raised ``KeyboardInterrupt`` in the
    middle of the exit (a traceback in the log, or a last state write cut short).  Both signals
    are blocked while the handlers are swapped, so none slips through in between."""
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    except (AttributeError, ValueError, OSError):  # not the main thread's business, or no sigmask
        return
    try:
        for sig in stop_signals:
            try:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
