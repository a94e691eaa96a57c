"""The AMI events the bridge reads: the one list the AMI filter is built from.

The call model's handler table (``cti_bridge.calls.HANDLED_EVENTS``) names what it reads; the
AMI client adds what it needs itself. Everything else is dropped before a dict is built, and
the example ``conf/asterisk/manager_cti.conf`` lets only these through (a test checks it;
docs/asterisk-ami.md#12-the-ami-user-event-classes-and-filters).

Not here, on purpose: action answers and list items (``Response:`` frames, ``CoreShowChannel``,
``CoreShowChannelsComplete``) carry the ActionID of a pending action and reach panoramisk
whatever the filter says; Asterisk's own event filters do not apply to them either.
"""

from __future__ import annotations

from cti_bridge.calls import HANDLED_EVENTS

#: What the AMI client reads itself: ``FullyBooted`` tells it the PBX is ready and that
#: ``read=`` includes ``system`` (panoramisk resends pending actions on it,
#: docs/asterisk-ami.md#137-pending-actions-wait-for-fullybooted); ``OriginateResponse`` is the
#: outcome of a click-to-dial Originate (``ami.originate``).
CLIENT_EVENTS: frozenset[str] = frozenset({"FullyBooted", "OriginateResponse"})

#: Every event the bridge reads.
WANTED_EVENTS: frozenset[str] = HANDLED_EVENTS | CLIENT_EVENTS
