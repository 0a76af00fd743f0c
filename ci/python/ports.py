"""Free TCP ports on 127.0.0.1 for SeaweedFS (ci/lib.sh and the soak test). Run as a script,
prints one."""

import random
import socket


def free_port(taken=()):
    """A port on 127.0.0.1 that is free, and whose +10000 (SeaweedFS's gRPC port) is too;
    not one of `taken`."""
    for _ in range(500):
        port = random.randint(20000, 29999)
        if port in taken:
            continue
        ok = True
        for q in (port, port + 10000):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


if __name__ == "__main__":
    print(free_port())
