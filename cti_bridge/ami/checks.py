"""What ``cti-bridge check`` can learn about the AMI user before the daemon runs.

Each result names the ``manager.conf`` permission a failure points at
(docs/asterisk-ami.md#12-the-ami-user-event-classes-and-filters), so an operator fixes the
user without reading logs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cti_bridge.ami.client import AmiClient

Result = tuple[str, bool, str]
RESYNC = "AMI CoreShowChannels (resync)"
VOICEMAIL = "AMI voicemail events"
#: What an operator runs when the check cannot tell (no AMI action reveals ``read=``).
BY_HAND = (
    'check by hand: asterisk -rx "manager show user {user}" must show dialplan in read perm '
    "and the VoiceMail eventfilter of conf/asterisk/manager_cti.conf"
)


async def check_ami(client: AmiClient, timeout: float) -> list[Result]:
    """(name, ok, detail) in order of dependency: nothing after a failed login."""
    cfg = client.cfg
    who = f"{cfg.host}:{cfg.port} as {cfg.username!r}"
    deadline = time.monotonic() + timeout
    if not await client.wait_logged_in(timeout, give_up_on_refusal=True):
        detail = client.last_error or "no successful login within the timeout"
        return [("AMI login", False, f"{who}: {detail}")]
    results: list[Result] = [("AMI login", True, who)]
    remaining = max(deadline - time.monotonic(), 1.0)
    resp = await client.request({"Action": "CoreShowChannels"}, remaining)
    if isinstance(resp, list):
        n = sum(1 for m in resp if m.get("Event") == "CoreShowChannel")
        results.append((RESYNC, True, f"{n} active channel(s)"))
    elif resp is None:
        results.append((RESYNC, False, "no answer"))
    else:
        refused = resp.get("Message", "refused")
        results.append((RESYNC, False, f"{refused}: manager.conf write= needs reporting"))
    booted = client.sink.fully_booted
    results.append(
        (
            "AMI system events",
            booted,
            "FullyBooted received after login"
            if booted
            else "no FullyBooted after login: manager.conf read= needs system",
        )
    )
    # No AMI action reveals one's read permissions, and none makes a call event without
    # making a call; so this one can only confirm what was seen.
    results.append(
        (
            "AMI call events",
            True,
            "call events received"
            if client.sink.call_event_seen
            else "not verified (no call activity seen); manager.conf read= needs call",
        )
    )
    results.append(voicemail_events(client))
    return results


ORIGINATE = "AMI Originate (click-to-dial)"


async def check_originate(client: AmiClient, timeout: float) -> Result:
    """Whether the user may originate: ``ListCommands`` lists only the actions its ``write=``
    classes allow. Checked only when ``[dial]`` is configured."""
    resp = await client.request({"Action": "ListCommands"}, timeout)
    if resp is None or isinstance(resp, list):
        return ORIGINATE, False, "no answer to ListCommands"
    if not resp.success:
        return ORIGINATE, False, f"ListCommands: {resp.get('Message', 'refused')}"
    if "Originate" in resp:
        return ORIGINATE, True, "allowed"
    return ORIGINATE, False, "not allowed: manager.conf write= needs originate (never system)"


def voicemail_events(client: AmiClient) -> Result:
    """Does the AMI user get ``Newexten`` for ``VoiceMail()``, and no other dialplan step?

    docs/asterisk-ami.md#12-the-ami-user-event-classes-and-filters: this needs the ``dialplan``
    read class and the VoiceMail ``eventfilter`` line. Only events prove it: no action makes
    a ``Newexten`` without a call, so without one the result says how to check by hand.
    """
    sink = client.sink
    by_hand = BY_HAND.format(user=client.cfg.username)
    if sink.unfiltered_dialplan:
        return (
            VOICEMAIL,
            False,
            f"Newexten of {sink.unfiltered_dialplan} received: every dialplan step reaches the "
            "bridge; add the eventfilter lines of conf/asterisk/manager_cti.conf",
        )
    if sink.voicemail_seen:
        return (VOICEMAIL, True, "VoiceMail() seen")
    return (
        VOICEMAIL,
        True,
        "not verified (no call reached VoiceMail() yet); without them voicemail is posted "
        f"as not answered; {by_hand}",
    )
