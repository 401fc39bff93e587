"""The far end of the many-sessions test: one process, one thread, every connection.

It accepts SESSIONS connections. On each it reads a session id (u32, little endian) and
UP bytes, checks them against the bytes that session must send, and answers with the
DOWN bytes of that session. It holds every connection open until its stdin closes, so
the sessions stay concurrent for as long as the test wants.

Session i's bytes are 8-byte units, unit k being (i, k) going up and (k, ~i) coming
down, each as two little-endian u32: a byte from another session, lost, repeated or out
of order shows. (tests/faults_many.rs builds the same bytes.)

usage: many_target.py SESSIONS UP DOWN
Prints "listening PORT", then "verified GOOD BAD" once every session has been handled.
Exits by itself after LIFETIME seconds, so it never outlives a test that died.
"""

import resource
import selectors
import socket
import struct
import sys
import time

LIFETIME = 300.0
ID_LEN = 4


def units(first, second, count):
    """The bytes of `count` units whose fields are first(k) and second(k)."""
    return b"".join(struct.pack("<II", first(k), second(k)) for k in range(count))


class Patterns:
    """Both directions' bytes for any session, built from one precomputed block each
    (Python loops are slow; big-integer OR is not)."""

    def __init__(self, up_len, down_len):
        self.up_units, self.down_units = up_len // 8, down_len // 8
        self.up_len, self.down_len = up_len, down_len
        self.up_base = int.from_bytes(
            units(lambda k: 0, lambda k: k, self.up_units), "little"
        )
        self.down_base = int.from_bytes(
            units(lambda k: k, lambda k: 0, self.down_units), "little"
        )

    def up(self, session):
        mask = int.from_bytes(struct.pack("<II", session, 0) * self.up_units, "little")
        return (self.up_base | mask).to_bytes(self.up_len, "little")

    def down(self, session):
        inverse = session ^ 0xFFFFFFFF
        mask = int.from_bytes(struct.pack("<II", 0, inverse) * self.down_units, "little")
        return (self.down_base | mask).to_bytes(self.down_len, "little")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.inbox = bytearray()
        self.out = b""
        self.handled = False


def main():
    sessions, up_len, down_len = (int(a) for a in sys.argv[1:4])
    if up_len % 8 or down_len % 8:
        sys.exit("UP and DOWN must be multiples of 8")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    patterns = Patterns(up_len, down_len)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    # The kernel caps the backlog at net.core.somaxconn.
    listener.listen(65535)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("listening", listener.getsockname()[1], flush=True)

    good = bad = 0
    reported = False
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline:
        for key, events in sel.select(timeout=1.0):
            if key.data is None:
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            if key.data == "stdin":
                if not sys.stdin.buffer.read1(4096):
                    return
                continue
            conn = key.data
            if events & selectors.EVENT_WRITE:
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
                if not conn.out:
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if events & selectors.EVENT_READ:
                try:
                    data = conn.sock.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    if not conn.handled:
                        sys.stderr.write("a session ended before sending its bytes\n")
                        bad += 1
                        conn.handled = True
                    sel.unregister(conn.sock)
                    conn.sock.close()
                    continue
                conn.inbox += data
                if conn.handled or len(conn.inbox) < ID_LEN + up_len:
                    continue
                conn.handled = True
                (session,) = struct.unpack_from("<I", conn.inbox)
                if bytes(conn.inbox[ID_LEN:]) != patterns.up(session):
                    sys.stderr.write("session %d sent wrong bytes\n" % session)
                    bad += 1
                    # No answer: the client sees the session end instead.
                    sel.unregister(conn.sock)
                    conn.sock.close()
                    continue
                good += 1
                conn.out = patterns.down(session)
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
                if conn.out:
                    sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        if not reported and good + bad >= sessions:
            print("verified", good, bad, flush=True)
            reported = True
    sys.stderr.write("still running after %d s: exiting\n" % LIFETIME)
    sys.exit(1)


if __name__ == "__main__":
    main()
