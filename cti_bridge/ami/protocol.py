"""Lean AMI wire protocol for panoramisk's ``protocol_factory``.

Why not panoramisk 1.4's own ``AMIProtocol.data_received``:
- it decodes every TCP chunk on its own with ``errors='ignore'``, so a UTF-8 character split
  across two reads disappears ("Jürgen" -> "Jrgen"); here one incremental decoder lives per
  connection and invalid bytes become U+FFFD instead of vanishing;
- it builds a case-insensitive ``Message`` for every frame, although most of an unfiltered stream
  (VarSet, Newexten, TestEvent, DeviceStateChange...) is of no use to the tracker. Here the
  ``Event:`` name (always the first line, ``main/manager.c``) is checked before anything else
  is built, and unwanted events are dropped with a set lookup;
- its buffer grows without bound and an exception in a callback kills the connection.

Frames that belong to an action (``Response:`` frames, and events carrying the ActionID of a
pending action: list items such as CoreShowChannel and the list's Complete event) are still
turned into panoramisk ``Message`` objects and fed to the inherited ``handle_message``, so
``Manager.send_action`` futures resolve as usual.

Events reach the sink as plain ``dict[str, str]`` with header names exactly as sent. A header
that repeats (``ChanVariable`` does so by design, one line per variable listed in
``manager.conf channelvars=``) keeps all its values, joined with ``"\\n"`` in wire order; a
value itself never contains a line feed.
"""

from __future__ import annotations

import codecs
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from panoramisk import utils as _pk_utils
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from cti_bridge.ami.wanted import WANTED_EVENTS

log = logging.getLogger("cti_bridge.ami.client")

Event = dict[str, str]
EventSink = Callable[[Event], None]

#: Events the bridge reads (``ami.wanted``); everything else is dropped before a dict is built.
DEFAULT_WANTED_EVENTS: frozenset[str] = WANTED_EVENTS

#: Largest frame accepted; anything longer is dropped up to the next blank line so a runaway
#: header (or a peer that never sends a blank line) cannot make the buffer grow without bound.
DEFAULT_MAX_FRAME = 64 * 1024
_BANNER = "Asterisk Call Manager/"
#: Wanted events per second above which a (rate-limited) storm warning is logged.
STORM_RATE = 5000


class ProtoStats:
    """Counters shared by every connection of one client (they survive reconnects)."""

    __slots__ = (
        "callback_errors",
        "events_filtered",
        "events_read",
        "frames_malformed",
        "frames_oversized",
        "last_event_at",
    )

    def __init__(self) -> None:
        self.events_read = 0
        self.events_filtered = 0
        self.frames_malformed = 0
        self.frames_oversized = 0
        self.callback_errors = 0
        self.last_event_at: float | None = None


