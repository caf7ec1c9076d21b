#!/usr/bin/python3
"""t-split - policy.outbound.missing_cert = "split" end to end: mixed
recipients each get the best they can have, with Postfix as the sending MTA.

One lab (missing_cert = "split"; rule: plain.example encrypt = "never");
alice@example.com enrolled with a signing key, dave@outside.example's
certificate imported; nocert@nowhere.example has none.
- milter protocol, against the lab's kmilter (which has a KM): RCPT dave
  then nocert -> continue, then 452 4.5.3; nocert then dave -> continue,
  then 452 4.5.3 (the first accepted recipient sets the group);
- SMTP at the gateway from the internal client: RCPT dave 250, nocert 452
  4.5.3, x@plain.example (rule never) 452 4.5.3; DATA: dave's copy is
  encrypted, logged rcpts=1 result=ok (no downgrade); each split is
  logged at info with the recipient and its group;
- the organization's internal mail server: a second private Postfix
  (tests/lablib/postfix.sh, its own directory and port, no milter,
  relayhost = [127.0.0.1]:the gateway's port, queue_run_delay 3s,
  minimal_backoff_time 10s) takes one message from alice to dave and
  nocert.  The sink gets it twice, once per transaction: dave's copy
  encrypted (dave's key opens it, alice's signature verifies inside),
  nocert's signed only (verifies under the org CA, its body in clear),
  each with one recipient; the internal Postfix logged nocert deferred
  with kmilter's 452 4.5.3.  The delay between the two deliveries is
  measured and printed ("figure:"): it shows whether Postfix's smtp
  client resends a 452'd recipient at once or at its next queue run.
  Again with nocert@zz.example, which Postfix's recipient order (by
  domain) puts after dave: the encrypted transaction goes first.
- dave + 22 recipients without a certificate, with the gateway Postfix's
  smtpd error limits set to Postfix's defaults (soft 10, hard 20, sleep
  1s): every 452 counts as an error, and the gateway cuts the session with
  421 before DATA, dave included: nothing is delivered (documented in
  docs/split.md); with the limits raised again (the lab's 1000) and the
  internal queue flushed, dave's copy arrives encrypted and the 22 in one
  signed transaction.
Env: T_SPLIT_BACKOFF (the internal Postfix's minimal_backoff_time in
seconds, default 10).
"""
import os
import re
import shlex
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
import ktest  # noqa: E402
from ktest import TOP, Suite, check, check_eq, wait_for  # noqa: E402
import labsmtp  # noqa: E402
import protocases  # noqa: E402

ALICE = "alice@example.com"
DAVE = "dave@outside.example"
NOCERT = "nocert@nowhere.example"
NOCERT_LATE = "nocert@zz.example"
PLAIN = "x@plain.example"
POLICY = """outbound: { missing_cert = "split"; };
	rules = ( { match = "plain.example"; encrypt = "never"; } );"""
# The internal server's retry timing: short, so that a retry at the next
# queue run is seen within the test, and far apart enough to be told from
# a resend at once.
# Env T_SPLIT_BACKOFF (seconds, default 10): minimal_backoff_time.
BACKOFF = int(os.environ.get("T_SPLIT_BACKOFF", "10"))
INTERNAL_TIMING = {"queue_run_delay": "3s", "minimal_backoff_time": "%ds" % BACKOFF,
                   "maximal_backoff_time": "%ds" % (2 * BACKOFF)}

suite = Suite()
S = {}


def need(*keys):
    ktest.need(S, *keys)


def lablib(script):
    """Run sh script with tests/lablib/common.sh and postfix.sh sourced."""
    lib = os.path.join(TOP, "tests", "lablib")
    return L.run(["/bin/sh", "-c", ". %s/common.sh; . %s/postfix.sh; %s" % (
        shlex.quote(lib), shlex.quote(lib), script)], timeout=120)


def message(rcpts, what):
    tok = L.new_token()
    raw = labsmtp.make_message(ALICE, rcpts, "split %s %s" % (what, tok),
                               "BODY-%s\r\nmixed recipients\r\n" % tok)
    # the token in the Message-ID too: an encrypted copy's Subject is "[...]"
    return tok, re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: <%s@lab.test>" % tok.encode(), raw)


def reply(r):
    return r[0], r[1].decode("utf-8", "replace") if isinstance(r[1], bytes) else r[1]


def gateway_qid(msg):
    """The gateway Postfix's queue id, from its Received header."""
    m = re.search(rb"by mx\.example\.com \(Postfix\) with E?SMTP id ([0-9A-Za-z]+)", msg)
    check(m is not None, "no Received header of the gateway in %r" % msg[:600])
    return m.group(1).decode()


