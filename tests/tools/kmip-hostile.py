#!/usr/bin/python3
"""kmip-hostile.py - a misbehaving KMIP server for testing kmilter's client.

usage: kmip-hostile.py MODE PORT CERT KEY CA

Listens on 127.0.0.1:PORT with TLS 1.2 (client certificate required), reads
one request per connection and then, depending on MODE:
  silent     never answers (the client must time out)
  closemid   sends the first 100 bytes of a valid response and closes
  garbage    sends bytes that are not TTLV
  lying      sends a response whose inner item claims more bytes than exist
  huge       sends a header announcing a 2 GiB response
  flaky      closes the first connection without an answer, answers the rest
  idleclose  answers, then closes the connection 200 ms later
  ok         answers every request with a valid Get response
A valid answer is the captured PyKMIP Get response (SecretData, 32 bytes
00..1f).  Prints READY when listening.  Stop it with SIGTERM by pid.
"""
import socket
import ssl
import sys
import threading
import time

GET_RESP = bytes.fromhex(
    "42007b010000010042007a0100000048420069010000002042006a0200000004"
    "000000010000000042006b020000000400000002000000004200920900000008"
    "000000006b03faa042000d0200000004000000010000000042000f01000000a8"
    "42005c05000000040000000a0000000042007f05000000040000000000000000"
    "42007c0100000080420057050000000400000007000000004200940700000001"
    "3200000000000000420085010000005842008605000000040000000200000000"
    "4200400100000040420042050000000400000002000000004200450100000028"
    "4200430800000020000102030405060708090a0b0c0d0e0f1011121314151617"
    "18191a1b1c1d1e1f")


def read_request(s):
    """Read one TTLV message; return False on EOF."""
    hdr = b""
    while len(hdr) < 8:
        chunk = s.recv(8 - len(hdr))
        if not chunk:
            return False
        hdr += chunk
    left = int.from_bytes(hdr[4:8], "big")
    while left > 0:
        chunk = s.recv(min(left, 65536))
        if not chunk:
            return False
        left -= len(chunk)
    return True


def lying():
    b = bytearray(GET_RESP)
    # the key material length (0x20, 33 bytes before the end) now says 0x28
    assert b[-33] == 0x20
    b[-33] = 0x28
    return bytes(b)


state = {"conns": 0}
lock = threading.Lock()


def serve(conn, mode):
    with lock:
        state["conns"] += 1
        n = state["conns"]
    try:
        while read_request(conn):
            if mode == "silent":
                time.sleep(3600)
            elif mode == "closemid":
                conn.sendall(GET_RESP[:100])
                break
            elif mode == "garbage":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\xff" * 35)
            elif mode == "lying":
                conn.sendall(lying())
            elif mode == "huge":
                conn.sendall(bytes.fromhex("42007b017ffffff8") + b"\0" * 64)
            elif mode == "flaky" and n == 1:
                break
            elif mode == "idleclose":
                conn.sendall(GET_RESP)
                time.sleep(0.2)
                break
            else:
                conn.sendall(GET_RESP)
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    mode, port, cert, key, ca = sys.argv[1:6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(16)
    print("READY", flush=True)
    while True:
        raw, _ = ls.accept()
        try:
            raw.settimeout(10)
            conn = ctx.wrap_socket(raw, server_side=True)
            conn.settimeout(None)
        except (OSError, ssl.SSLError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(conn, mode), daemon=True).start()


if __name__ == "__main__":
    main()
