"""Hangup causes, named: Asterisk's Q.850 codes and the causes Zammad accepts.

Every place that hangs up a channel or reads a hangup cause goes through these names, so a
reader sees ``Q850.USER_BUSY`` rather than a bare 17, and the groups the cause table uses
(docs/causes.md#6-q850-causes-used-above) are defined once.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Q850(IntEnum):
    """Q.850 cause codes as Asterisk sends them in ``Hangup``'s ``Cause`` header.

    Names follow Asterisk's ``include/asterisk/causes.h``; docs/causes.md#6-q850-causes-used-above
    says which SIP answers PJSIP turns into them.
    """

    NOT_DEFINED = 0
    UNALLOCATED = 1
    NO_ROUTE_TRANSIT_NET = 2
    NO_ROUTE_DESTINATION = 3
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    REDIRECTED = 23  # forwarded (SIP 302)
    ANSWERED_ELSEWHERE = 26
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    NORMAL_UNSPECIFIED = 31
    NORMAL_CIRCUIT_CONGESTION = 34
    NETWORK_OUT_OF_ORDER = 38
    NORMAL_TEMPORARY_FAILURE = 41
    SWITCH_CONGESTION = 42
    REQUESTED_CHAN_UNAVAIL = 44
    BEARERCAPABILITY_NOTAVAIL = 58
    RECOVERY_ON_TIMER_EXPIRE = 102
    INTERWORKING = 127  # also what PJSIP records for SIP 487 Request Terminated


#: The number does not exist or cannot be reached as dialled (Zammad: notFound).
NOT_FOUND_CAUSES = frozenset(
    {
        Q850.UNALLOCATED,
        Q850.NO_ROUTE_TRANSIT_NET,
        Q850.NO_ROUTE_DESTINATION,
        Q850.SUBSCRIBER_ABSENT,
        Q850.NUMBER_CHANGED,
        Q850.INVALID_NUMBER_FORMAT,
    }
)
#: Network or channel trouble (Zammad: congestion).
CONGESTION_CAUSES = frozenset(
    {
        Q850.DESTINATION_OUT_OF_ORDER,
        Q850.NORMAL_CIRCUIT_CONGESTION,
        Q850.NETWORK_OUT_OF_ORDER,
        Q850.NORMAL_TEMPORARY_FAILURE,
        Q850.SWITCH_CONGESTION,
        Q850.REQUESTED_CHAN_UNAVAIL,
        Q850.BEARERCAPABILITY_NOTAVAIL,
        Q850.RECOVERY_ON_TIMER_EXPIRE,
        Q850.INTERWORKING,
    }
)
#: The phone was there but nobody took the call (Zammad: noAnswer).
NO_ANSWER_CAUSES = frozenset(
    {
        Q850.NOT_DEFINED,
        Q850.NORMAL_CLEARING,
        Q850.NO_USER_RESPONSE,
        Q850.NO_ANSWER,
        Q850.CALL_REJECTED,
        Q850.NORMAL_UNSPECIFIED,
    }
)


class ZammadCause(StrEnum):
    """The ``cause`` values Zammad's ``hangup`` accepts (docs/zammad-cti.md#3-fields-per-event)."""

    NORMAL_CLEARING = "normalClearing"
    BUSY = "busy"
    CANCEL = "cancel"
    NO_ANSWER = "noAnswer"
    CONGESTION = "congestion"
    NOT_FOUND = "notFound"
    FORWARDED = "forwarded"
