"""FastAGI decision hook: lets Zammad reject an inbound call or rewrite an outbound caller ID.

Why FastAGI and not AMI: ``AGI()`` blocks the channel until we close the socket, so a decision
is applied before ``Dial()`` runs, whereas an AMI action arrives after phones already ring
(docs/asterisk-ami.md#11-acting-on-a-call-ami-is-too-late-fastagi-is-in-time). The dialogue
itself is in :mod:`cti_bridge.agi.wire`, the mapping of Zammad's answer in
:mod:`cti_bridge.agi.decide`; this module holds the listener, one session per connection and
the allow-list.

Dialplan contract (public, documented in the README)::

    same => n,Set(AGISIGHUP=no)
    same => n,AGI(agi://127.0.0.1:4573/newcall[,TO[,QUEUE]])
    same => n,GotoIf($["${CTI_ACTION}" = "reject"]?rejected)   ; optional, AGI already hung up

placed before ``Dial()`` on inbound routes and before the trunk ``Dial()`` on outbound routes.

* Script path: ``newcall``; or ``decide``, identical except that a rejected call is not hung
  up, so the dialplan can branch on ``CTI_ACTION`` itself (``Busy()``, an announcement).
  Any other path gets ``CTI_ACTION=none`` and a log line.
* Argument 1, ``TO`` (optional): the number the call goes to as it will be dialled on the trunk
  (outbound routes pass e.g. ``${EXTEN:1}``). Empty or absent: the channel's extension, or
  ``agi_dnid`` when the extension is not a number (``s`` in macros and FreePBX hooks).
* Argument 2, ``QUEUE`` (optional): a queue name for Zammad's caller-log filter.
* The call is identified by ``CHANNEL(linkedid)`` (asked over AGI, since ``agi_*`` has no
  linkedid), falling back to ``agi_uniqueid``: the same key the AMI tracker uses.

Outcome, always in the channel variable ``CTI_ACTION``:

* ``reject``: ``EXEC Hangup 17`` (busy; PJSIP answers 486 and no phone rings).
* ``dial``: ``CALLERID(num)`` set to Zammad's caller ID (``SET VARIABLE CALLERID(num)`` keeps the
  name, unlike ``SET CALLERID``), as ``+`` and international digits when ``[numbers] region``
  is set (``NumberPlan.caller_id``). A caller ID that is not ``+``/digits is ignored: ``none``.
* ``none``: nothing changed. This is also the answer on a timeout (``[agi] timeout``), an error,
  or an unknown script: the bridge fails open and never holds a call up longer than the timeout.
  If the daemon is down, ``AGI()`` fails at once with ``AGISTATUS=FAILURE`` and the dialplan
  continues as well.

Exposure: the listener is loopback by default. When ``[agi] allow`` lists addresses or networks,
only those peers are served, whatever the listen address; others are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from cti_bridge.agi.decide import ACTIONS, NONE, AgiDecision, Decide, valid_caller_id
from cti_bridge.agi.wire import (
    MAX_ENV_BYTES,
    MAX_ENV_LINES,
    MAX_LINE,
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    agi_command,
    build_request,
    parse_env,
    parse_reply,
    short,
)
from cti_bridge.causes import Q850
from cti_bridge.config import AgiConfig, redact_url, split_listen

log = logging.getLogger(__name__)

#: Script path -> whether the daemon itself hangs up a rejected call.
SCRIPTS = {"newcall": True, "decide": False}
ACTION_VARIABLE = "CTI_ACTION"
#: Q.850 "user busy": PJSIP answers 486, and the cause table maps it to Zammad's ``busy``.
HANGUP_CAUSE_BUSY = Q850.USER_BUSY
MAX_CONNECTIONS = 256

_LINKEDID = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces


def _redacted(exc: BaseException) -> str:
    # A decide() error may quote the Zammad URL (whose path holds the token): redact any URL.
    return f"{type(exc).__name__}: {redact_url(str(exc))[:200]}"


class _Session:
    """One FastAGI dialogue: strict request/reply, tolerant of an unsolicited HANGUP line."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, io_timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.io_timeout = io_timeout
        self.hungup = False

    @contextlib.asynccontextmanager
    async def deadline(self, what: str) -> AsyncIterator[None]:
        """One deadline per exchange, so a peer dripping lines cannot hold us indefinitely."""
        try:
            async with asyncio.timeout(self.io_timeout):
                yield
        except TimeoutError:
            raise AgiProtocolError(f"peer stalled during {what}") from None

    async def readline(self) -> str:
        try:
            raw = await self.reader.readline()
        except ValueError:  # StreamReader limit overrun: a line longer than MAX_LINE
            raise AgiProtocolError("line too long") from None
        if not raw.endswith(b"\n"):
            raise AgiProtocolError("connection closed by peer")
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def read_env(self) -> dict[str, str]:
        lines: list[str] = []
        size = 0
        async with self.deadline("the environment"):
            while line := await self.readline():
                size += len(line) + 1
                lines.append(line)
                if len(lines) > MAX_ENV_LINES or size > MAX_ENV_BYTES:
                    raise AgiProtocolError("environment too large")
        return parse_env(lines)

    async def command(self, verb: str, *args: str) -> AgiReply:
        async with self.deadline(verb):
            self.writer.write((agi_command(verb, *args) + "\n").encode())
            await self.writer.drain()
            while (line := await self.readline()) == "HANGUP":
                # Sent when AGISIGHUP is not "no"; the reply to our command still follows.
                self.hungup = True
            reply = parse_reply(line)
            if line.startswith("520-"):  # usage text until "520 End of proper usage."
                for _ in range(200):
                    if (await self.readline()).startswith("520 "):
                        break
                else:
                    raise AgiProtocolError("520 usage text too long")
        if reply.code == 511:
            self.hungup = True
        return reply


