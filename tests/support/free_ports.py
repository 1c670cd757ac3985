#!/usr/bin/env python3
"""free_ports.py N: print N distinct loopback TCP ports for services a test
script starts, separated by spaces.

The same rule as th_free_port() in harness.c: ports below the kernel's
ephemeral range (32768-60999 by default), so that no outgoing connection
takes one before the service binds it, skipping any port a test process
holds reserved (an flock on /tmp/orch-test-ports/PORT) or that something
binds. A script's ports are not reserved past this call: they are chosen
at random among 12000, and the C tests skip any port bound by then.
"""
import fcntl
import os
import random
import socket
import sys

PORT_DIR = "/tmp/orch-test-ports"
PORT_LO, PORT_SPAN = 20000, 12000


def reserved(port):
    try:
        fd = os.open(os.path.join(PORT_DIR, str(port)), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def bindable(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    chosen = []
    for _ in range(4 * PORT_SPAN):
        if len(chosen) == n:
            break
        port = PORT_LO + random.randrange(PORT_SPAN)
        if port not in chosen and not reserved(port) and bindable(port):
            chosen.append(port)
    if len(chosen) < n:
        sys.exit("free_ports.py: no %d free ports in %d-%d" % (n, PORT_LO, PORT_LO + PORT_SPAN - 1))
    print(" ".join(map(str, chosen)))


main()
