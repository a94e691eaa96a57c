"""POST micro-benchmark: httpx default transport vs LeanTransport. Prints figures, asserts nothing.

The server is a minimal asyncio HTTP/1.1 responder answering ``{}`` with keep-alive, in its own
process (so its CPU is not counted against the client's). The client posts form bodies like a
real newCall (``user[]`` included), with the headers zammad.py sends, through the same
``stream()`` + ``aiter_raw()`` read as ``ZammadClient``; again with the URL parsed once into an
``httpx.URL`` (httpx re-parses a str URL on every request); then through ``ZammadClient.post``
itself (its ``_http`` swapped for a client with the transport under test: bench-only).

CPU ms/post is the client process's CPU time (time.process_time) over the run / posts.

    .venv/bin/python bench/post.py [--posts 5000] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cti_bridge._transport import LeanTransport  # noqa: E402
from cti_bridge.config import Secret, ZammadConfig  # noqa: E402
from cti_bridge.events import CtiEvent, form_items  # noqa: E402
from cti_bridge.zammad import ZammadClient  # noqa: E402  (also settles the sniffio import)

TOKEN = "bench-token"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "Content-Type": "application/x-www-form-urlencoded",
    "User-Agent": "cti-bridge",
}


async def _serve() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def _event(i: int) -> CtiEvent:
    return {
        "event": "newCall",
        "direction": "in",
        "callId": f"1732549{i:06d}.{i}",
        "from": "4930111222",
        "to": "4930999000",
        "user[]": ["Agent Smith"],
    }


async def _run(
    posters: int, total: int, post: Callable[[CtiEvent], Awaitable[None]]
) -> tuple[float, float]:
    events = [_event(i) for i in range(total)]
    it = iter(events)

    async def poster() -> None:
        for ev in it:
            await post(ev)

    for ev in events[:50]:  # warm-up: connections, imports, caches
        await post(ev)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(posters)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return total / wall, cpu * 1000 / total


def _client(url: str, lean: bool, conns: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=LeanTransport(max_connections=conns) if lean else None,
        timeout=httpx.Timeout(5.0),
        follow_redirects=False,
        trust_env=False,
        headers=HEADERS,
        limits=httpx.Limits(max_connections=conns, max_keepalive_connections=conns),
    )


MODES = {
    "stream": "httpx stream",
    "stream-url": "httpx stream, httpx.URL made once",
    "zammad": "ZammadClient.post",
}


async def bench(port: int, total: int, posters: int, lean: bool, mode: str) -> str:
    url = f"http://127.0.0.1:{port}/api/v1/cti/{TOKEN}"
    target: str | httpx.URL = httpx.URL(url) if mode == "stream-url" else url
    conns = posters + 4  # as ZammadClient sizes its pool
    http = _client(url, lean, conns)
    if mode == "zammad":
        zc = ZammadClient(ZammadConfig(url=Secret(url), timeout=5.0), max_connections=conns)
        await zc._http.aclose()
        zc._http = http  # bench-only swap; the real wiring is one line in ZammadClient

        async def post(ev: CtiEvent) -> None:
            await zc.post(ev)
    else:

        async def post(ev: CtiEvent) -> None:
            async with http.stream("POST", target, content=urlencode(form_items(ev))) as resp:
                async for _ in resp.aiter_raw():
                    pass
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}")

    try:
        rate, cpu_ms = await _run(posters, total, post)
    finally:
        await http.aclose()
    name = f"{MODES[mode]}, {'LeanTransport' if lean else 'httpx default'}"
    return f"{name:<52} posters={posters}  {rate:6.0f} posts/s  {cpu_ms:6.3f} CPU ms/post"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"{args.posts} posts per run, server pid {server.pid} on 127.0.0.1:{port}")
        for mode in MODES:
            for posters in args.concurrency:
                for lean in (False, True):
                    print(asyncio.run(bench(port, args.posts, posters, lean, mode)))
    finally:
        server.terminate()
        server.wait(timeout=5)


if __name__ == "__main__":
    main()
