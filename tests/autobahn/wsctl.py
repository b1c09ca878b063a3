#!/usr/bin/env python3
"""Minimal WebSocket client for the fuzzingserver's control endpoints.

Usage: wsctl.py ws://127.0.0.1:PORT/getCaseCount
       wsctl.py ws://127.0.0.1:PORT/updateReports?agent=tether

Connects, prints every text message it receives (one per line), and returns once the
server sends its Close frame. Only the standard library is used, so driving the suite
does not depend on the testee under test, nor on any extra package. It handles only
what these endpoints send: small unfragmented, unmasked frames from a plain ws:// URL.
"""
import base64
import os
import socket
import struct
import sys
import urllib.parse


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        buf += chunk
    return buf


def main(url, timeout):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "ws":
        sys.exit("wsctl: only ws:// URLs are supported")
    path = u.path + ("?" + u.query if u.query else "")
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("wsctl: connection closed during handshake")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        sys.exit(f"wsctl: handshake refused: {status.decode(errors='replace')}")
    # Bytes after the header belong to the first frame(s): feed them back in front.
    pending = head.split(b"\r\n\r\n", 1)[1]

    def read(n):
        nonlocal pending
        take, pending = pending[:n], pending[n:]
        return take + (recv_exact(sock, n - len(take)) if len(take) < n else b"")

    while True:
        b0, b1 = read(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", read(8))
        mask = read(4) if b1 & 0x80 else None
        payload = read(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        if opcode == 0x1:
            print(payload.decode())
        elif opcode == 0x8:
            # Echo an empty, masked Close (clients must mask) to finish cleanly.
            sock.sendall(b"\x88\x80" + os.urandom(4))
            sock.close()
            return


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1], timeout=float(os.environ.get("WSCTL_TIMEOUT", "120")))
