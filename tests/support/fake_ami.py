"""A fake Asterisk manager interface: a real asyncio TCP server on 127.0.0.1.

Behaviour follows asterisk-ami.md §6 (banner, Login/FullyBooted, Permission denied before
login, ActionID echoed on responses, list items and the Complete event, Ping/Pong, Hangup,
Logoff, Events/Filter, UserEvent). Test hooks: push events or raw (hostile) bytes, optionally
split at chosen byte offsets so that they arrive in separate reads; refuse logins; deny
chosen actions; drop every client; stall (keep TCP open but answer nothing: half-open);
stop and restart on the same port; stream a byte blob as fast as the client reads (bench).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cti_bridge.ami.wanted import WANTED_EVENTS
from cti_bridge.config import AmiConfig, Secret

EOL = "\r\n"


def frame(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """One AMI frame (CRLF lines and the blank line) from headers in order."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    return ("".join(f"{k}: {v}{EOL}" for k, v in items) + EOL).encode("utf-8")


@dataclass
class _Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    logged_in: bool = False
    events_on: bool = True
    filters: list[tuple[bool, re.Pattern[str]]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wants(self, payload: str) -> bool:
        if not self.events_on:
            return False
        includes = [p for inc, p in self.filters if inc]
        excludes = [p for inc, p in self.filters if not inc]
        if includes and not any(p.search(payload) for p in includes):
            return False
        return not any(p.search(payload) for p in excludes)


class FakeAmi:
    """Fake Asterisk AMI. ``await start()``, use, ``await stop()`` (or ``async with``)."""

    def __init__(
        self,
        username: str = "zammad",
        secret: str = "s3cret",
        *,
        version: str = "5.0.2",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username = username
        self.secret = secret
        self.version = version
        self.host = host
        self.port = port
        self.accept_logins = True
        self.fully_booted = True  # send FullyBooted after login (user can read system)
        self.denied: set[str] = set()  # lower-case action names answered "Permission denied"
        self.channels: list[dict[str, str]] = []  # CoreShowChannels answer
        self.list_interleave: list[dict[str, str]] = []  # async events sent inside the list
        self.stalled = False  # answer nothing, send nothing (half-open peer)
        self.hangups: list[dict[str, str]] = []
        self.originates: list[dict[str, str]] = []  # Originate actions queued (lower-case keys)
        # What the OriginateResponse of every Originate reports, and how long after the answer.
        self.originate_outcome: tuple[str, str] = ("Success", "4")  # (Response, Reason)
        self.originate_delay = 0.05
        self.actions: list[dict[str, str]] = []  # every action received, secret removed
        self.logins_ok = 0
        self.logins_failed = 0
        self.clients: list[_Client] = []
        self._server: asyncio.base_events.Server | None = None
        self._login_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> FakeAmi:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every client (the port can be reused by ``start``)."""
        if self._server is not None:
            self._server.close()
        self.disconnect_all()
        # Handlers end on their own once their transport is aborted; cancelling them would make
        # asyncio's StreamReaderProtocol log the CancelledError.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> FakeAmi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def disconnect_all(self) -> None:
        for client in self.clients:
            client.writer.transport.abort()
        self.clients.clear()

    @property
    def logged_in_clients(self) -> list[_Client]:
        return [c for c in self.clients if c.logged_in and not c.writer.is_closing()]

    async def wait_login(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``logins_ok`` reaches ``count``."""

        async def _wait() -> None:
            while self.logins_ok < count:
                self._login_event.clear()
                await self._login_event.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_for(self, predicate: object, timeout: float = 5.0) -> None:
        """Poll a condition (test helper; bounded)."""
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.005)

    # -- pushing data -----------------------------------------------------------------------

    async def send_event(self, fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Send an event to every logged-in client (Privilege added when missing)."""
        if self.stalled:
            return
        items = list(fields.items() if isinstance(fields, Mapping) else fields)
        if not any(k.lower() == "privilege" for k, _ in items):
            items.insert(1, ("Privilege", "call,all"))
        data = frame(items)
        text = data.decode("utf-8")
        for client in self.logged_in_clients:
            if client.wants(text):
                await self._write(client, data)

    async def send_raw(
        self, data: bytes, split_at: Sequence[int] = (), pause: float = 0.02
    ) -> None:
        """Send bytes as-is to every logged-in client, in pieces cut at ``split_at`` offsets.

        Between pieces the server drains and sleeps, so the client reads them separately.
        """
        cuts = [0, *sorted(split_at), len(data)]
        pieces = [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]
        for client in self.logged_in_clients:
            async with client.lock:
                for i, piece in enumerate(pieces):
                    client.writer.write(piece)
                    await client.writer.drain()
                    if i < len(pieces) - 1:
                        await asyncio.sleep(pause)

    async def stream(self, data: bytes, chunk: int = 65536) -> None:
        """Write a blob to every logged-in client as fast as it reads (bench)."""
        for client in self.logged_in_clients:
            async with client.lock:
                view = memoryview(data)
                for i in range(0, len(view), chunk):
                    client.writer.write(view[i : i + chunk])
                    await client.writer.drain()

    async def shutdown(self) -> None:
        """Asterisk stopping: Shutdown event, then close."""
        await self.send_event(
            [
                ("Event", "Shutdown"),
                ("Privilege", "system,all"),
                ("Shutdown", "Cleanly"),
                ("Restart", "True"),
            ]
        )
        for client in self.clients:
            client.writer.close()

    # -- protocol ---------------------------------------------------------------------------

    async def _write(self, client: _Client, data: bytes) -> None:
        if client.writer.is_closing():
            return
        async with client.lock:
            client.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await client.writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = _Client(reader, writer)
        self.clients.append(client)
        try:
            writer.write(f"Asterisk Call Manager/{self.version}{EOL}".encode())
            while True:
                action = await self._read_action(reader)
                if action is None:
                    break
                if self.stalled:
                    continue
                if not await self._dispatch(client, action):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            if client in self.clients:
                self.clients.remove(client)
            writer.close()

    @staticmethod
    async def _read_action(reader: asyncio.StreamReader) -> list[tuple[str, str]] | None:
        headers: list[tuple[str, str]] = []
        while True:
            line = await reader.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if headers:
                    return headers
                continue
            key, _, value = text.partition(":")
            headers.append((key.strip(), value.strip()))

    async def _reply(self, client: _Client, fields: Iterable[tuple[str, str]]) -> None:
        await self._write(client, frame(fields))

    async def _dispatch(self, client: _Client, headers: list[tuple[str, str]]) -> bool:
        """Answer one action; False closes the connection."""
        lower = {k.lower(): v for k, v in headers}  # keys are case-insensitive in AMI
        name = lower.get("action", "")
        aid = lower.get("actionid")
        ids = [("ActionID", aid)] if aid is not None else []
        self.actions.append({k: v for k, v in lower.items() if k != "secret"})
        act = name.lower()
        if act == "login":
            return await self._login(client, lower, ids)
        if not client.logged_in or act in self.denied:
            await self._reply(
                client, [("Response", "Error"), *ids, ("Message", "Permission denied")]
            )
            return True
        if act == "ping":
            await self._reply(
                client,
                [
                    ("Response", "Success"),
                    *ids,
                    ("Ping", "Pong"),
                    ("Timestamp", "1700000000.123456"),
                ],
            )
        elif act == "logoff":
            await self._reply(
                client, [("Response", "Goodbye"), *ids, ("Message", "Thanks for all the fish.")]
            )
            return False
        elif act == "events":
            client.events_on = lower.get("eventmask", "on").lower() != "off"
            await self._reply(
                client,
                [("Response", "Success"), *ids, ("Events", "On" if client.events_on else "Off")],
            )
        elif act == "filter":
            text = lower.get("filter", "")
            exclude = text.startswith("!")
            client.filters.append((not exclude, re.compile(text[1:] if exclude else text)))
            await self._reply(
                client, [("Response", "Success"), *ids, ("Message", "Filter Added Successfully")]
            )
        elif act == "coreshowchannels":
            await self._core_show_channels(client, ids)
        elif act == "hangup":
            await self._hangup(client, lower, ids)
        elif act == "originate":
            await self._originate(client, lower, ids)
        elif act == "listcommands":
            allowed = [a for a in _ACTIONS if a.lower() not in self.denied]
            await self._reply(
                client,
                [("Response", "Success"), *ids, *((a, f"{a}. (Priv: <none>)") for a in allowed)],
            )
        elif act == "userevent":
            await self._reply(client, [("Response", "Success"), *ids])
            extra = [(k, v) for k, v in headers if k.lower() not in ("action", "actionid")]
            await self.send_event([("Event", "UserEvent"), ("Privilege", "user,all"), *extra])
        else:
            await self._reply(
                client,
                [
                    ("Response", "Error"),
                    *ids,
                    (
                        "Message",
                        f"Invalid/unknown command: {name}. Use Action: ListCommands to show"
                        " available commands.",
                    ),
                ],
            )
        return True

    async def _login(self, client: _Client, h: dict[str, str], ids: list[tuple[str, str]]) -> bool:
        if (
            not self.accept_logins
            or h.get("username") != self.username
            or h.get("secret") != self.secret
        ):
            self.logins_failed += 1
            await self._reply(
                client, [("Response", "Error"), *ids, ("Message", "Authentication failed")]
            )
            return False  # Asterisk closes after a failed login
        client.logged_in = True
        client.events_on = h.get("events", "on").lower() != "off"
        await self._reply(
            client, [("Response", "Success"), *ids, ("Message", "Authentication accepted")]
        )
        if self.fully_booted:
            await self._reply(
                client,
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", "100"),
                    ("LastReload", "100"),
                    ("Status", "Fully Booted"),
                ],
            )
        self.logins_ok += 1
        self._login_event.set()
        return True

    async def _core_show_channels(self, client: _Client, ids: list[tuple[str, str]]) -> None:
        await self._reply(
            client,
            [
                ("Response", "Success"),
                *ids,
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ],
        )
        interleave = list(self.list_interleave)
        for chan in self.channels:
            await self._reply(client, [("Event", "CoreShowChannel"), *ids, *chan.items()])
            if interleave:
                ev = interleave.pop(0)
                items = list(ev.items())
                items.insert(1, ("Privilege", "call,all"))
                await self._reply(client, items)
        for ev in interleave:
            await self._reply(client, [*ev.items()])
        await self._reply(
            client,
            [
                ("Event", "CoreShowChannelsComplete"),
                *ids,
                ("EventList", "Complete"),
                ("ListItems", str(len(self.channels))),
            ],
        )

    async def _hangup(self, client: _Client, h: dict[str, str], ids: list[tuple[str, str]]) -> None:
        name = h.get("channel", "")
        known = [c for c in self.channels if c.get("Channel") == name]
        if not known:
            await self._reply(client, [("Response", "Error"), *ids, ("Message", "No such channel")])
            return
        self.hangups.append({"Channel": name, "Cause": h.get("cause", "")})
        await self._reply(client, [("Response", "Success"), *ids, ("Message", "Channel Hungup")])

    async def _originate(
        self, client: _Client, h: dict[str, str], ids: list[tuple[str, str]]
    ) -> None:
        """Queue it (an asynchronous Originate), then report ``originate_outcome`` as an
        ``OriginateResponse`` event carrying the ActionID, as Asterisk does."""
        if h.get("async", "").lower() not in ("true", "yes", "1"):
            await self._reply(client, [("Response", "Error"), *ids, ("Message", "sync only")])
            return
        self.originates.append(dict(h))
        await self._reply(
            client, [("Response", "Success"), *ids, ("Message", "Originate successfully queued")]
        )
        response, reason = self.originate_outcome

        async def later() -> None:
            await asyncio.sleep(self.originate_delay)
            await self.send_event(
                [
                    ("Event", "OriginateResponse"),
                    ("Privilege", "call,all"),
                    *ids,
                    ("Response", response),
                    ("Channel", h.get("channel", "")),
                    ("Context", h.get("context", "")),
                    ("Exten", h.get("exten", "")),
                    ("Reason", reason),
                    ("Uniqueid", "1700000000.99"),
                    ("CallerIDNum", "<unknown>"),
                    ("CallerIDName", "<unknown>"),
                ]
            )

        task = asyncio.ensure_future(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_ACTIONS = ("Ping", "Logoff", "Events", "Filter", "CoreShowChannels", "Hangup", "Originate")


# -- client-side helpers shared by the AMI tests ----------------------------------------------


def ami_config(server: FakeAmi, **overrides: Any) -> AmiConfig:
    """Client settings for this server, with test-sized (fast) watchdog and retry timers."""
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.username,
        "secret": Secret(server.secret),
        "ping_interval": 0.1,
        # generous: a loaded CI machine must not trip the watchdog by accident
        "ping_timeout": 1.0,
        "reconnect_interval": 0.05,
    }
    fields.update(overrides)
    return AmiConfig(**fields)


class Recorder:
    """Collects what an AmiClient hands out; waits are polled and bounded."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []
        self.resyncs: list[list[dict[str, str]]] = []
        self.states = 0

    def on_event(self, event: dict[str, str]) -> None:
        self.events.append(event)

    def on_resync(self, channels: list[dict[str, str]]) -> None:
        self.resyncs.append(channels)

    def on_state(self) -> None:
        self.states += 1

    def named(self, name: str) -> list[dict[str, str]]:
        return [e for e in self.events if e.get("Event") == name]

    async def wait(self, predicate: object, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.005)

    async def wait_marker(self, marker: str, timeout: float = 5.0) -> dict[str, str]:
        """Wait for the UserEvent sent by :func:`marker_event` with this name."""
        await self.wait(lambda: any(e.get("UserEvent") == marker for e in self.events), timeout)
        return next(e for e in self.events if e.get("UserEvent") == marker)


#: What test clients let through: the product's own list plus ``UserEvent``, which only the
#: test markers below use (the bridge itself reads no UserEvent).
TEST_WANTED_EVENTS = WANTED_EVENTS | {"UserEvent"}


def marker_event(marker: str) -> bytes:
    return frame([("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", marker)])
