#!/usr/bin/python3
"""t-benchmilters - the benchmarks' other reference milters, over the wire.

 - nullmilter -a (every step): negotiates no step away (no NO*/NR* flag,
   no skip), answers every step including HELO, DATA, an unknown command
   and end of headers, and changes nothing; it also passes the shared
   protocol cases (tests/lib/protocases.py).
 - rewritemilter: replaces the body with its base64 (76-character lines,
   CRLF) in replbody chunks of at most 64 KB and sets
   Content-Transfer-Encoding: base64 (added, or changed when present),
   whatever the body chunking; the next message on the connection starts
   afresh.
"""
import base64
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, Suite, pid_alive, start_daemon, stop_pid, wait_for  # noqa: E402
from ktest import check, check_eq  # noqa: E402
import protocases  # noqa: E402
import milterclient as mc  # noqa: E402

# every flag that takes a step away or a reply from it
SKIPS = (mc.P_NOCONNECT | mc.P_NOHELO | mc.P_NOMAIL | mc.P_NORCPT | mc.P_NOBODY |
         mc.P_NOHDRS | mc.P_NOEOH | mc.P_NR_HDR | mc.P_NOUNKNOWN | mc.P_NODATA |
         mc.P_SKIP | mc.P_NR_CONN | mc.P_NR_HELO | mc.P_NR_MAIL | mc.P_NR_RCPT |
         mc.P_NR_DATA | mc.P_NR_UNKN | mc.P_NR_EOH | mc.P_NR_BODY)


class Milter:
    def __init__(self, tmp, tool, *args):
        self.sock = os.path.join(tmp, tool + ".sock")
        self.pidfile = os.path.join(tmp, tool + ".pid")
        self.proc = start_daemon([os.path.join(BUILD, "tools", tool), "-p", "unix:" + self.sock,
                                  "-P", self.pidfile] + list(args),
                                 os.path.join(tmp, tool + ".log"))
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None and pid_alive(self.pid)

    def ready(self):
        def can():
            try:
                mc.MilterClient(self.sock, timeout=1).close()
                return True
            except OSError:
                return False
        return wait_for(can, 10)

    def stop(self):
        stop_pid(self.pid)
        self.proc.wait(5)


def b64_lines(data):
    """data in base64, 76-character lines each ending in CRLF."""
    e = base64.b64encode(data)
    return b"".join(e[i:i + 76] + b"\r\n" for i in range(0, len(e), 76))


def check_body(got, want):
    """The replaced body is want; on a difference, say where (not the whole body)."""
    if got == want:
        return
    got = got or b""
    at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
              min(len(got), len(want)))
    check(False, "replaced body: %d bytes, want %d; first difference at %d: %r vs %r"
          % (len(got), len(want), at, got[at:at + 20], want[at:at + 20]))


def rewrite(m, headers, body, chunk=mc.CHUNK, c=None, qid="RW1"):
    own = c is None
    if own:
        c = protocases.new_client(m)
    c.body = lambda data: mc.MilterClient.body(c, data, chunk=chunk)   # message() uses c.body
    steps, res = c.message(protocases.SENDER, protocases.RCPTS, headers, body,
                           queue_id=qid, connect=own)
    if own:
        c.quit()
    for name, r in steps:
        check(r.code in (None, "continue"), "step %s answered %r" % (name, r))
    check(res is not None and res.reply.code == "continue", "eom: %r" % (res,))
    return res


