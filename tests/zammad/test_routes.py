"""Routes over one outbox: each lane its own, the acks of all of them in one batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad, call_events
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad.routes import Routes


def config(tmp: Path, main: str | None, acme: str) -> Any:
    """[zammad] at ``main`` (None: no url), and the route acme."""
    url = {"url": main} if main is not None else {}
    return parse_config(
        {
            "ami": {"username": "u", "secret": "s"},
            "zammad": {**url, "timeout": 1.0, "max_backoff": 0.2},
            "route": [{"name": "acme", "url": acme, "to": ["4930*"]}],
            "outbox": {"path": str(tmp / "o.sqlite3")},
        }
    )


async def test_acks_of_one_route_ride_in_the_next_commit_of_another(tmp_path: Path) -> None:
    with FakeZammad() as main, FakeZammad() as acme:
        box = Outbox(tmp_path / "o.sqlite3")
        routes = Routes(box, config(tmp_path, main.url(), acme.url()))
        deliveries = [r.delivery for r in routes]
        assert deliveries[0]._acks is deliveries[1]._acks  # one batch for all routes
        commits: list[tuple[int, list[int]]] = []
        real = box.put_many

        def put_many(events: Any, *, acks: Any = ()) -> list[int]:
            commits.append((len(events), list(acks)))
            return real(events, acks=acks)

        box.put_many = put_many  # type: ignore[method-assign]
        (rid,) = routes.submit_many([{**call_events("a1")[0], "_route": "acme"}])
        assert rid is not None
        routes._acks.add(rid)  # as if acme's Zammad had just taken it, not committed yet
        routes.submit_many([call_events("d1")[0]])  # [zammad]'s next event
        assert commits[-1] == (1, [rid])  # acme's ack rode in [zammad]'s commit
        assert box.lane("acme").count() == 0 and box.lane("default", others=["acme"]).count() == 1
        box.close()


async def test_a_stranded_lane_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many(call_events("old"))  # [zammad]'s, from when it had a URL
    with FakeZammad() as acme:
        cfg = config(tmp_path, None, acme.url())
        routes = Routes(box, cfg)
        assert [r.name for r in routes] == ["acme"]
        await routes.start()
        await routes.stop(1.0)
        await routes.aclose()
    box.close()
    assert "3 event(s) in the outbox belong to [zammad]" in caplog.text
