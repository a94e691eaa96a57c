"""The outbox: CTI events in (committed before any post), rows out to the delivery, in id order.

``store`` is the SQLite file and its transactions; ``admin`` is what ``cti-bridge outbox``
(list, retry, purge) does with it from a second process while the daemon runs; ``upgrade``
takes over the file of earlier releases (``spool.sqlite3``) at the daemon's start.
"""
