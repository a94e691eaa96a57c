"""The one trunk predicate, row by row, against both rules it replaced."""

from __future__ import annotations

import itertools

import pytest

from cti_bridge.calls.rules import CallRules, Pbx, Vantage

RULES = CallRules(
    trunk_endpoints=("carrier",),
    trunk_contexts=("from-trunk", "from-pstn*", "shared"),
    internal_contexts=("from-internal", "shared"),
)
PBX = Pbx(RULES)
ENDPOINTS = ("carrier", "phone", "")  # listed trunk, a phone, none (Local / unparsable)
CONTEXTS = ("from-trunk", "from-pstn-x", "shared", "from-internal", "")


def _old_ami(endpoint: str, context: str, local: bool, root: bool, caller_id: bool) -> bool:
    """The AMI path's rule before the split (_on_newchannel)."""
    ep, tc, ic = (PBX._trunk_endpoint, PBX._trunk_context, PBX._internal_context)
    return not local and (
        ep(endpoint) or (tc(context) and (root or (not ic(context) and not caller_id)))
    )


def _old_hook(endpoint: str, context: str) -> bool:
    """The FastAGI hook's rule before the split (agi_newcall)."""
    ep, tc, ic = (PBX._trunk_endpoint, PBX._trunk_context, PBX._internal_context)
    return bool(
        ep(endpoint)
        or (not endpoint and tc(context))
        or (endpoint and tc(context) and not ic(context))
    )


@pytest.mark.parametrize(
    ("endpoint", "context", "local", "root", "caller_id"),
    [
        (e, c, loc, r, cid)
        for e, c, loc, r, cid in itertools.product(
            ENDPOINTS, CONTEXTS, (False, True), (False, True), (False, True)
        )
        if not (loc and e)  # a Local channel has no endpoint
    ],
)
def test_ami_vantages_match_the_old_rule(
    endpoint: str, context: str, local: bool, root: bool, caller_id: bool
) -> None:
    vantage = Vantage.ROOT if root else Vantage.LEG
    got = PBX.is_trunk(endpoint, context, vantage=vantage, local=local, caller_id=caller_id)
    assert got == _old_ami(endpoint, context, local, root, caller_id)


@pytest.mark.parametrize(
    ("endpoint", "context", "local"),
    [
        (e, c, loc)
        for e, c, loc in itertools.product(ENDPOINTS, CONTEXTS, (False, True))
        if not (loc and e)
    ],
)
def test_hook_vantage_matches_the_old_rule(endpoint: str, context: str, local: bool) -> None:
    assert PBX.is_trunk(endpoint, context, vantage=Vantage.HOOK, local=local) == _old_hook(
        endpoint, context
    )


# Where the vantage point changes the answer: each row is a case the old rules decided
# differently, kept on purpose.
@pytest.mark.parametrize(
    ("endpoint", "context", "local", "caller_id", "root", "leg", "hook"),
    [
        # A phone starting in a context that is both trunk and internal: trusted on a root,
        # not from the hook (a subroutine's context) nor on a later leg.
        ("phone", "shared", False, False, True, False, False),
        # A leg in a trunk context with a caller ID already: a leg the PBX dials, no trunk.
        ("phone", "from-trunk", False, True, True, False, True),
        # A Local channel in a trunk context: a hop on AMI; the hook has only the context.
        ("", "from-trunk", True, False, False, False, True),
        # A listed trunk endpoint is a trunk from everywhere.
        ("carrier", "from-internal", False, True, True, True, True),
    ],
)
def test_vantage_differences(
    endpoint: str, context: str, local: bool, caller_id: bool, root: bool, leg: bool, hook: bool
) -> None:
    for vantage, want in ((Vantage.ROOT, root), (Vantage.LEG, leg), (Vantage.HOOK, hook)):
        got = PBX.is_trunk(endpoint, context, vantage=vantage, local=local, caller_id=caller_id)
        assert got == want, vantage
