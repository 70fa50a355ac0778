"""Free TCP ports on the loopback interface for private server instances."""

from __future__ import annotations

import socket
import threading

__all__ = ["free_port"]

# Ports already handed out by this process: the kernel may offer a port again as soon
# as our probe socket closes, before the server we handed it to has bound it, so two
# servers started back to back could otherwise be given the same port.
_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port on `host` that nothing listens on now and that we never returned.

    Another process can still take it before our server binds it; the server helpers
    notice "Address already in use" and retry on a fresh port.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise OSError(f"no unused port found on {host} after 100 tries")
