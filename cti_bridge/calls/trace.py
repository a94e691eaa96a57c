"""Read recorded AMI traces: JSON lines, a JSON array of events, or raw AMI wire text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class TraceError(ValueError):
    """A trace file that cannot be read as AMI events."""


def _clean(obj: object, where: str) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected an object of AMI headers")
    # "content" is panoramisk's Message body attribute, not an AMI header.
    return {str(k): str(v) for k, v in obj.items() if k != "content"}


def _wire_frames(text: str) -> Iterator[dict[str, str]]:
    frame: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line:
            if frame:
                yield frame
                frame = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            frame.setdefault(key.strip(), value.strip())
    if frame:
        yield frame


def read_trace(path: str | Path) -> Iterator[dict[str, str]]:
    """Yield the events of one trace file in stream order."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{p}: cannot read: {exc}") from None
    head = text.lstrip()[:1]
    if head == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{p}: invalid JSON: {exc}") from None
        if not isinstance(data, list):
            raise TraceError(f"{p}: expected a JSON array of events")
        for i, obj in enumerate(data):
            yield _clean(obj, f"{p}[{i}]")
    elif head == "{":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{p}:{n}: invalid JSON line: {exc.msg}") from None
            yield _clean(obj, f"{p}:{n}")
    else:
        yield from _wire_frames(text)
