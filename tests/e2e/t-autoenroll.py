#!/usr/bin/python3
"""t-autoenroll - policy.auto_enroll end to end through the lab: real
Postfix, kmilter, Redis and the two PyKMIP servers.

One lab (KMILTER_CONF_POLICY sets auto_enroll, changed between cases by a
restart of kmilter), with a hook group naming a copy of
tests/e2e/hooks/scripted (its "behaviour" file says enroll=allow|deny|
garbage; its "calls" file lists the events it saw).

Cases: off -> an unenrolled internal sender's message goes out unsigned
and nothing is enrolled (today's behaviour); on -> the first message of a
new internal sender is signed (or tempfailed with 451 4.7.1 and signed on
the retry) and `kmctl show` lists generation 1, with an info log line
naming address, generation, fingerprint and the queue id; inbound mail to
an unenrolled internal recipient enrolls it; a sender outside
policy.internal_domains is never enrolled; two messages at once for one
new user -> exactly one generation; two `kmctl enroll` processes at once
(the KM race rule, as two gateways) -> exactly one Active generation; hook
deny, a malformed answer -> not enrolled (logged); hook allow -> enrolled;
a deny is remembered (the hook runs once for several messages).
FIGURE lines: the first message of a new user against later ones.
"""
import os
import re
import shlex
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, Suite, check, check_eq, skip, wait_for  # noqa: E402
from hooklab import LAB, HookLab, run  # noqa: E402
import labsmtp  # noqa: E402

DAVE = "dave@partner.example"
S = {}
H = None        # the HookLab


def kmctl(*args, ok=True):
    return H.kmctl(*args, ok=ok)


def env():
    if "env" not in S:
        skip("lab is not up")
    return S["env"]


def behave(enroll):
    H.behave("enroll=%s\nrelease=allow\n" % enroll)


def calls():
    return H.calls()


def gens(addr):
    """The Active generations kmctl show lists for addr."""
    out = kmctl("show", addr, ok=False).stdout.decode("utf-8", "replace")
    return re.findall(r"^%s generation (\d+) state Active\b" % re.escape(addr), out, re.M)


def all_gens(addr):
    out = kmctl("show", addr, ok=False).stdout.decode("utf-8", "replace")
    return re.findall(r"^%s generation (\d+) state (\S+)" % re.escape(addr), out, re.M)


def km_certs(addr):
    """Active certificates of addr on KM server A, straight from KMIP
    (kmctl show merges a generation's objects: it cannot count them)."""
    e = S["env"]
    port = e["LAB_KM_A"].rsplit(":", 1)[-1]
    r = run(["runuser", "-u", "kmilter", "--", os.path.join(BUILD, "tools", "kmip-probe"),
             "-p", port, "-C", os.path.join(e["LAB_DIR"], "km", "pki", "ca.crt"),
             "-c", e["LAB_KM_CLIENT_CERT"], "-k", e["LAB_KM_CLIENT_KEY"], "locate",
             "name=kmilter:enc:" + addr, "type=cert", "state=active"])
    return len(re.findall(rb"^uid=", r.stdout, re.M))


def set_mode(mode, wait_ms=2000):
    conf = S["env"]["LAB_CONF"]
    with open(conf) as fp:
        text = fp.read()
    new = re.sub(r'auto_enroll = "[a-z]+";', 'auto_enroll = "%s";' % mode, text)
    new = re.sub(r'auto_enroll_wait_ms = [0-9]+;', 'auto_enroll_wait_ms = %d;' % wait_ms, new)
    check(new != text or ('auto_enroll = "%s";' % mode) in text, "auto_enroll not in kmilter.conf")
    with open(conf, "w") as fp:
        fp.write(new)
    r = subprocess.run([LAB, "restart-milter", S["env"]["LAB_DIR"]], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, "restart-milter: %s" % r.stderr[-400:])


def message(sender, rcpt, subject):
    return labsmtp.make_message(sender, [rcpt], subject, "Hello from %s.\r\n" % sender)


