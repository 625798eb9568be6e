# SPDX-License-Identifier: MPL-2.0
"""A small HTTP CONNECT proxy for tests/e2e/24-upstream-proxy.sh.

Usage: connect-proxy.py PORT LOG CAPTURE

Listens on 127.0.0.1:PORT. A CONNECT request is answered 200 and the two
sockets are relayed both ways; every request line it gets (CONNECT or not) is
appended to LOG, and every byte the client sends after the CONNECT is appended
to CAPTURE, so that the test can check what crossed the proxy. Anything but
CONNECT is answered 405: a client that sends a plain request to a proxy would
hand it the request in clear.
"""

import socket
import sys
import threading

PORT, LOG, CAPTURE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()


def record(path, data):
    with lock, open(path, "ab") as f:
        f.write(data)


def pump(src, dst, capture):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if capture:
                record(CAPTURE, data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = client.recv(4096)
        if not data:
            client.close()
            return
        head += data
    line = head.split(b"\r\n", 1)[0]
    record(LOG, line + b"\n")
    parts = line.split()
    if len(parts) != 3 or parts[0] != b"CONNECT":
        client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        client.close()
        return
    host, _, port = parts[1].decode().rpartition(":")
    try:
        upstream = socket.create_connection((host, int(port)), timeout=5)
        upstream.settimeout(None)
    except OSError:
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        client.close()
        return
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    rest = head.split(b"\r\n\r\n", 1)[1]
    if rest:
        record(CAPTURE, rest)
        upstream.sendall(rest)
    threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()
    pump(client, upstream, True)


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", PORT))
    srv.listen(64)
    while True:
        client, _ = srv.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


main()
