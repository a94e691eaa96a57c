"""What the call model knows about this PBX: which channels are trunks, who the users are.

One trunk predicate serves both places that must tell a trunk from a phone: the AMI path
(``Newchannel``) and the FastAGI hook (which decides before the phones ring). They see a
channel from different vantage points, and the predicate takes that vantage point as an
explicit parameter instead of each caller carrying its own variant of the rule
(docs/asterisk-ami.md#9-direction).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from cti_bridge.calls.model import Channel
from cti_bridge.config import Config, NumbersConfig, PbxConfig
from cti_bridge.numbers import ANONYMOUS, NumberPlan


@dataclass(frozen=True)
class CallRules:
    """What the tracker needs to know about this PBX; built from the config."""

    trunk_endpoints: tuple[str, ...] = ()
    trunk_contexts: tuple[str, ...] = ("from-trunk", "from-pstn", "from-trunk-*", "from-pstn-*")
    internal_contexts: tuple[str, ...] = ("from-internal", "from-internal-*")
    report_internal: bool = False
    users: Mapping[str, str] = field(default_factory=dict)
    numbers: NumbersConfig = field(default_factory=NumbersConfig)
    newcall_delay: float = 0.5
    max_call_duration: float = 4 * 3600.0
    max_calls: int = 20000

    @classmethod
    def from_config(cls, cfg: Config) -> CallRules:
        pbx: PbxConfig = cfg.pbx
        return cls(
            trunk_endpoints=pbx.trunk_endpoints,
            trunk_contexts=pbx.trunk_contexts,
            internal_contexts=pbx.internal_contexts,
            report_internal=pbx.report_internal,
            users=dict(cfg.users),
            numbers=cfg.numbers,
            max_call_duration=pbx.max_call_duration,
            max_calls=pbx.max_calls,
        )


def matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test for config patterns (exact names or globs); exact names skip the regexes."""
    patterns = tuple(patterns)
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = tuple(re.compile(fnmatch.translate(p)) for p in patterns if p not in exact)

    def match(value: str) -> bool:
        return bool(value) and (value in exact or any(g.match(value) for g in globs))

    return match


class Vantage(Enum):
    """Where a channel is judged from, which decides how much its context can be trusted.

    ROOT: the ``Newchannel`` of a call's first channel. Its ``Context`` is where the call
    entered the dialplan, so a trunk context is enough.
    LEG: the ``Newchannel`` of any later channel. Phones' legs may be created in a trunk
    context too (the dialplan dials out from there), so a trunk context counts only if it is
    not also an internal one and the channel has no caller ID yet (a leg the PBX dials
    inherits the caller's ID; a call arriving from a trunk has none at that point).
    HOOK: the FastAGI hook. Its context is the dialplan's current one, which inside a macro
    or ``Gosub`` is the subroutine's: with an endpoint to go by, a trunk context that is also
    internal is not enough; without one (a Local channel, an unparsable name) the context is
    all there is. The hook's caller ID is always set by then and says nothing.
    """

    ROOT = "root"
    LEG = "leg"
    HOOK = "hook"


class Pbx:
    """The rules compiled for the hot path, and how the parties of a call are named."""

    __slots__ = ("_internal_context", "_trunk_context", "_trunk_endpoint", "numbers", "rules")

    def __init__(self, rules: CallRules) -> None:
        self.rules = rules
        self.numbers = NumberPlan(rules.numbers)
        self._trunk_endpoint = matcher(rules.trunk_endpoints)
        self._trunk_context = matcher(rules.trunk_contexts)
        self._internal_context = matcher(rules.internal_contexts)

    def is_trunk(
        self,
        endpoint: str,
        context: str,
        *,
        vantage: Vantage,
        local: bool = False,
        caller_id: bool = False,
    ) -> bool:
        """Is this channel a trunk (an inbound call's caller, an outbound call's far end)?

        A listed endpoint always is; a Local channel seen on AMI never is (it is a dialplan
        hop, the trunk is behind it). Otherwise a trunk context decides, trusted as far as
        ``vantage`` allows (see ``Vantage``); ``caller_id`` matters for a LEG only.
        """
        if self._trunk_endpoint(endpoint):
            return True
        if local and vantage is not Vantage.HOOK:
            return False
        if not self._trunk_context(context):
            return False
        if vantage is Vantage.ROOT:
            return True
        if vantage is Vantage.HOOK:
            return not endpoint or not self._internal_context(context)
        return not self._internal_context(context) and not caller_id

    def extension(self, ch: Channel) -> str:
        """A phone's number as Zammad should see it.

        A number or endpoint known in [users] wins over a caller id the dialplan rewrote (FreePBX
        puts the trunk's caller id on the phone's channel before the trunk Dial); otherwise the
        caller id number, then the endpoint name.
        """
        users = self.rules.users
        for candidate in (ch.first_num, ch.callerid_num, ch.endpoint):
            if candidate and candidate in users:
                return candidate
        return NumberPlan.digits(ch.callerid_num) or ch.endpoint

    def user_name(self, ch: Channel) -> str:
        """The Zammad user behind a phone: [users] by number or endpoint, else its caller name."""
        users = self.rules.users
        for key in (ch.first_num, ch.callerid_num, ch.endpoint):
            if key and key in users:
                return users[key]
        return ch.callerid_name

    def caller_number(self, ch: Channel) -> str:
        """``from`` of an inbound newCall: ``anonymous`` when withheld (zammad-cti.md#8)."""
        if ch.hidden:
            return ANONYMOUS
        if ch.is_trunk:
            return self.numbers.caller(ch.callerid_num)
        return self.extension(ch) or ANONYMOUS
