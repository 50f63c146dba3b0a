"""While a worker waits in TensorFlow's start-up barrier for the other workers of its TF_CONFIG
(a C++ wait that holds Python's interpreter lock), this script, run as a child process by path
(`python wait_for_workers.py '<json [[name, "host:port"], ...]>' <timeout seconds>`, so it loads
no TensorFlow), prints a line every 10 s naming those whose server is not up yet. It exits when
its parent does, or when killed once the wait is over."""

import json
import os
import socket
import sys
import time


def listening(address: str) -> bool:
    """Whether a server accepts connections at 'host:port'."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def not_started(others: list) -> list[str]:
    return [f"{name} ({address})" for name, address in others if not listening(address)]


def report(others: list, timeout_s: float, parent: int) -> None:
    started = time.monotonic()
    while True:
        time.sleep(10)
        missing = not_started(others)
        if os.getppid() != parent:
            return
        if missing:
            print(f"waiting for the other workers of TF_CONFIG: {', '.join(missing)} not started "
                  f"({timeout_s - time.monotonic() + started:.0f}s left of --worker_timeout)",
                  flush=True)


if __name__ == "__main__":
    report(json.loads(sys.argv[1]), float(sys.argv[2]), os.getppid())