class RateLimitedLog:
    """Log each kind of problem at once, then at most once per ``interval`` with a count.

    Hostile or broken input can repeat thousands of times a second; one line per occurrence
    would flood the journal and cost more than the parsing itself.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._log = logger
        self._interval = interval
        self._state: dict[str, tuple[float, int]] = {}

    def __call__(
        self, kind: str, level: int, msg: str, *args: object, exc_info: bool = False
    ) -> None:
        now = time.monotonic()
        last, suppressed = self._state.get(kind, (-1e18, 0))
        if now - last < self._interval:
            self._state[kind] = (last, suppressed + 1)
            return
        self._state[kind] = (now, 0)
        if suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._log.log(level, msg, *args, exc_info=exc_info)


def _join_repeated(lines: Iterable[str]) -> tuple[Event, bool]:
    """Careful parse: tolerate lines without a colon, join repeated headers.

    Returns the headers and whether a line had to be skipped.
    """
    out: Event = {}
    bad = False
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key:
            if line.strip():
                bad = True
            continue
        if value[:1] == " ":
            value = value[1:]
        prev = out.get(key)
        out[key] = value if prev is None else prev + "\n" + value
    return out, bad


def _fast_parse(frame: str) -> Event | None:
    """The frame's headers if it is what Asterisk sends, else None (use the careful parse).

    All C-level: turn every CRLF into ": ", split once and pair the pieces. Taken only when
    there is exactly one ": " per line and no repeated header (as many keys as lines); a value
    containing ": ", a line without it, a bare "Key:", a bare-LF line, an empty line or a
    repeated header all change the count and go to the careful line-by-line parse.
    """
    parts = frame.replace("\r\n", ": ").split(": ")
    if len(parts) == 2 * (frame.count("\n") + 1):
        it = iter(parts)
        d = dict(zip(it, it, strict=False))
        if 2 * len(d) == len(parts):
            return d
    return None


def _lines(frame: str) -> list[str]:
    """Lines ended by CRLF or a bare LF."""
    return [line[:-1] if line.endswith("\r") else line for line in frame.split("\n")]


def parse_frame(frame: str) -> tuple[Event, bool]:
    """Parse one frame (CRLF- or LF-separated lines, no trailing blank line) into headers."""
    fast = _fast_parse(frame)
    if fast is not None:
        return fast, False
    return _join_repeated(_lines(frame))


#: A blank line of any kind (LF LF, or LF CR LF after a CRLF or bare-LF line end).
_BLANK_LINE = re.compile(r"\n\r?\n")


class LeanAMIProtocol(AMIProtocol):
    """panoramisk ``AMIProtocol`` with a lean, bounded and UTF-8-safe ``data_received``.

    Built through ``functools.partial(LeanAMIProtocol, sink=..., ...)`` as the Manager's
    ``protocol_factory``; ``send``/``close``/``handle_message`` are panoramisk's own.
    """

    def __init__(
        self,
        *,
        sink: EventSink,
        stats: ProtoStats,
        wanted: frozenset[str] = DEFAULT_WANTED_EVENTS,
        max_frame: int = DEFAULT_MAX_FRAME,
        rlog: RateLimitedLog | None = None,
    ) -> None:
        super().__init__()
        self.responses: dict[str, Any] = {}  # panoramisk fills it in on connect
        self._sink = sink
        self._stats = stats
        self._wanted = wanted
        self._max_frame = max_frame
        self._rlog = rlog or RateLimitedLog(log)
        self._reset_stream()
        self._storm_window = (0.0, 0)

    # -- connection -------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._skipping = False  # inside an oversized frame, dropping up to the next blank line
        self._skip_tail = ""  # the last characters dropped (a blank line may straddle reads)
        self._banner = True  # the greeting line has not been seen yet

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._reset_stream()

    def connection_lost(self, exc: Exception | None) -> None:
        # A frame cut off by the disconnect is discarded, never half-delivered.
        if self._buf.strip() or self._skipping:
            self._stats.frames_malformed += 1
            self._rlog(
                "truncated",
                logging.WARNING,
                "AMI connection closed inside a frame (%d chars); frame discarded",
                len(self._buf),
            )
        self._buf = ""
        self._skipping = False
        super().connection_lost(exc)

    # -- input ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            self._data_received(data)
        except Exception:  # never let panoramisk's transport die on our account
            self._stats.frames_malformed += 1
            self._buf = ""
            self._skipping = True  # resynchronise at the next blank line
            self._skip_tail = ""
            log.exception("AMI input could not be processed; resynchronising at next frame")

    def _data_received(self, data: bytes) -> None:
        frames = self._split_frames(data)
        if not frames:
            return
        # Inline fast path for the bulk of the stream: an unwanted event that is not part of a
        # pending action's answer is counted and dropped before anything is built.
        wanted = self._wanted
        responses = self.responses
        read_before = self._stats.events_read
        filtered = 0
        for frame in frames:
            if frame.startswith("Event: "):
                nl = frame.find("\r\n", 0, 80)
                if (
                    nl > 0
                    and frame[7:nl] not in wanted
                    and "\n" not in frame[7:nl]  # else LF-only lines: the careful path
                    and not (responses and "\nActionID: " in frame)
                ):
                    filtered += 1
                    continue
            elif not frame:
                continue
            try:
                self._frame(frame)
            except Exception:
                self._stats.frames_malformed += 1
                self._rlog(
                    "frame-error", logging.ERROR, "AMI frame could not be handled", exc_info=True
                )
        stats = self._stats
        if filtered or stats.events_read != read_before:  # a Pong alone is not an event
            stats.events_filtered += filtered
            now = time.time()
            stats.last_event_at = now
            self._storm_check(now)

    def _split_frames(self, data: bytes) -> list[str]:
        """Decode one read and cut it into whole frames; a partial frame waits in ``_buf``."""
        text = self._decoder.decode(data)
        if "\x00" in text:
            text = text.replace("\x00", "")
            self._rlog("nul", logging.WARNING, "AMI input contained NUL bytes; removed")
        if self._skipping:
            text = self._skip(text)
            if not text:
                return []
        buf = self._buf + text if self._buf else text
        if self._banner:
            buf = self._strip_banner(buf)
            if self._banner:
                self._buf = buf
                return []
        # Asterisk ends lines with CRLF: split on it as sent. Replacing every CRLF with LF first
        # (to also take bare-LF input) cost a pass over each read as long as the whole parse.
        # Bare LFs still work: an LF-only stream is split on LF LF, and a piece that turns out to
        # hold LF-only lines or frames goes to the careful path in _frame.
        frames = buf.split("\r\n\r\n" if "\r" in buf else "\n\n")
        rest = frames.pop()
        if "\n\n" in rest:  # LF LF frames in a CRLF stream (rest is short: a partial frame)
            more = _BLANK_LINE.split(rest)
            rest = more.pop()  # as received: a CRLF CRLF cut between reads must stay intact
            frames += more
        if len(rest) > self._max_frame:
            self._oversized(len(rest))
            self._skipping = True
            self._skip_tail = rest[-3:]
            rest = ""
        self._buf = rest
        return frames

    def _skip(self, text: str) -> str:
        """Drop input up to and including the next blank line; return what follows it."""
        joined = self._skip_tail + text
        ends = [i + len(p) for p in ("\n\r\n", "\n\n") if (i := joined.find(p)) >= 0]
        if not ends:
            self._skip_tail = joined[-3:]
            return ""
        self._skipping = False
        self._skip_tail = ""
        return joined[min(ends) :]

    def _strip_banner(self, buf: str) -> str:
        if buf.startswith(_BANNER):
            nl = buf.find("\n")
            if nl < 0:
                if len(buf) < 256:
                    return buf  # wait for the end of the greeting line
                self._banner = False
                return buf
            self.version = buf[len(_BANNER) : nl].strip()
            log.info("AMI protocol version %s", self.version)
            self._banner = False
            return buf[nl + 1 :]
        if not _BANNER.startswith(buf):
            self._banner = False  # no greeting: treat everything as frames
        return buf

    def _oversized(self, size: int) -> None:
        self._stats.frames_oversized += 1
        self._rlog(
            "oversized",
            logging.WARNING,
            "AMI frame larger than %d bytes (%d so far) dropped",
            self._max_frame,
            size,
        )

    def _frame(self, frame: str) -> None:
        if frame[0] in "\r\n":
            frame = frame.lstrip("\r\n")
            if not frame:
                return
        if len(frame) > self._max_frame:
            self._oversized(len(frame))
            return
        if frame.startswith("Event: "):
            nl = frame.find("\n")
            name = (frame[7:] if nl < 0 else frame[7:nl]).rstrip("\r")
            if (
                name not in self._wanted
                and not (self.responses and "\nActionID: " in frame)
                and not _BLANK_LINE.search(frame)  # else more frames inside: see below
            ):
                self._stats.events_filtered += 1
                return
        elif frame.startswith("Response:") and not _BLANK_LINE.search(frame):
            self._to_action(frame)
            return
        fast = _fast_parse(frame)
        if fast is None:
            subs = _BLANK_LINE.split(frame)
            if len(subs) > 1:  # bare-LF blank lines inside: several frames in one piece
                for sub in subs:
                    if sub.strip("\r\n"):
                        self._frame(sub)
                return
            headers, bad = _join_repeated(_lines(frame))
        else:
            headers, bad = fast, False
        if bad:
            self._stats.frames_malformed += 1
            self._rlog("malformed", logging.WARNING, "AMI frame with lines lacking a colon")
        action_id = headers.get("ActionID")
        if action_id is not None and action_id in self.responses:
            self._to_action(frame)
            return
        event_name = headers.get("Event")
        if event_name is None:
            if "Response" in headers:  # not first: unusual, still an answer
                self._to_action(frame)
                return
            if not bad:
                self._stats.frames_malformed += 1
                self._rlog("no-event", logging.WARNING, "AMI frame without Event or Response")
            return
        if event_name not in self._wanted:
            self._stats.events_filtered += 1
            return
        self._stats.events_read += 1
        self._sink(headers)

    def _to_action(self, frame: str) -> None:
        """Hand an action-related frame to panoramisk so the action's future resolves."""
        message = Message.from_line(_pk_utils.EOL.join(_lines(frame)))
        if message is None:
            self._stats.frames_malformed += 1
            return
        action: Any = self.responses.get(message.id)
        if action is None and message.action_id:
            action = self.responses.get(message.action_id)
        self.handle_message(message)
        # vars(): panoramisk's dicts answer '' to any unknown attribute.
        hook = None if action is None else vars(action).get("on_complete")
        if hook is not None and action.future.done() and not action.future.cancelled():
            # Called synchronously, before the next frame is delivered, so a list result
            # (CoreShowChannels) is seen in stream order relative to the events around it.
            action.on_complete = None
            hook(action.future.result())

    def _storm_check(self, now: float) -> None:
        start, base = self._storm_window
        seen = self._stats.events_read
        if now - start < 1.0:
            return
        rate = (seen - base) / (now - start) if start else 0.0
        self._storm_window = (now, seen)
        if rate > STORM_RATE:
            self._rlog(
                "storm",
                logging.WARNING,
                "AMI event storm: %.0f wanted events/s (%d filtered so far)",
                rate,
                self._stats.events_filtered,
            )