def main():
    suite = Suite()
    for tool in ("nullmilter", "rewritemilter"):
        if not os.access(os.path.join(BUILD, "tools", tool), os.X_OK):
            print("FAIL benchmilters: %s not built (make tools)" % tool)
            return 1
    tmp = tempfile.mkdtemp(prefix="t-benchmilters.")
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    every = Milter(tmp, "nullmilter", "-a")
    suite.cleanups.append(every.stop)
    rw = Milter(tmp, "rewritemilter")
    suite.cleanups.append(rw.stop)
    if not every.ready() or not rw.ready():
        print("FAIL benchmilters start: a socket never answered")
        return 1

    @suite.case("every-step null milter negotiates no step and no reply away")
    def _():
        c = mc.MilterClient(every.sock, timeout=15)
        neg = c.negotiate()
        c.quit()
        check_eq(neg.protocol & SKIPS, 0, "protocol flags that skip steps")
        check(neg.actions & mc.F_CHGBODY, "it must ask for kmilter's actions")

    @suite.case("every-step null milter answers each step, unknown included, changes nothing")
    def _():
        c = protocases.new_client(every)
        c.macros("C", {"j": "mx.example.com", "{client_addr}": protocases.CLIENT[3]})
        got = [("connect", c.connect(*protocases.CLIENT)),
               ("helo", c.helo("mail.partner.test")),
               ("unknown", c._step(mc.C_UNKNOWN, b"XFOO bar\0", mc.P_NR_UNKN,
                                   mc.P_NOUNKNOWN))]
        c.macros("M", {"i": "EVERY1"})
        got += [("mail", c.mail(protocases.SENDER)), ("rcpt", c.rcpt(protocases.RCPTS[0])),
                ("data", c.data())]
        got += [("header " + h[0], c.header(*h)) for h in protocases.HEADERS]
        got += [("eoh", c.eoh()), ("body", c.body(protocases.BODY, chunk=100))]
        res = c.eom()
        c.quit()
        for name, r in got:
            check_eq(r.code, "continue", "reply to " + name)
        check_eq(res.reply.code, "continue", "reply to eom")
        check_eq(res.mods, [], "modifications")

    protocases.add_cases(suite, every)

    @suite.case("rewrite milter: body replaced by its base64, CTE added, small chunks")
    def _():
        body = protocases.BODY * 7 + b"tail without newline"
        res = rewrite(rw, protocases.HEADERS, body, chunk=100)
        check_body(res.body(), b64_lines(body))
        check_eq(res.of("addheader"), [mc.Mod("addheader", "Content-Transfer-Encoding",
                                              "base64")], "added header")
        check_eq(res.of("chgheader"), [], "changed headers")

    @suite.case("rewrite milter: a large body goes back in chunks of at most 64 KB")
    def _():
        body = bytes(range(256)) * 800            # 200 KB, binary, 57 does not divide it
        res = rewrite(rw, protocases.HEADERS, body, chunk=65535)
        chunks = res.of("replbody")
        check(len(chunks) >= 4, "%d replbody chunks for %d bytes" % (len(chunks), len(body)))
        check(all(len(m[1]) <= 65536 for m in chunks), "a chunk over 64 KB")
        check_body(res.body(), b64_lines(body))

    @suite.case("rewrite milter: an existing CTE is changed; the next message starts afresh")
    def _():
        c = protocases.new_client(rw)
        c.macros("C", {"j": "mx.example.com", "{client_addr}": protocases.CLIENT[3]})
        c.connect(*protocases.CLIENT)
        hdrs = protocases.HEADERS + [("Content-Transfer-Encoding", "8bit")]
        res = rewrite(rw, hdrs, b"first\r\n" * 30, c=c, qid="RW2")
        check_eq(res.of("chgheader"), [mc.Mod("chgheader", 1, "Content-Transfer-Encoding",
                                              "base64")], "changed header")
        check_eq(res.of("addheader"), [], "added headers")
        res = rewrite(rw, protocases.HEADERS, b"second\r\n", c=c, qid="RW3")
        c.quit()
        check_body(res.body(), b64_lines(b"second\r\n"))
        check_eq(len(res.of("addheader")), 1, "second message's added header")

    @suite.case("rewrite milter: an empty body stays empty, with the header set")
    def _():
        res = rewrite(rw, protocases.HEADERS, b"")
        check(not res.body(), "replaced body: %r" % res.body())
        check_eq(len(res.of("addheader")), 1, "added header")
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