def gateway_line(msg):
    qid = gateway_qid(msg)
    line = labsmtp.wait_log_line(S["lab"].env, qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return labsmtp.parse_log_line(line), line


def wfile(name, data):
    p = S["lab"].wpath(name)
    with open(p, "wb") as fp:
        fp.write(data)
    return p


def dave_opens(msg, name):
    """The plaintext dave's key gets out of msg (openssl cms -decrypt)."""
    out = S["lab"].wpath(name + ".dec")
    L.run(["openssl", "cms", "-decrypt", "-recip", S["dave"][0], "-inkey", S["dave"][1],
           "-in", wfile(name + ".eml", msg), "-out", out])
    with open(out, "rb") as fp:
        return fp.read()


def verifies(entity, name):
    """openssl cms -verify of a multipart/signed entity under the org CA."""
    L.run(["openssl", "cms", "-verify", "-CAfile", S["lab"].env["LAB_CA_CERT"], "-purpose",
           "smimesign", "-in", wfile(name + ".signed", entity), "-out", "/dev/null"])


def split_logged(rcpt, group):
    text = S["lab"].log_text().decode("utf-8", "replace")
    return re.search(r"outbound: rcpt=<%s> split: group=%s, " % (re.escape(rcpt), group),
                     text) is not None


@suite.case("lab up (missing_cert = split), alice enrolled, dave's certificate imported")
def _():
    lab = L.Lab("split", policy=POLICY)
    suite.cleanups.append(lab.down)
    lab.up()
    L.enroll_users(lab, [ALICE], sign=True)
    pki = L.OutsidePKI(lab, "outside.example")
    S["dave"] = L.import_certs(lab, pki, [DAVE])[DAVE]
    S["lab"] = lab


@suite.case("milter protocol: dave then nocert -> continue, 452 4.5.3; nocert then dave "
            "-> continue, 452 4.5.3")
def _():
    need("lab")
    sock = S["lab"].env["LAB_MILTER_SOCK"]
    for order, qid in (([DAVE, NOCERT], "SPLITP1"), ([NOCERT, DAVE], "SPLITP2")):
        got = protocases.rcpt_replies(sock, ALICE, order, qid)
        check_eq([r.code for r in got], ["continue", "replycode"], "%s: %r" % (order, got))
        check(got[1].text.startswith("452 4.5.3 <%s>" % order[1]), "%s: %r" % (order, got[1]))
    check(split_logged(NOCERT, "signed-only"), "split of nocert not logged")
    check(split_logged(DAVE, "encrypted"), "split of dave not logged")


@suite.case("SMTP at the gateway: dave 250, nocert 452 4.5.3, x@plain (never) 452 4.5.3; "
            "dave's copy encrypted, not downgraded")
def _():
    need("lab")
    env = S["lab"].env
    tok, raw = message([DAVE, NOCERT, PLAIN], "direct")
    s = labsmtp.connect(env)
    try:
        check_eq(s.mail(ALICE)[0], 250, "MAIL")
        got = [reply(s.rcpt(r)) for r in (DAVE, NOCERT, PLAIN)]
        check_eq([c for c, _ in got], [250, 452, 452], "RCPT codes %r" % (got,))
        for (c, text), r in zip(got[1:], (NOCERT, PLAIN)):
            check(text.startswith("4.5.3 <%s>" % r) and "separately" in text,
                  "RCPT %s: %r" % (r, text))
        code, resp = s.data(raw)
        check_eq(code, 250, "DATA %r" % resp)
        qid = labsmtp.QUEUED_RE.search(resp).group(1).decode()
    finally:
        s.quit()
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(env, qid, 60))
    f, line = gateway_line(msg)
    check_eq((f.get("rcpts"), f.get("action"), f.get("result")), ("1", "sign+encrypt", "ok"),
             "log line %s" % line)
    check(L.is_enveloped(msg) and ("BODY-" + tok).encode() not in msg, "not encrypted")
    check(("BODY-" + tok).encode() in dave_opens(msg, "direct"), "dave cannot read it")
    check(split_logged(PLAIN, "signed-only"), "split of x@plain.example not logged")


