"""The AMI events the bridge reads: the one list the AMI filter is built from.

The call model's handler table (``cti_bridge.calls.HANDLED_EVENTS``) names what it reads; the
AMI client adds what it needs itself. Everything else is dropped before a dict is built, and
the example ``conf/asterisk/manager_cti.conf`` lets only these through (a test checks it;
docs/asterisk-ami.md#12-the-ami-user-event-classes-and-filters).

``Newexten`` (class ``dialplan``, one per dialplan step: the noisiest event there is) is read
only for ``VoiceMail()``, so the AMI user's filter passes it only with that application
(``HEADER_FILTERED``), at Asterisk's side.

Not here, on purpose: action answers and list items (``Response:`` frames, ``CoreShowChannel``,
``CoreShowChannelsComplete``) carry the ActionID of a pending action and reach panoramisk
whatever the filter says; Asterisk's own event filters do not apply to them either.
"""

from __future__ import annotations

from cti_bridge.calls import HANDLED_EVENTS
from cti_bridge.calls.answer import VOICEMAIL_APPS

#: What the AMI client reads itself: ``FullyBooted`` tells it the PBX is ready and that
#: ``read=`` includes ``system`` (panoramisk resends pending actions on it,
#: docs/asterisk-ami.md#137-pending-actions-wait-for-fullybooted); ``OriginateResponse`` is the
#: outcome of a click-to-dial Originate (``ami.originate``).
CLIENT_EVENTS: frozenset[str] = frozenset({"FullyBooted", "OriginateResponse"})

#: Every event the bridge reads.
WANTED_EVENTS: frozenset[str] = HANDLED_EVENTS | CLIENT_EVENTS

#: Events wanted only with one of these values of one header: event -> (header, values).
HEADER_FILTERED: dict[str, tuple[str, frozenset[str]]] = {
    "Newexten": ("Application", VOICEMAIL_APPS),
}


def manager_eventfilters() -> list[str]:
    """The ``eventfilter =`` values of the AMI user (``conf/asterisk/manager_cti.conf``).

    Legacy regex filters, understood by Asterisk 16 to 22: each is a POSIX regex searched in
    the whole event text, an event passes when any include line matches and no ``!`` line
    does. No ``;`` (a comment in .conf files) and no ``\\r`` (not an escape there): a name is
    ended by ``[^A-Za-z]`` instead, so ``VoiceMail`` does not pass ``VoiceMailMain``, and
    ``.*`` spans lines (POSIX ``.`` matches a newline without ``REG_NEWLINE``).
    """
    plain = sorted(WANTED_EVENTS - HEADER_FILTERED.keys())
    lines = [f"Event: ({'|'.join(plain)})"]
    for event, (header, values) in sorted(HEADER_FILTERED.items()):
        names = "|".join(sorted(values))
        lines.append(f"^Event: {event}[^A-Za-z].*{header}: ({names})[^A-Za-z]")
    # The include lines match a prefix: "Hangup" would also pass HangupHandler* (dialplan).
    lines.append("!Event: HangupHandler")
    return lines
