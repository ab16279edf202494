"""A loopback TCP proxy for the tests that cuts connections for real (like Storm's and
asyncpg's test proxies): `cut()` aborts every open connection; `cut_after(b"COMMIT")` lets
the next client packet containing those bytes reach the server, then cuts the client off
before the server's answer comes back (and the server's side a second later)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._cut_after: bytes | None = None
        self._muted: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.cut_done = asyncio.Event()

    async def start(self, port: int = 0) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Abort every proxied connection, both sides, without a clean shutdown."""
        for client, server in list(self._pairs):
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()

    def cut_after(self, marker: bytes) -> None:
        self.cut_done.clear()
        self._cut_after = marker

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._pairs.add(pair)
        await asyncio.gather(
            self._pipe(client_r, server_w, pair, upstream=True),
            self._pipe(server_r, client_w, pair, upstream=False),
            return_exceptions=True,
        )
        self._pairs.discard(pair)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if not upstream and pair in self._muted:
                    continue  # the answer to the marked packet never reaches the client
                if upstream and self._cut_after is not None and self._cut_after in data:
                    self._cut_after = None
                    self._muted.add(pair)
                    writer.write(data)
                    await writer.drain()
                    await asyncio.sleep(0.2)  # the server commits; its answer is never relayed
                    pair[0].transport.abort()
                    # The server's side goes too, later, as a dead client's would: a
                    # session left open forever would look like a leak to the soak.
                    asyncio.get_running_loop().call_later(1.0, pair[1].transport.abort)
                    self.cut_done.set()
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