def submit_retrying(sender, rcpt, subject, secs=60):
    """Submit from the internal client; a 451 4.7.1 (enrolling) is retried
    as an MTA would.  (qid, seconds of the accepted attempt, tempfails)."""
    raw = message(sender, rcpt, subject)
    tempfails = 0
    end = time.monotonic() + secs
    while True:
        t0 = time.monotonic()
        try:
            qid = labsmtp.submit(S["env"], sender, [rcpt], raw, timeout=60)
            return qid, time.monotonic() - t0, tempfails
        except smtplib.SMTPDataError as e:
            check(e.smtp_code == 451 and b"enrolling" in e.smtp_error,
                  "refused: %d %r" % (e.smtp_code, e.smtp_error))
            check(("<%s>" % sender).encode() in e.smtp_error, "4xx does not name the address")
            tempfails += 1
            check(time.monotonic() < end, "still tempfailed after %ds" % secs)
            # the retry waits for the background enrollment's log line
            wait_for(lambda: enrolled_line(sender), 30, "enrollment of %s logged" % sender)


def enrolled_line(addr):
    try:
        with open(S["env"]["LAB_LOG"], "rb") as fp:
            for line in fp:
                line = line.decode("utf-8", "replace")
                if "autoenroll: <%s>: enrolled" % addr in line:
                    return line
    except OSError:
        return None
    return None


def log_has(text):
    with open(S["env"]["LAB_LOG"], "rb") as fp:
        return text.encode() in fp.read()