@suite.case("internal Postfix up: its own directory and port, relayhost = the gateway")
def _():
    need("lab")
    lab = S["lab"]
    d = os.path.join(lab.top, "internal")
    os.makedirs(d)
    port = lablib("lab_pick_ports 1").stdout.decode().split()[0]
    timing = " ".join("%s=%s" % kv for kv in INTERNAL_TIMING.items())
    suite.cleanups.append(lambda: lablib("postfix_stop %s" % shlex.quote(d)))
    # myhostname of its own: the same as the gateway's would be a mail loop
    lablib("postfix_setup {d} {p} {gw} '' && postconf -c {d}/postfix -e "
           "myhostname=internal.example.com syslog_name=postfix-internal {t} && "
           "postfix_check {d} && postfix_start {d}".format(
               d=shlex.quote(d), p=port, gw=lab.env["LAB_SMTP_PORT"], t=timing))
    check(lablib("lab_wait_tcp %s 20 && echo up" % port).stdout.strip() == b"up",
          "the internal Postfix does not listen on %s" % port)
    S["internal"] = {"dir": d, "env": dict(lab.env, LAB_SMTP_PORT=port,
                                           LAB_DIR=d)}


def relayed(nocert, what):
    """alice -> dave + nocert through the internal Postfix: both delivered,
    in two transactions; the delay between them printed."""
    need("lab", "internal")
    env, ienv = S["lab"].env, S["internal"]["env"]
    tok, raw = message([DAVE, nocert], what)
    t0 = time.time()
    iqid = labsmtp.submit(ienv, ALICE, [DAVE, nocert], raw)
    times = {}

    def arrived():
        for p in L.scan_out(env).get(tok, []):
            sink, _ = labsmtp.read_delivered(p)
            for r in sink.get("X-Rcpt-Args", []):
                times.setdefault(r, (time.time(), p))
        return len(times) == 2
    check(wait_for(arrived, 90, "both copies at the sink"),
          "delivered to %r only; internal queue: %s" % (
              sorted(times), L.run(["postqueue", "-c", S["internal"]["dir"] + "/postfix", "-p"],
                                   ok=False).stdout[-400:]))
    rcpt = {r.strip("<> ").split()[0].strip("<>").lower(): v for r, v in times.items()}
    check_eq(sorted(rcpt), sorted([DAVE, nocert]), "recipients at the sink")
    check(rcpt[DAVE][1] != rcpt[nocert][1], "one file for both: one transaction")

    _, dmsg = labsmtp.read_delivered(rcpt[DAVE][1])
    f, line = gateway_line(dmsg)
    check_eq((f.get("rcpts"), f.get("action"), f.get("result")), ("1", "sign+encrypt", "ok"),
             "dave's transaction: %s" % line)
    check(L.is_enveloped(dmsg) and ("BODY-" + tok).encode() not in dmsg, "dave's not encrypted")
    plain = dave_opens(dmsg, what)
    check(("BODY-" + tok).encode() in plain, "dave's plaintext lacks the body")
    verifies(plain, what + "-dave")

    _, nmsg = labsmtp.read_delivered(rcpt[nocert][1])
    f, line = gateway_line(nmsg)
    check_eq((f.get("rcpts"), f.get("action"), f.get("result")), ("1", "sign", "downgraded"),
             "nocert's transaction: %s" % line)
    check((L.header_value(nmsg, "Content-Type") or "").lower().startswith("multipart/signed"),
          "nocert's not multipart/signed")
    check(("BODY-" + tok).encode() in nmsg, "nocert's body not in clear")
    verifies(nmsg, what + "-nocert")

    with open(os.path.join(S["internal"]["dir"], "postfix", "maillog"), "rb") as fp:
        ilog = fp.read().decode("utf-8", "replace")
    # Postfix orders recipients by domain, not as submitted
    later = DAVE if rcpt[DAVE][0] > rcpt[nocert][0] else nocert
    deferred = re.search(r" %s: to=<%s>.*status=deferred.*said: 452 4\.5\.3 " % (
        iqid, re.escape(later)), ilog)
    check(deferred, "the internal Postfix did not log %s deferred with 452 4.5.3" % later)
    first = min(rcpt[DAVE][0], rcpt[nocert][0])
    delay = abs(rcpt[nocert][0] - rcpt[DAVE][0])
    print("figure: the internal Postfix sent %s first; %s (452 4.5.3, deferred) arrived "
          "%.1f s after it (first copy %.1f s after submission); queue_run_delay %s, "
          "minimal_backoff_time %s" % (
              DAVE if later == nocert else nocert, later, delay, first - t0,
              INTERNAL_TIMING["queue_run_delay"], INTERNAL_TIMING["minimal_backoff_time"]),
          flush=True)
    return delay


