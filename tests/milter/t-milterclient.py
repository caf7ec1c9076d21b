#!/usr/bin/python3
"""t-milterclient - the milter client's decoders meet valid and malformed replies.

No milter needed: the decoders of tests/lib/milterclient.py get byte
strings, including truncated, over-long and unterminated ones, and must
either decode them correctly or raise ProtocolError (never anything else).
A small fake milter on a socketpair checks the client's step logic
(no-reply flags, progress packets, modifications before the final reply).
"""
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import Suite, check, check_eq  # noqa: E402
import milterclient as mc  # noqa: E402

suite = Suite()


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def raises(fn, *a):
    try:
        fn(*a)
    except mc.ProtocolError:
        return True
    return False


@suite.case("decode_packet: whole, partial and two packets")
def _():
    check_eq(mc.decode_packet(pkt(b"c")), (b"c", b"", b""), "continue")
    check_eq(mc.decode_packet(pkt(b"h", b"a\0b\0")[:-1]), None, "partial")
    check_eq(mc.decode_packet(b"\0\0"), None, "short length")
    two = pkt(b"h", b"X\0v\0") + pkt(b"a")
    cmd, data, rest = mc.decode_packet(two)
    check_eq((cmd, data), (b"h", b"X\0v\0"), "first")
    check_eq(mc.decode_packet(rest)[:2], (b"a", b""), "second")


@suite.case("decode_packet: zero and huge lengths are errors")
def _():
    check(raises(mc.decode_packet, b"\0\0\0\0c"), "zero length accepted")
    check(raises(mc.decode_packet, b"\xff\xff\xff\xffc"), "4 GB length accepted")


@suite.case("decode_negotiation: fields and macro lists")
def _():
    d = struct.pack(">III", 6, 0x1F, 0x3) + struct.pack(">I", 5) + b"i {auth_authen}\0" \
        + struct.pack(">I", 0) + b"j\0"
    n = mc.decode_negotiation(d)
    check_eq((n.version, n.actions, n.protocol), (6, 0x1F, 3), "fields")
    check_eq(n.macros, {"eom": ["i", "{auth_authen}"], "connect": ["j"]}, "macros")


@suite.case("decode_negotiation: malformed")
def _():
    check(raises(mc.decode_negotiation, b"\0" * 11), "short accepted")
    check(raises(mc.decode_negotiation, b"\0" * 12 + b"\0\0\0\5i"), "unterminated list accepted")
    check(raises(mc.decode_negotiation, b"\0" * 12 + b"\0\0"), "truncated stage accepted")


@suite.case("decode_mod: every modification kind")
def _():
    check_eq(mc.decode_mod(b"h", b"X-A\0v\0"), ("addheader", "X-A", "v"), "addheader")
    check_eq(mc.decode_mod(b"m", struct.pack(">I", 2) + b"Subject\0\0"),
             ("chgheader", 2, "Subject", ""), "chgheader (delete)")
    check_eq(mc.decode_mod(b"i", struct.pack(">I", 0) + b"X-B\0w\0"),
             ("insheader", 0, "X-B", "w"), "insheader")
    check_eq(mc.decode_mod(b"b", b"body\r\n"), ("replbody", b"body\r\n"), "replbody")
    check_eq(mc.decode_mod(b"+", b"<x@y>\0"), ("addrcpt", "<x@y>"), "addrcpt")
    check_eq(mc.decode_mod(b"2", b"<x@y>\0NOTIFY=NEVER\0"),
             ("addrcpt_par", "<x@y>", ["NOTIFY=NEVER"]), "addrcpt_par")
    check_eq(mc.decode_mod(b"-", b"<x@y>\0"), ("delrcpt", "<x@y>"), "delrcpt")
    check_eq(mc.decode_mod(b"q", b"why\0"), ("quarantine", "why"), "quarantine")
    check_eq(mc.decode_mod(b"e", b"<a@b>\0"), ("chgfrom", "<a@b>", []), "chgfrom")
    check_eq(mc.decode_mod(b"c", b""), None, "continue is no modification")