class AgiServer:
    """Serves ``AGI(agi://host:port/newcall)`` requests, asking ``decide`` for each call."""

    def __init__(
        self,
        cfg: AgiConfig,
        decide: Decide,
        *,
        max_connections: int = MAX_CONNECTIONS,
        io_timeout: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self._decide = decide
        self._max_connections = max_connections
        self._io_timeout = io_timeout
        self._allow = parse_allow(cfg.allow)
        host, _ = cfg.host_port
        if not self._allow and not _is_loopback(host):
            # Config validation already refuses this; a programmatic caller must not bypass it.
            raise ValueError("AGI listen address is not loopback and no allow list is set")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.requests = 0
        self.decisions: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        self.timeouts = 0
        self.errors = 0
        self.dropped = 0
        self.refused = 0

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            return self.cfg.host_port
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        host, port = split_listen(self.cfg.listen)
        self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_LINE)
        log.info("FastAGI listening on %s:%d", *self.address)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting; calls being decided get ``grace`` (default: the timeout) to finish."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            wait = self.cfg.timeout + 0.5 if grace is None else grace
            await asyncio.wait(list(self._tasks), timeout=wait)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def snapshot(self) -> dict[str, Any]:
        host, port = self.address
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {
            "listen": listen,
            "requests": self.requests,
            "decisions": dict(self.decisions),
            "timeouts": self.timeouts,
            "errors": self.errors,
            "dropped": self.dropped,
            "refused": self.refused,
            "active": self.active,
        }

    def _peer_allowed(self, peer: Any) -> bool:
        if not self._allow:
            return True
        try:
            ip = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._allow)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not self._peer_allowed(peer):
            self.refused += 1
            log.warning("FastAGI: refused connection from %s (not in [agi] allow)", peer)
            writer.transport.abort()
            return
        if len(self._tasks) >= self._max_connections:
            self.dropped += 1
            log.warning("FastAGI: %d connections open, dropping %s", len(self._tasks), peer)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(_Session(reader, writer, self._io_timeout))
        except AgiProtocolError as exc:
            self.dropped += 1
            log.warning("FastAGI: dropped connection from %s: %s", peer, exc)
        except (ConnectionError, TimeoutError) as exc:
            self.errors += 1
            log.warning("FastAGI: connection from %s lost: %s", peer, type(exc).__name__)
        except Exception as exc:  # a bug here must not leave the channel waiting or kill others
            self.errors += 1
            log.error("FastAGI: connection from %s failed: %s", peer, _redacted(exc))
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, s: _Session) -> None:
        env = await s.read_env()
        self.requests += 1
        linkedid: str | None = None
        reply = await s.command("GET VARIABLE", "CHANNEL(linkedid)")
        if reply.ok and reply.result == 1 and reply.data and _LINKEDID.fullmatch(reply.data):
            linkedid = reply.data
        request = build_request(env, linkedid)
        if request.network_script not in SCRIPTS:
            log.warning(
                "FastAGI: unknown script %s from %s, answering none",
                short(request.network_script),
                short(request.channel),
            )
            decision = NONE
        elif s.hungup:
            decision = NONE
        else:
            decision = await self._ask(request)
        await self._apply(s, request, decision)

    async def _ask(self, request: AgiRequest) -> AgiDecision:
        try:
            async with asyncio.timeout(self.cfg.timeout):
                decision = await self._decide(request)
        except TimeoutError:
            self.timeouts += 1
            log.warning(
                "FastAGI: no decision for call %s within %.1f s, letting it through",
                request.linkedid,
                self.cfg.timeout,
            )
            return NONE
        except Exception as exc:
            self.errors += 1
            log.error("FastAGI: decision for call %s failed: %s", request.linkedid, _redacted(exc))
            return NONE
        if not isinstance(decision, AgiDecision) or decision.action not in ACTIONS:
            self.errors += 1
            log.error("FastAGI: invalid decision %s, letting the call through", short(decision))
            return NONE
        return decision

    async def _apply(self, s: _Session, request: AgiRequest, decision: AgiDecision) -> None:
        action = decision.action
        caller_id = None
        if action == "dial":
            caller_id = valid_caller_id(decision.caller_id)
            if caller_id is None:
                log.warning(
                    "FastAGI: ignoring invalid caller id %s for call %s",
                    short(decision.caller_id),
                    request.linkedid,
                )
                action = "none"
        self.decisions[action] += 1
        if action != "none":
            log.info("FastAGI: call %s -> %s", request.linkedid, action)
        if s.hungup:
            return
        if caller_id is not None:
            await self._set(s, "CALLERID(num)", caller_id)
        await self._set(s, ACTION_VARIABLE, action)
        if action == "reject" and SCRIPTS.get(request.network_script) and not s.hungup:
            await s.command("EXEC", "Hangup", str(HANGUP_CAUSE_BUSY))

    async def _set(self, s: _Session, name: str, value: str) -> None:
        reply = await s.command("SET VARIABLE", name, value)
        if not reply.ok:
            log.warning("FastAGI: SET VARIABLE %s answered %d", name, reply.code)


def parse_allow(
    entries: tuple[str, ...] | list[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``[agi] allow`` entries: addresses (``192.0.2.10``) or networks (``192.0.2.0/24``)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"[agi] allow: {entry!r} is not an IP address or network (hostnames are not "
                "accepted)"
            ) from None
    return networks


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