@suite.case("alice -> dave + nocert@nowhere through the internal Postfix: two transactions, "
            "dave's encrypted, nocert's signed only; the resend delay measured")
def _():
    relayed(NOCERT, "relayed")


@suite.case("alice -> dave + nocert@zz (after dave in Postfix's order): the same, the other "
            "group first")
def _():
    relayed(NOCERT_LATE, "relayed-late")


def gateway_limits(soft, hard, sleep):
    """Set the running gateway Postfix's smtpd error limits; reload."""
    conf = S["lab"].env["LAB_POSTFIX_CONF"]
    L.run(["postconf", "-c", conf, "-e", "smtpd_soft_error_limit=%d" % soft,
           "smtpd_hard_error_limit=%d" % hard, "smtpd_error_sleep_time=%ds" % sleep])
    L.run(["postfix", "-c", conf, "reload"])


@suite.case("22 recipients split off: with Postfix's default smtpd error limits the gateway "
            "cuts the session (421 too many errors); with them raised all are delivered")
def _():
    need("lab", "internal")
    env, ienv, idir = S["lab"].env, S["internal"]["env"], S["internal"]["dir"]
    many = ["n%02d@zz.example" % i for i in range(22)]
    tok, raw = message([DAVE] + many, "many")
    # Postfix's defaults (postconf -d); the lab's gateway has 1000, 1000, 0s
    gateway_limits(10, 20, 1)
    suite.cleanups.append(lambda: gateway_limits(1000, 1000, 0))
    t0 = time.time()
    iqid = labsmtp.submit(ienv, ALICE, [DAVE] + many, raw)

    def ilog():
        with open(os.path.join(idir, "postfix", "maillog"), "rb") as fp:
            return fp.read().decode("utf-8", "replace")
    cut = r" %s: to=<[^>]*>.*status=deferred.*said: 421 4\.7\.0 .*too many errors" % iqid
    check(wait_for(lambda: re.search(cut, ilog()), 60, "421 too many errors"),
          "the gateway did not cut the session")
    lost = re.search(r" %s: to=<%s>.*status=deferred" % (iqid, re.escape(DAVE)), ilog())
    check(lost, "dave, accepted in the cut session, was not deferred")
    check(not L.scan_out(env).get(tok), "delivered although the session was cut")
    print("figure: Postfix default smtpd error limits (soft 10, hard 20, sleep 1s): dave + 22 "
          "split recipients: session cut with 421 after %.1f s, nothing delivered"
          % (time.time() - t0), flush=True)

    gateway_limits(1000, 1000, 0)
    L.run(["postqueue", "-c", os.path.join(idir, "postfix"), "-f"], ok=False)
    files = {}

    def arrived():
        for p in L.scan_out(env).get(tok, []):
            sink, _ = labsmtp.read_delivered(p)
            files[p] = [r.strip("<> ").split()[0].strip("<>") for r in sink.get("X-Rcpt-Args", [])]
        return sum(len(v) for v in files.values()) == 23
    check(wait_for(arrived, 90, "all 23 recipients at the sink"),
          "delivered: %r" % sorted(files.values()))
    check_eq(sorted(len(v) for v in files.values()), [1, 22], "recipients per transaction")
    for p, rc in files.items():
        _, msg = labsmtp.read_delivered(p)
        f, line = gateway_line(msg)
        if rc == [DAVE]:
            check(L.is_enveloped(msg) and f.get("action") == "sign+encrypt", "dave's: %s" % line)
        else:
            check_eq(sorted(rc), many, "the signed transaction's recipients")
            check_eq((f.get("rcpts"), f.get("action")), ("22", "sign"), "signed: %s" % line)


@suite.case("kmilter survived, nothing left in either queue")
def _():
    need("lab")
    check(S["lab"].milter_pid() is not None and ktest.pid_alive(S["lab"].milter_pid()),
          "kmilter is not running")
    log = S["lab"].log_text()
    check(b"ERROR: AddressSanitizer" not in log and b"runtime error:" not in log,
          "sanitizer report in kmilter's log")
    check(wait_for(lambda: not S["lab"].postqueue(), 30, "gateway queue empty"),
          "gateway queue: %s" % S["lab"].postqueue())
    if "internal" in S:
        r = L.run(["postqueue", "-c", S["internal"]["dir"] + "/postfix", "-p"], ok=False)
        check(b"Mail queue is empty" in r.stdout, "internal queue: %r" % r.stdout[-300:])


if __name__ == "__main__":
    sys.exit(suite.run())
