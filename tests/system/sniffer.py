"""A recording TCP proxy between a browser and the server, for privacy tests.

Everything the browser sends to the server passes through it: HTTP requests with their bodies,
and WebSocket frames, which browsers mask; the proxy unmasks them so the test can search the
bytes that really left the browser.
"""

from __future__ import annotations

import asyncio
import threading

from tests.stack import free_port


class Sniffer:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.streams: list[bytearray] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sniffer:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        sent = bytearray()
        self.streams.append(sent)

        async def pump(src, dst, record: bytearray | None) -> None:
            try:
                while data := await src.read(65536):
                    if record is not None:
                        record += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, sent), pump(up_reader, writer, None))

    def sent_bytes(self) -> bytes:
        """All bytes the browser sent: HTTP as is, WebSocket payloads unmasked."""
        return b"\n".join(_readable(bytes(stream)) for stream in list(self.streams))


def _readable(stream: bytes) -> bytes:
    head, sep, rest = stream.partition(b"\r\n\r\n")
    if not sep or b"upgrade: websocket" not in head.lower():
        return stream
    return head + sep + b"\n".join(_unmasked_frames(rest))


def _unmasked_frames(data: bytes) -> list[bytes]:
    frames, i = [], 0
    while i + 2 <= len(data):
        length, masked = data[i + 1] & 0x7F, data[i + 1] & 0x80
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        mask = data[i : i + 4] if masked else b"\0\0\0\0"
        i += 4 if masked else 0
        payload = data[i : i + length]
        frames.append(bytes(b ^ mask[k % 4] for k, b in enumerate(payload)))
        i += length
    return frames
