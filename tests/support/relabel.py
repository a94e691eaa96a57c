"""Give a recorded trace distinct ids so copies of it can run side by side in one tracker."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Channel names end in a hex sequence (``PJSIP/alice-0000001c``, ``Local/201@ctx-00000a1b;2``);
# the tag goes in front of it so the endpoint part the tracker parses stays the same.
_NAME_SEQ = re.compile(r"-([0-9a-fA-F]+)(;[12])?$")


def _is_id_key(key: str) -> bool:
    k = key.lower()
    return k.endswith("uniqueid") or k.endswith("linkedid")


def _is_channel_key(key: str) -> bool:
    return key.endswith("Channel")


def relabel(event: Mapping[str, str], tag: int) -> dict[str, str]:
    """A copy of ``event`` whose Uniqueid/Linkedid-like values and channel names carry ``tag``.

    Every ``*Uniqueid``/``*Linkedid`` header (Dest..., LocalOne..., Bridge..., Swap...,
    Transferer...) is rewritten the same way, so relations inside one trace survive.
    """
    out: dict[str, str] = {}
    prefix = f"t{tag}-"
    hexed = f"{tag:x}"
    for key, value in event.items():
        if value and _is_id_key(key):
            out[key] = prefix + value
        elif value and _is_channel_key(key):
            out[key] = _NAME_SEQ.sub(lambda m: f"-{hexed}{m.group(1)}{m.group(2) or ''}", value)
        else:
            out[key] = value
    return out
