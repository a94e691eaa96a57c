"""POST micro-benchmark: ZammadClient.post next to a bare httpx baseline. Prints, asserts nothing.

The server is a minimal asyncio HTTP/1.1 responder answering ``{}`` with keep-alive, in its own
process (so its CPU is not counted against the client's). Each client posts form bodies like a
real newCall (``user[]`` included) with the headers zammad.py sends:
  httpx                 httpx.AsyncClient with defaults (URL parsed once), read by stream(): the
                        floor ZammadClient builds on
  ZammadClient.post     the whole client the daemon uses: form encoding, httpx with its capped
                        read and refusing cookie jar, answer parsing

CPU ms/post is the client process's CPU time (time.process_time) over the run / posts; the
difference between the two lines is what zammad.py adds on top of httpx.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cti_bridge.config import Secret, ZammadConfig  # noqa: E402
from cti_bridge.events import CtiEvent  # noqa: E402
from cti_bridge.zammad import ZammadClient, form_body  # noqa: E402

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


Post = Callable[[CtiEvent], Awaitable[None]]


async def _httpx(url: str, conns: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(5.0),
        follow_redirects=False,
        trust_env=False,
        headers=HEADERS,
        limits=httpx.Limits(max_connections=conns, max_keepalive_connections=conns),
    )
    target = httpx.URL(url)

    async def post(ev: CtiEvent) -> None:
        async with client.stream("POST", target, content=form_body(ev)) as resp:
            async for _ in resp.aiter_raw():
                pass
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")

    return post, client.aclose


async def _zammad(url: str, conns: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    client = ZammadClient(ZammadConfig(url=Secret(url), timeout=5.0), max_connections=conns)

    async def post(ev: CtiEvent) -> None:
        await client.post(ev)

    return post, client.aclose


MODES = {"httpx": _httpx, "ZammadClient.post": _zammad}


async def bench(port: int, total: int, posters: int, mode: str) -> str:
    url = f"http://127.0.0.1:{port}/api/v1/cti/{TOKEN}"
    post, close = await MODES[mode](url, posters + 4)  # as ZammadClient sizes its pool
    try:
        rate, cpu_ms = await _run(posters, total, post)
    finally:
        await close()
    return f"{mode:<20} posters={posters}  {rate:6.0f} posts/s  {cpu_ms:6.3f} CPU ms/post"


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
                print(asyncio.run(bench(port, args.posts, posters, mode)))
    finally:
        server.terminate()
        server.wait(timeout=5)


if __name__ == "__main__":
    main()
