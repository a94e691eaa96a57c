"""The one synchronous event callback, guarded.

An exception escaping a panoramisk callback closes the connection
(docs/asterisk-ami.md#131-a-raising-callback-kills-the-connection), and coroutine callbacks
lose order (docs/asterisk-ami.md#132-coroutine-callbacks-lose-order-and-errors): every event
goes through one plain function, in stream order, and its failures are counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cti_bridge.ami.protocol import Event, ProtoStats, RateLimitedLog
from cti_bridge.ami.wanted import HEADER_FILTERED

_VOICEMAIL_HEADER, _VOICEMAIL_APPS = HEADER_FILTERED["Newexten"]


class EventSink:
    """Hands each event to ``on_event``; notes what the events prove about ``read=``."""

    def __init__(
        self, on_event: Callable[[Event], None], stats: ProtoStats, rlog: RateLimitedLog
    ) -> None:
        self._on_event = on_event
        self._stats = stats
        self._rlog = rlog
        self.fully_booted = False  # FullyBooted since the last connect: read= has "system"
        self.call_event_seen = False  # any call-class event so far: read= has "call"
        # A call reached VoiceMail(): read= has "dialplan" and the filter lets it through.
        self.voicemail_seen = False
        # The application of a Newexten the AMI user's filter should have dropped, if any.
        self.unfiltered_dialplan = ""

    def __call__(self, event: Event) -> None:
        name = event.get("Event")
        if name == "FullyBooted":
            self.fully_booted = True
        elif name == "Newexten":
            app = event.get(_VOICEMAIL_HEADER, "")
            if app in _VOICEMAIL_APPS:
                self.voicemail_seen = True
            elif not self.unfiltered_dialplan:
                self.unfiltered_dialplan = app or "?"
        elif not self.call_event_seen and event.get("Privilege", "").startswith("call"):
            self.call_event_seen = True
        try:
            self._on_event(event)
        except Exception as exc:
            self._stats.callback_errors += 1
            self._rlog(
                f"callback:{type(exc).__name__}",
                logging.ERROR,
                "AMI event handler failed on %s (%s); event skipped",
                name,
                type(exc).__name__,
                exc_info=True,
            )
