"""The services' transports: quick ACKs on TCP (see ``acknowledge_at_once``), URLs.

Crossbar does not set ``TCP_NODELAY`` on its sockets, so without quick ACKs every
small event that follows an unanswered one waits ~40 ms for the client's delayed
ACK.  The latency itself is measured in ``bench/bench_runtime.py`` (no wall-clock
figures in tests); here: the hook is installed and re-armed after every read.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from hometwin.runtime.wamp import acknowledge_at_once, transport

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.quickack_after_read: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got.append(data)


async def _pair(family: str) -> tuple[Sink, asyncio.AbstractServer, asyncio.BaseTransport, str]:
    loop = asyncio.get_running_loop()
    writer_side: list[asyncio.Transport] = []

    class Peer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            writer_side.append(transport)  # type: ignore[arg-type]

    accept = Peer

    if family == "tcp":
        server = await loop.create_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, sink = await loop.create_connection(Sink, "127.0.0.1", port)
    else:
        import tempfile

        path = tempfile.mktemp(prefix="hometwin-test-", suffix=".sock")
        server = await loop.create_unix_server(accept, path)
        _, sink = await loop.create_unix_connection(Sink, path)
    for _ in range(500):
        if writer_side:
            break
        await asyncio.sleep(0.01)
    assert writer_side, "the loopback connection was not accepted"
    return sink, server, writer_side[0], family


async def _exchange(hook: bool) -> list[int]:
    """Request/answer traffic (what puts Linux into delayed-ACK "pingpong" mode); returns
    ``TCP_QUICKACK`` as read right after every read on the client."""
    sink, server, peer, _ = await _pair("tcp")
    if hook:
        assert acknowledge_at_once(sink) is True
    sock = sink.transport.get_extra_info("socket")
    received = sink.data_received  # with the hook: the original runs first, then QUICKACK is set

    def probe(data: bytes) -> None:
        received(data)
        sink.quickack_after_read.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
        sink.transport.write(b"answer")  # the client answers, as a WAMP session does

    sink.data_received = probe  # type: ignore[method-assign]
    for _ in range(30):
        peer.write(b"x" * 64)
        await asyncio.sleep(0.003)
    peer.close()
    server.close()
    assert b"".join(sink.got) == b"x" * 64 * 30  # nothing lost or reordered by the hook
    return sink.quickack_after_read


def test_quick_ack_rearmed_after_every_read() -> None:
    plain = asyncio.run(_exchange(hook=False))
    assert 0 in plain  # the kernel did go into delayed-ACK mode: the probe can see it
    hooked = asyncio.run(_exchange(hook=True))
    assert hooked and all(v == 1 for v in hooked)


def test_quick_ack_not_applied_to_unix_sockets() -> None:
    async def main() -> None:
        sink, server, peer, _ = await _pair("unix")
        assert acknowledge_at_once(sink) is False  # no TCP, no delayed ACK: nothing to do
        peer.write(b"abc")
        await asyncio.sleep(0.05)
        assert sink.got == [b"abc"]
        peer.close()
        server.close()

    asyncio.run(main())


def test_transport_urls() -> None:
    assert transport("rs://127.0.0.1:8081")["type"] == "rawsocket"
    assert transport("ws://127.0.0.1:8080/ws")["type"] == "websocket"
    unix = transport("rs+unix:///run/hometwin/router.sock")
    assert unix["endpoint"] == {"type": "unix", "path": "/run/hometwin/router.sock"}
    with pytest.raises(ValueError, match="rs://"):
        transport("http://127.0.0.1:8080")
