"""Asterisk's legacy AMI ``eventfilter`` lines, evaluated as manager.c does (16 to 22).

Each line is a POSIX extended regex searched in the whole event text; without ``REG_NEWLINE``
``.`` matches a newline too (Python: DOTALL). An event passes when any include line matches
(or there is none) and no ``!`` line does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping


class LegacyFilter:
    """The ``eventfilter =`` values of one AMI user."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.includes: list[re.Pattern[str]] = []
        self.excludes: list[re.Pattern[str]] = []
        for value in lines:
            if value.startswith("!"):
                self.excludes.append(re.compile(value[1:], re.DOTALL))
            else:
                self.includes.append(re.compile(value, re.DOTALL))

    def passes(self, text: str) -> bool:
        if self.includes and not any(p.search(text) for p in self.includes):
            return False
        return not any(p.search(text) for p in self.excludes)

    def passes_event(self, event: Mapping[str, str]) -> bool:
        """An event as a dict in wire order (a trace line), as its text."""
        return self.passes(event_text(event))


def event_text(event: Mapping[str, str]) -> str:
    """``Event`` first, then the other headers in their order, CRLF-terminated."""
    head = f"Event: {event.get('Event', '')}\r\n"
    return head + "".join(f"{k}: {v}\r\n" for k, v in event.items() if k != "Event")
