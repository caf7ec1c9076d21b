"""protocases - milter-protocol cases shared by the protocol suites.

add_cases(suite, milter) registers the cases that every milter kmilter's
lab may run must pass (the null milter and kmilter alike).  milter is an
object with .sock (unix socket path), .pid (int) and .alive().
The message used is a pass-through one for kmilter's policy: an external
client and sender, external recipients, so nothing may be modified.
"""

import os
import socket
import struct

from ktest import check, check_eq, wait_for
import milterclient as mc

HEADERS = [("From", "Alice <alice@partner.test>"),
           ("To", "Bob <bob@other.test>"),
           ("Subject", "protocol test"),
           ("Message-ID", "<proto-1@partner.test>"),
           ("MIME-Version", "1.0"),
           ("Content-Type", "text/plain; charset=us-ascii")]
BODY = b"Hello Bob,\r\n\r\nthis is a protocol test.\r\n.leading dot\r\n" * 10
SENDER = "<alice@partner.test>"
RCPTS = ["<bob@other.test>", "<carol@other.test>"]
CLIENT = ("mail.partner.test", "4", 40000, "192.0.2.10")


def new_client(m):
    c = mc.MilterClient(m.sock, timeout=15)
    c.negotiate()
    return c


def open_sessions(m):
    """Connections the milter holds open on its socket: the accepted ends,
    which /proc/net/unix lists under the listening socket's path with
    state 03 (connected)."""
    n = 0
    with open("/proc/net/unix") as fp:
        next(fp)
        for line in fp:
            f = line.split()
            if len(f) >= 8 and f[7] == m.sock and f[5] == "03":
                n += 1
    return n


def assert_passed(steps, res, what="message"):
    for name, r in steps:
        check(r.code in (None, "continue"), "%s: step %s answered %r" % (what, name, r))
    check(res is not None, "%s: stopped before eom: %r" % (what, steps[-1]))
    check(res.reply.code in ("continue", "accept"),
          "%s: eom answered %r" % (what, res.reply))
    check(res.mods == [], "%s: unexpected modifications %r" % (what, res.mods[:3]))


def rcpt_replies(sock, sender, rcpts, queue_id, client_addr="127.0.0.1"):
    """One connection from client_addr: MAIL sender, then each of rcpts;
    the milter's reply to each RCPT (a Reply), then abort and quit.  What
    an MTA would answer at RCPT, without a message."""
    c = mc.MilterClient(sock, timeout=30)
    c.negotiate()
    c.macros("C", {"j": "mx.example.com", "{daemon_name}": "smtpd",
                   "{client_addr}": client_addr})
    r = c.connect("client.example", "4", 25, client_addr)
    check(r.code in (None, "continue"), "connect: %r" % (r,))
    c.helo("client.example")
    c.macros("M", {"i": queue_id, "{mail_addr}": sender})
    r = c.mail("<%s>" % sender)
    check(r.code in (None, "continue"), "MAIL: %r" % (r,))
    out = []
    for a in rcpts:
        c.macros("R", {"{rcpt_addr}": a})
        out.append(c.rcpt("<%s>" % a))
    c.abort()
    c.quit()
    return out


