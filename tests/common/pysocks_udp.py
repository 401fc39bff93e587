"""A real SOCKS5 UDP client for the integration tests: PySocks sends COUNT datagrams
through the proxy to DEST and prints each answer with the source the proxy reported.

usage: pysocks_udp.py PROXY_HOST PROXY_PORT DEST_HOST DEST_PORT COUNT
Exits 3 when PySocks is not installed.
"""

import socket
import sys

try:
    import socks
except ImportError:
    sys.stderr.write("PySocks is not installed: python3 -m pip install pysocks\n")
    sys.exit(3)

# Seconds to wait for one answer before sending the datagram again (UDP may drop).
ANSWER_TIMEOUT = 2.0
TRIES = 3


def main():
    proxy_host, proxy_port, dest_host, dest_port, count = sys.argv[1:6]
    sock = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    # rdns: a name goes to the proxy as a name (ATYP 3), resolved there.
    sock.set_proxy(socks.SOCKS5, proxy_host, int(proxy_port), rdns=True)
    sock.settimeout(ANSWER_TIMEOUT)
    for i in range(int(count)):
        message = b"pysocks datagram %d" % i
        for _ in range(TRIES):
            sock.sendto(message, (dest_host, int(dest_port)))
            try:
                data, (host, port) = sock.recvfrom(65535)
                break
            except socket.timeout:
                continue
        else:
            sys.stderr.write("no answer to datagram %d\n" % i)
            sys.exit(1)
        print("%s from %s %d" % (data.decode(), host, port), flush=True)
    sock.close()


if __name__ == "__main__":
    main()