def delivered(qid):
    path = labsmtp.wait_delivered(S["env"], qid, 120)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(S["env"], qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return msg, labsmtp.parse_log_line(line), line


def signed(msg, fields):
    return "sign" in (fields.get("action") or "") and b"pkcs7-signature" in msg.lower()


def main():
    global H
    suite = Suite()
    H = HookLab(suite, "t-autoenroll.")
    figures = []

    @suite.case("lab up: auto_enroll off, a hook group")
    def _():
        behave("deny")
        S["env"] = H.up(KMILTER_CONF_EXTRA='hook: { path = "%s"; timeout_ms = 3000; };' % H.hook,
                        KMILTER_CONF_POLICY='auto_enroll = "off"; auto_enroll_wait_ms = 2000;')
        check(S["env"].get("LAB_KM_A"), "KM not started")

    @suite.case("off: a new internal sender goes out unsigned, nothing enrolled")
    def _():
        env()
        u = "off1@example.com"
        qid = labsmtp.submit(S["env"], u, [DAVE], message(u, DAVE, "off"), timeout=60)
        msg, f, _ = delivered(qid)
        check(not signed(msg, f), "signed without a key?")
        check_eq(gens(u), [], "generations of %s" % u)
        check(not log_has("autoenroll: <%s>" % u), "autoenroll logged with auto_enroll off")

    @suite.case("on: first message of a new sender signed (maybe after one 451), "
                "generation 1 listed, enrollment logged")
    def _():
        env()
        set_mode("on")
        u = "new1@example.com"
        qid, secs, tf = submit_retrying(u, DAVE, "first")
        msg, f, _ = delivered(qid)
        check(signed(msg, f), "first message not signed: %r" % f)
        check_eq(gens(u), ["1"], "Active generations of %s" % u)
        line = enrolled_line(u)
        check(line is not None and "generation 1" in line and "sha256 " in line,
              "enrollment line: %r" % line)
        m = re.search(r"(\S+) autoenroll:", line)
        check(m and (m.group(1) == qid or (tf > 0 and m.group(1) not in ("NOQUEUE", "-"))),
              "no trigger queue id in %r" % line)
        check(log_has("autoenroll: <%s>: signing key made" % u), "signing key not logged")
        later = []
        for i in range(3):
            t0 = time.monotonic()
            q = labsmtp.submit(S["env"], u, [DAVE], message(u, DAVE, "later %d" % i), timeout=60)
            later.append(time.monotonic() - t0)
            m, f2, _ = delivered(q)
            check(signed(m, f2), "later message not signed")
        check_eq(gens(u), ["1"], "still one generation")
        figures.append("autoenroll first message %.0f ms (tempfails %d), later %.0f ms (median "
                       "of 3)" % (secs * 1000, tf, sorted(later)[1] * 1000))

    @suite.case("on: inbound mail to an unenrolled internal recipient enrolls it")
    def _():
        env()
        u = "in1@example.com"
        src = labsmtp.outside_client(S["env"])
        qid = labsmtp.submit(S["env"], DAVE, [u], message(DAVE, u, "inbound"), timeout=60,
                             source=src)
        delivered(qid)
        wait_for(lambda: gens(u) == ["1"], 60, "%s enrolled" % u)

    @suite.case("on: a sender outside internal_domains is never enrolled")
    def _():
        env()
        u = "stranger@partner.example"
        qid = labsmtp.submit(S["env"], u, [DAVE], message(u, DAVE, "outside"), timeout=60)
        delivered(qid)
        check_eq(gens(u), [], "generations of %s" % u)
        check(not log_has("autoenroll: <%s>" % u), "autoenroll touched %s" % u)

    @suite.case("on: two messages at once for one new user -> exactly one generation")
    def _():
        env()
        u = "twin@example.com"
        res, errs = [], []

        def one(i):
            try:
                res.append(submit_retrying(u, DAVE, "twin %d" % i))
            except BaseException as e:      # reported below
                errs.append(e)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        check(not errs, "submit failed: %r" % errs)
        check_eq(len(res), 2, "messages accepted")
        for qid, _, _ in res:
            msg, f, _ = delivered(qid)
            check(signed(msg, f), "twin message not signed")
        check_eq(gens(u), ["1"], "Active generations of %s" % u)
        check_eq(len(all_gens(u)), 1, "generations of %s (any state)" % u)
        check_eq(km_certs(u), 1, "Active certificates of %s on KM A" % u)

    @suite.case("two kmctl enroll at once (as two gateways) -> one Active generation")
    def _():
        env()
        u = "race@example.com"
        argv = shlex.split(S["env"]["LAB_KMCTL"]) + ["enroll", u]
        ps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL) for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in ps]
        ok = [p.returncode == 0 for p in ps]
        check(any(ok), "no enroll succeeded: %r" % outs)
        # one generation in any state: a loser left nothing behind (without
        # the rule the later one supersedes the first: two generations)
        check_eq(all_gens(u), [("1", "Active")], "generations of %s" % u)
        check_eq(km_certs(u), 1, "Active certificates of %s on KM A" % u)

    @suite.case("on, wait 0 ms: 451 4.7.1 enrolling <addr>, the retry is signed")
    def _():
        env()
        set_mode("on", 0)
        u = "slow@example.com"
        qid, _, tf = submit_retrying(u, DAVE, "retry")
        check(tf >= 1, "no tempfail with auto_enroll_wait_ms 0")
        msg, f, _ = delivered(qid)
        check(signed(msg, f), "retry not signed: %r" % f)
        check_eq(gens(u), ["1"], "Active generations of %s" % u)
        set_mode("on")

    @suite.case("hook: deny and a malformed answer -> not enrolled; allow -> enrolled")
    def _():
        env()
        set_mode("hook")
        for what in ("deny", "garbage"):
            u = "hook-%s@example.com" % what
            behave(what)
            qid = labsmtp.submit(S["env"], u, [DAVE], message(u, DAVE, what), timeout=60)
            msg, f, _ = delivered(qid)
            check(not signed(msg, f), "signed after %s" % what)
            check_eq(gens(u), [], "generations after hook %s" % what)
            check(["enroll", u, "default"] in calls(), "hook not asked: %r" % calls())
            check(log_has("autoenroll: <%s>: not enrolled" % u), "denial not logged")
        u = "hook-allow@example.com"
        behave("allow")
        qid, _, _ = submit_retrying(u, DAVE, "allow")
        msg, f, _ = delivered(qid)
        check(signed(msg, f), "not signed after allow")
        check_eq(gens(u), ["1"], "generations after allow")

    @suite.case("hook: a deny is remembered (policy.auto_enroll_deny_ttl): "
                "later messages of that sender do not run the hook again")
    def _():
        env()
        set_mode("hook")
        u = "hook-again@example.com"
        behave("deny")
        for i in range(3):
            qid = labsmtp.submit(S["env"], u, [DAVE], message(u, DAVE, "again %d" % i),
                                 timeout=60)
            msg, f, _ = delivered(qid)
            check(not signed(msg, f), "signed after deny (message %d)" % i)
        asked = [c for c in calls() if c[:2] == ["enroll", u]]
        check_eq(len(asked), 1, "hook runs for 3 messages of a denied sender")
        check(log_has("autoenroll: <%s>: not enrolled: enrollment denied by hook" % u),
              "denial not logged")
        check_eq(gens(u), [], "generations after deny")

    try:
        rc = suite.run()
    finally:
        for f in figures:
            print("FIGURE " + f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