def add_cases(suite, m):
    @suite.case("negotiate v6: version, actions, macros")
    def _():
        c = mc.MilterClient(m.sock, timeout=15)
        neg = c.negotiate()
        c.quit()
        check_eq(neg.version, 6, "milter protocol version")
        check(neg.actions & ~mc.F_ALL == 0, "actions outside the offer: %#x" % neg.actions)
        check(neg.protocol & ~mc.P_ALL == 0, "protocol flags outside the offer: %#x" % neg.protocol)
        check(not neg.protocol & mc.P_NOBODY, "milter must see the body")
        check(not neg.protocol & mc.P_NOHDRS, "milter must see the headers")
        check("i" in neg.macros.get("eom", []) or "{i}" in neg.macros.get("eom", []),
              "queue id {i} not requested at eom: %r" % neg.macros)

    @suite.case("negotiate: an MTA offering protocol v2 is refused or served")
    def _():
        c = mc.MilterClient(m.sock, timeout=15)
        try:
            neg = c.negotiate(version=2, actions=0x1F, protocol=0x7F)
            check(neg.version <= 6, "version %d" % neg.version)
        except mc.ConnectionClosed:
            pass
        c.close()
        check(m.alive(), "milter died after an old-version negotiation")

    @suite.case("a pass-through message passes with no modifications")
    def _():
        c = new_client(m)
        steps, res = c.message(SENDER, RCPTS, HEADERS, BODY, queue_id="PASS1")
        c.quit()
        assert_passed(steps, res)

    @suite.case("abort mid-message, then a new message on the same connection")
    def _():
        c = new_client(m)
        c.macros("C", {"j": "mx.example.com", "{client_addr}": CLIENT[3]})
        check(c.connect(*CLIENT).code in (None, "continue"), "connect")
        check(c.helo("mail.partner.test").code in (None, "continue"), "helo")
        c.macros("M", {"i": "ABORT1"})
        check(c.mail(SENDER).code in (None, "continue"), "mail")
        check(c.rcpt(RCPTS[0]).code in (None, "continue"), "rcpt")
        c.data()
        for h in HEADERS:
            c.header(*h)
        c.eoh()
        c.body(BODY[:100])
        c.abort()
        steps, res = c.message(SENDER, RCPTS, HEADERS, BODY, queue_id="AFTER1",
                               connect=False)
        c.quit()
        assert_passed(steps, res, "message after abort")

    @suite.case("twenty messages on one connection, all pass")
    def _():
        c = new_client(m)
        first = True
        for i in range(20):
            steps, res = c.message(SENDER, RCPTS, HEADERS, BODY + b"n=%d\r\n" % i,
                                   queue_id="MANY%d" % i, connect=first)
            first = False
            assert_passed(steps, res, "message %d" % i)
        c.quit()

    @suite.case("client drops the connection mid-body; milter stays up")
    def _():
        c = new_client(m)
        c.macros("C", {"j": "mx.example.com"})
        c.connect(*CLIENT)
        c.helo("mail.partner.test")
        c.mail(SENDER)
        c.rcpt(RCPTS[0])
        c.data()
        for h in HEADERS:
            c.header(*h)
        c.eoh()
        c.body(b"x" * 200000)
        # half a body packet, then hang up
        c.send_raw(struct.pack(">I", 1000) + b"B" + b"y" * 100)
        check(open_sessions(m) >= 1, "no connection of the milter's seen on %s "
              "in /proc/net/unix: the wait below would prove nothing" % m.sock)
        c.close()
        # the event: the milter closed its end of the dropped session
        wait_for(lambda: open_sessions(m) == 0, 10,
                 "the milter closing its end of the dropped connection on %s"
                 % m.sock)
        check(m.alive(), "milter died after a dropped connection")
        c2 = new_client(m)
        steps, res = c2.message(SENDER, RCPTS, HEADERS, BODY, queue_id="DROP2")
        c2.quit()
        assert_passed(steps, res, "message after the drop")

    @suite.case("two interleaved connections")
    def _():
        a, b = new_client(m), new_client(m)
        for c, q in ((a, "A1"), (b, "B1")):
            c.macros("C", {"j": "mx.example.com"})
            check(c.connect(*CLIENT).code in (None, "continue"), "connect")
            c.helo("h")
            c.macros("M", {"i": q})
            c.mail(SENDER)
            c.rcpt(RCPTS[0])
            c.data()
        for h in HEADERS:
            a.header(*h)
            b.header(*h)
        a.eoh()
        b.eoh()
        a.body(BODY + b"A\r\n")
        b.body(BODY + b"B\r\n")
        ra, rb = b.eom(), a.eom()
        a.quit()
        b.quit()
        for r in (ra, rb):
            check(r.reply.code in ("continue", "accept") and not r.mods, repr(r))

    @suite.case("a 5 MB body in 64 KB chunks passes unchanged")
    def _():
        c = new_client(m)
        big = (b"0123456789abcdef" * 4 + b"\r\n") * (5 * 1024 * 1024 // 66)
        steps, res = c.message(SENDER, RCPTS, HEADERS, big, queue_id="BIG1")
        c.quit()
        assert_passed(steps, res, "5 MB message")

    @suite.case("malformed packet: oversized length closes the connection, milter survives")
    def _():
        c = mc.MilterClient(m.sock, timeout=15)
        c.send_raw(struct.pack(">I", 0x7FFFFFF0) + b"O" + b"\0" * 12)
        closed = c.is_closed_by_peer(5)
        c.close()
        check(closed, "milter kept a connection that announced a 2 GB packet")
        check(m.alive(), "milter died on an oversized packet")
        c2 = new_client(m)
        steps, res = c2.message(SENDER, RCPTS, HEADERS, BODY, queue_id="MAL1")
        c2.quit()
        assert_passed(steps, res, "message after malformed input")

    @suite.case("malformed packet: garbage command and truncated connect")
    def _():
        for junk in ((b"C", b"host-without-terminator"),   # truncated connect info
                     (b"\x01", b"junk"),                     # unknown command
                     (b"M", b""),                             # MAIL without data
                     (b"L", b"Subject"),                      # header without value
                     (b"D", b"")):                            # empty macro packet
            c = new_client(m)
            c.sock.settimeout(1.0)
            try:
                c.send(*junk)
                c.send(*junk)
                while True:
                    c.read_packet()
            except (mc.ProtocolError, OSError):
                pass
            c.close()
        check(m.alive(), "milter died on garbage commands")
        c2 = new_client(m)
        steps, res = c2.message(SENDER, RCPTS, HEADERS, BODY, queue_id="MAL2")
        c2.quit()
        assert_passed(steps, res, "message after garbage")

    @suite.case("connect and quit without a message, 50 times")
    def _():
        for _ in range(50):
            c = new_client(m)
            c.connect(*CLIENT)
            c.quit()
        check(m.alive(), "milter died")
        c = new_client(m)
        steps, res = c.message(SENDER, RCPTS, HEADERS, BODY, queue_id="Q50")
        c.quit()
        assert_passed(steps, res)
