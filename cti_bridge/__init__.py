"""cti-bridge: Asterisk AMI/FastAGI to Zammad Generic CTI.

Data flows one way, and the tree follows it::

    Asterisk ─AMI─▶ ami/ ─events─▶ calls/ ─CTI events─▶ outbox/ ─rows─▶ zammad/ ─POST─▶ Zammad
       ▲                                                                            │
       └────────── agi/ (FastAGI hook: reject / caller ID) ◀── answer to newCall ───┘

- ``ami/``: the AMI connection (panoramisk) and the wire parser; plain event dicts out.
- ``calls/``: the call model. Pure: AMI events in, CTI events out, no I/O, so recorded
  traces replay it exactly.
- ``outbox/``: the durable SQLite queue every CTI event is committed to before it is posted.
- ``zammad/``: the HTTP client for Zammad's CTI endpoint and the delivery that drains the outbox.
- ``agi/``: the FastAGI server, the only way Zammad's decisions reach a ringing call.
- ``service/``: the daemon that wires the parts, its status socket, metrics and systemd glue.
- ``web/``: the daemon's HTTP listener (``/metrics``, ``/healthz``), Starlette on uvicorn.
- ``cli/``: the ``cti-bridge`` command.

``config``, ``numbers``, ``events`` and ``causes`` are shared by all of them. The facts the code
relies on are written down in ``docs/`` (Zammad's CTI behaviour, the AMI facts, the cause table).
"""

__version__ = "0.1.0"
