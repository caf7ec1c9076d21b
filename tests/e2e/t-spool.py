#!/usr/bin/python3
"""t-spool - large outbound messages streamed through the spool, and what
goes wrong with the spool: nothing truncated, nothing half-replaced, no
spool file left behind.

One lab; alice@example.com enrolled with a signing key, bob@partner.example's
certificate imported.  The milter protocol client drives the lab's kmilter
over its socket (as Postfix would), so every reply and modification is seen.
milter.spool_memory_max is the default 1 MiB: bodies past it are in spool
files and are signed and encrypted from there (outbound_stream.c).
- a 3 MB message, streamed: replaced by an enveloped body that
  `openssl cms -decrypt` opens with bob's key, inside a multipart/signed
  that `openssl cms -verify` accepts, whose content ends with the marker
  (nothing truncated); the log line says sign+encrypt result=ok;
- milter.spool_disk_max_mb = 2: a 3 MB body passes the budget while it
  arrives: tempfail 451 4.3.2, the log says "spool full" and names the
  setting; no modification;
- milter.spool_disk_max_mb = 4: a 2.5 MB body fits, its signed and
  encrypted copies do not: tempfail 4.3.2 at end of message, "spool full"
  (found before the work starts: spool_disk_room), no header change and
  no body replaced (nothing half-replaced);
- a client that disconnects in the middle of a 5 MB body: kmilter closes
  the message and its spool file (polled in /proc/PID/fd);
- the spool directory on a 2 MB tmpfs (mounted for the test, unmounted
  after): a 3 MB body fills it while arriving (451 4.3.2, "cannot write");
  a 1.5 MB body fits but its signed copy does not (451 4.3.2 at end of
  message, nothing replaced); then, the tmpfs gone, the same message goes
  through.
After each case: no unlinked file open in kmilter beyond those it had
before, and the spool directory is empty.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
import ktest  # noqa: E402
from ktest import Suite, check, check_eq, skip, wait_for  # noqa: E402
import milterclient as mc  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@partner.example"
MARK = b"END-OF-BODY-MARKER-5d1"

suite = Suite()
S = {}


def need(*keys):
    ktest.need(S, *keys)


def body(size):
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij.\r\n"
    return (line * (size // len(line) + 1))[:size] + MARK + b"\r\n"


def milter_settings(**kv):
    """The lab's kmilter restarted with these milter.* settings."""
    lab = S["lab"]
    with open(lab.env["LAB_CONF"]) as fp:
        conf = fp.read()
    for k, v in kv.items():
        conf = re.sub(r"\n\s*%s\s*=[^;]*;" % k, "\n", conf)
        conf = re.sub(r"milter\s*:\s*\{", lambda m: m.group(0) + "\n\t%s = %d;" % (k, v),
                      conf, count=1)
    with open(lab.env["LAB_CONF"], "w") as fp:
        fp.write(conf)
    lab.restart_milter()
    S["pid"] = lab.milter_pid()
    S["baseline"] = unlinked()


def unlinked():
    """kmilter's open files that have been unlinked (spool files are)."""
    out = []
    d = "/proc/%d/fd" % S["pid"]
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.endswith("(deleted)") or "O_TMPFILE" in t or "/#" in t:
            out.append(t)
    return sorted(out)


def nothing_left(what):
    spool = os.path.join(S["lab"].dir, "kmilter", "spool")
    wait_for(lambda: unlinked() == S["baseline"], 10,
             "%s: spool files still open: %s" % (what, unlinked()))
    left = os.listdir(spool)
    check(not left, "%s: files in the spool directory: %s" % (what, left))


