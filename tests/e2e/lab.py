"""The e2e lab: the product's demo lab (:mod:`cti_bridge.demo.lab`) plus what only the tests
need: the Asterisk versions the suite runs on (``[ast16]``/``[ast22]``) and a TCP proxy whose
connections can be cut.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from cti_bridge.demo.lab import (
    FALLBACK_TIMEOUT,
    RING_TIMEOUT,
    AmiClient,
    Asterisk,
    CallHandle,
    Daemon,
    Lab,
    PortPicker,
    asterisk_binary,
    asterisk_version,
    daemon_available,
    daemon_command,
    daemon_config,
    lab_dir,
    module_dir,
    system_asterisk,
)

__all__ = [
    "FALLBACK_TIMEOUT",
    "RING_TIMEOUT",
    "AmiClient",
    "Asterisk",
    "AsteriskTarget",
    "CallHandle",
    "Daemon",
    "Lab",
    "PortPicker",
    "TcpProxy",
    "asterisk_binary",
    "asterisk_targets",
    "asterisk_version",
    "daemon_available",
    "daemon_command",
    "daemon_config",
    "lab_dir",
    "module_dir",
]

ROOT = Path(__file__).resolve().parent.parent.parent
ASTERISK22 = ROOT / ".ci" / "asterisk22"  # runs .ci/install-asterisk22's sid tree (root only)


@dataclass(frozen=True)
class AsteriskTarget:
    """One Asterisk the e2e lab runs on: ``label`` is the test id (``ast16``, ``ast22``),
    ``remedy`` says how to get it when it is missing."""

    label: str
    path: str | None
    remedy: str

    def unavailable(self) -> str | None:
        """Why this target cannot run (None when it can)."""
        if self.path is not None and asterisk_version(self.path) is not None:
            return None
        where = self.path or "PATH and /usr/sbin"
        return f"{self.label}: no asterisk runs from {where}: {self.remedy}"


def _label(path: str | None, default: str) -> str:
    """``ast<major>`` from the binary's version, ``default`` when it does not run."""
    version = asterisk_version(path) if path is not None else None
    if version is None:
        return default
    return "ast" + version.split()[1].split(".")[0]


def asterisk_targets() -> list[AsteriskTarget]:
    """The Asterisks the e2e suite runs on: ``CTI_E2E_ASTERISK`` alone when set, otherwise the
    machine's own (16 from .ci/install-asterisk) and 22 in its sid tree (.ci/asterisk22).

    Each is labelled by its major version, or by the version its installer provides when it is
    missing, so a missing one still shows up as a test id that skips (fails under CI=true).
    """
    override = os.environ.get("CTI_E2E_ASTERISK")
    if override:
        return [AsteriskTarget(_label(override, "ast"), override, "check CTI_E2E_ASTERISK")]
    system = system_asterisk()
    return [
        AsteriskTarget(_label(system, "ast16"), system, "run .ci/install-asterisk as root"),
        AsteriskTarget(
            _label(str(ASTERISK22), "ast22"),
            str(ASTERISK22),
            "run .ci/install-asterisk22 as root (.ci/asterisk22 runs it, as root only)",
        ),
    ]


# ----------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A loopback TCP proxy whose connections can be cut (and new ones refused) at will."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.open = True
        self.accepted = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every connection and refuse new ones until restore()."""
        self.open = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._listener.close()