@suite.case("decode_mod: malformed")
def _():
    check(raises(mc.decode_mod, b"h", b"X-A\0v"), "unterminated value")
    check(raises(mc.decode_mod, b"h", b"X-A\0"), "missing value")
    check(raises(mc.decode_mod, b"m", b"\0\0"), "short index")
    check(raises(mc.decode_mod, b"+", b"a\0b\0"), "two rcpts in addrcpt")
    check(raises(mc.decode_mod, b"2", b""), "empty addrcpt_par")


@suite.case("decode_reply: codes, replycode, malformed")
def _():
    check_eq(mc.decode_reply(b"t", b""), ("tempfail", None), "tempfail")
    check_eq(mc.decode_reply(b"y", b"550 5.7.1 no\0"), ("replycode", "550 5.7.1 no"), "replycode")
    check(raises(mc.decode_reply, b"y", b"250 ok\0"), "2xx replycode accepted")
    check(raises(mc.decode_reply, b"y", b"55\0"), "short replycode accepted")
    check(raises(mc.decode_reply, b"y", b"550 x"), "unterminated replycode accepted")
    check(raises(mc.decode_reply, b"Z", b""), "unknown reply accepted")


def fake_milter(sock, script):
    """Answer each packet read with the scripted bytes; record commands."""
    seen = []
    buf = b""
    try:
        for answer in script:
            while True:
                p = mc.decode_packet(buf)
                if p:
                    cmd, data, buf = p
                    seen.append(cmd)
                    if cmd != b"D":
                        break
                    continue
                more = sock.recv(65536)
                if not more:
                    return seen
                buf += more
            if answer is not None:
                sock.sendall(answer)
    finally:
        sock.close()
    return seen


@suite.case("client: no-reply flags, progress and mods before the final reply")
def _():
    a, b = socket.socketpair()
    neg = struct.pack(">III", 6, 0x1FF, mc.P_NR_HDR | mc.P_NOHELO) + struct.pack(">I", 5) + b"i\0"
    script = [pkt(b"O", neg),                 # negotiate
              pkt(b"c"),                      # connect
              None,                           # header: NR_HDR, no answer
              pkt(b"c"),                      # eoh
              pkt(b"p") + pkt(b"h", b"X-K\0yes\0") + pkt(b"b", b"new") + pkt(b"a")]
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("seen", fake_milter(b, script)))
    t.start()
    c = mc.MilterClient.__new__(mc.MilterClient)
    c.sock, c.buf, c.protocol, c.closed = a, b"", 0, False
    n = c.negotiate()
    check_eq(n.macros, {"eom": ["i"]}, "macros")
    check_eq(c.connect("h", "4", 25, "192.0.2.1"), ("continue", None), "connect")
    check_eq(c.helo("h"), (None, None), "helo skipped (NOHELO)")
    check_eq(c.header("Subject", "x"), (None, None), "header without reply (NR_HDR)")
    check_eq(c.eoh(), ("continue", None), "eoh")
    r = c.eom()
    check_eq(r.reply, ("accept", None), "eom reply")
    check_eq(r.progress, 1, "progress packets")
    check_eq(r.of("addheader"), [("addheader", "X-K", "yes")], "addheader")
    check_eq(r.body(), b"new", "replacement body")
    c.close()
    t.join(5)
    check_eq(out["seen"], [b"O", b"C", b"L", b"N", b"E"], "commands the milter saw")


@suite.case("client: a milter that hangs up gives ConnectionClosed")
def _():
    a, b = socket.socketpair()
    b.close()
    c = mc.MilterClient.__new__(mc.MilterClient)
    c.sock, c.buf, c.protocol, c.closed = a, b"", 0, False
    try:
        c.negotiate()
        check(False, "no error")
    except (mc.ConnectionClosed, BrokenPipeError):
        pass


sys.exit(suite.run())