def send(data, qid, disconnect_after=None):
    """One outbound message alice -> bob; (steps, EomResult or None)."""
    c = mc.MilterClient(S["lab"].env["LAB_MILTER_SOCK"], timeout=120)
    c.negotiate()
    hdrs = [("From", "Alice <%s>" % ALICE), ("To", "<%s>" % BOB),
            ("Subject", "spool %s" % qid), ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=us-ascii")]
    try:
        if disconnect_after is not None:
            c.macros("C", {"j": "mx.example.com", "{client_addr}": "127.0.0.1"})
            c.connect("localhost", "4", 25, "127.0.0.1")
            c.macros("M", {"i": qid})
            c.mail("<%s>" % ALICE)
            c.rcpt("<%s>" % BOB)
            for n, v in hdrs:
                c.header(n, v)
            c.eoh()
            c.body(data[:disconnect_after])
            return None, None
        return c.message("<%s>" % ALICE, ["<%s>" % BOB], hdrs, data, queue_id=qid,
                         client=("localhost", "4", 25, "127.0.0.1"))
    finally:
        c.close()


def log_line(qid):
    line = None
    for x in S["lab"].log_text().decode("utf-8", "replace").splitlines():
        if x.split(": ", 2)[1:2] == [qid] or (": %s: from=" % qid) in x:
            line = x
    return line or ""


def tempfailed_spool_full(qid, steps, res, where):
    reply = res.reply if res is not None else steps[-1][1]
    check(reply.code == "replycode" and reply.text.startswith("451 4.3.2"),
          "%s: want 451 4.3.2, got %r" % (where, reply))
    if res is not None:
        check_eq(res.mods, [], "%s: modifications of a tempfailed message" % where)
    line = wait_for(lambda: log_line(qid) if "result=tempfail" in log_line(qid) else None, 10,
                    "%s: no tempfail log line for %s" % (where, qid))
    check("spool full: milter.spool_disk_max_mb" in line, "%s: log: %s" % (where, line))


@suite.case("lab up, alice enrolled with a signing key, bob's certificate imported")
def _():
    lab = L.Lab("spool")
    suite.cleanups.append(lab.down)
    lab.up()
    L.enroll_users(lab, [ALICE], sign=True)
    pki = L.OutsidePKI(lab, "partner.example")
    S["bob"] = L.import_certs(lab, pki, [BOB])[BOB]
    S["lab"] = lab
    S["pid"] = lab.milter_pid()
    S["baseline"] = unlinked()


@suite.case("3 MB outbound, streamed: openssl cms decrypts and verifies it, nothing truncated")
def _():
    need("lab", "bob")
    steps, res = send(body(3 << 20), "SPOOLBIG1")
    check(res is not None and res.reply.code == "continue", "steps %r" % (steps[-1:],))
    new = res.body()
    check(new is not None and len(new) > 3 << 20, "no replaced body")
    ctype = [m for m in res.mods if m.kind == "addheader" and m[1].lower() == "content-type"]
    check(ctype and "enveloped-data" in ctype[0][2], "Content-Type %r" % ctype)
    p = S["lab"].wpath("big1.p7m")
    with open(p, "wb") as fp:
        fp.write(b"Content-Type: %s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 % ctype[0][2].encode() + new)
    crt, key = S["bob"]
    dec = p + ".dec"
    L.run(["openssl", "cms", "-decrypt", "-in", p, "-recip", crt, "-inkey", key, "-out", dec])
    ver = p + ".ver"
    L.run(["openssl", "cms", "-verify", "-noverify", "-in", dec, "-out", ver])
    with open(ver, "rb") as fp:
        content = fp.read()
    check(content.endswith(MARK + b"\r\n"), "signed content does not end with the marker")
    check(len(content) > 3 << 20, "signed content: %d bytes" % len(content))
    line = wait_for(lambda: log_line("SPOOLBIG1") or None, 10, "no log line")
    check("action=sign+encrypt result=ok" in line, line)
    nothing_left("streamed message")


@suite.case("spool_disk_max_mb = 2: a 3 MB body passes it while arriving -> 451 4.3.2 spool full")
def _():
    need("lab")
    milter_settings(spool_disk_max_mb=2)
    steps, res = send(body(3 << 20), "SPOOLFULL1")
    tempfailed_spool_full("SPOOLFULL1", steps, res, "receiving")
    nothing_left("spool full while receiving")


@suite.case("spool_disk_max_mb = 4: the body fits, its signed copy does not -> 451 4.3.2, "
            "nothing replaced")
def _():
    need("lab")
    milter_settings(spool_disk_max_mb=4)
    steps, res = send(body(5 << 19), "SPOOLFULL2")
    tempfailed_spool_full("SPOOLFULL2", steps, res, "signing")
    line = log_line("SPOOLFULL2")
    check("for the signed and encrypted copies" in line, "not found before the work: %s" % line)
    nothing_left("spool full while signing")


@suite.case("client disconnects in the middle of a 5 MB body: the spool file is closed")
def _():
    need("lab")
    milter_settings(spool_disk_max_mb=4096)
    send(body(5 << 20), "SPOOLDISC1", disconnect_after=2 << 20)
    nothing_left("disconnected mid-body")


@suite.case("spool directory on a 2 MB tmpfs: full while receiving and while signing -> "
            "tempfail, nothing replaced; delivered once it has room")
def _():
    need("lab")
    spool = os.path.join(S["lab"].dir, "kmilter", "spool")
    st = os.stat(spool)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700,uid=%d,gid=%d" % (
        st.st_uid, st.st_gid), "tmpfs", spool], capture_output=True)
    if r.returncode != 0:
        skip("cannot mount a tmpfs: %s" % r.stderr.decode().strip())
    try:
        steps, res = send(body(3 << 20), "SPOOLTMPFS1")
        reply = res.reply if res is not None else steps[-1][1]
        check(reply.code == "replycode" and reply.text.startswith("451 4.3.2"),
              "receiving into a full tmpfs: %r" % (reply,))
        check(res is None or res.mods == [], "modifications: %r" % (res and res.mods,))
        line = wait_for(lambda: log_line("SPOOLTMPFS1") or None, 10, "no log line")
        check("result=tempfail" in line and "cannot write" in line, line)
        steps, res = send(body(3 << 19), "SPOOLTMPFS2")
        check(res is not None and res.reply.code == "replycode" and
              res.reply.text.startswith("451 4.3.2"),
              "signing into a full tmpfs: %r" % (steps[-1:],))
        check_eq(res.mods, [], "modifications of a tempfailed message")
        line = wait_for(lambda: log_line("SPOOLTMPFS2") or None, 10, "no log line")
        check("result=tempfail" in line and "signing" in line, line)
        nothing_left("tmpfs full")
    finally:
        subprocess.run(["umount", spool], capture_output=True)
    steps, res = send(body(3 << 19), "SPOOLTMPFS3")
    check(res is not None and res.reply.code == "continue" and res.body() is not None,
          "after the tmpfs: %r" % (steps[-1:],))
    nothing_left("after the tmpfs")


if __name__ == "__main__":
    sys.exit(suite.run())
