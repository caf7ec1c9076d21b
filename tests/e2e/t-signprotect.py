#!/usr/bin/python3
"""t-signprotect - signing keys that follow the protection password, and
outbound downgrades that are never silent (issue 17 items 3 and 7), end to
end through the lab: real Postfix, kmilter, Redis and the two PyKMIP
servers.

One lab whose kmilter.conf gets a hook group naming a copy of
tests/e2e/hooks/scripted (its "behaviour" file says what the hook answers,
its "calls" file lists "EVENT ADDRESS LEVEL [KEY]" per run) with
hook.unlocked_key_ttl = 4, and a rule that never encrypts to
partner.example, so that mail to dave@partner.example is signed only by
policy (no downgrade) and only what a case provokes is counted.

Users: sam@example.com enrolled with `kmctl enroll --protect`, his signing
key made by `kmctl signing-enroll` with the password (refused without it);
pat@example.com at level default with a plain signing key, then
set-password; nokey@example.com enrolled without a signing key here.

Item 3 cases: the hook hands over the password -> sam's message is signed
and `openssl cms -verify` accepts it, the hook saw "unlock sam enhanced
signing"; a second message within the TTL does not ask again; past the TTL
it asks again; keep-encrypted -> sent unsigned, result=downgraded
signed=no with "locked: keep-encrypted" (and counted); a wrong password ->
unsigned, "wrong password", and the next message does not ask again;
locked_signing_key = "tempfail" -> 451 at end of DATA; a plain signing key
of a user made enhanced elsewhere (the file put back as it was before
set-password, as on another gateway) is protected lazily on first use
with the hook's password; clear-password makes it plain again and the
hook is not asked.

Item 7 walk (every downgrade path of milter/outbound.c): not encrypted
(an opportunistic recipient without certificate: encrypted=no), no
signing key here, a locked signing key, the client did not authenticate
(policy.sign_unauthenticated = false): each reads the log line
(result=downgraded, signed=no / encrypted=no, the reason) and the counters
of `kmctl stats` (downgraded_unsigned / downgraded_unencrypted, text and
prometheus).  No password appears in kmilter's log.
"""
import glob
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import Failure, Suite, check, check_eq, skip, wait_for  # noqa: E402
from hooklab import HookLab, run  # noqa: E402
import labsmtp  # noqa: E402

SAM = "sam@example.com"
PAT = "pat@example.com"
NOKEY = "nokey@example.com"
DAVE = "dave@partner.example"      # policy: never encrypted
EVE = "eve@other.example"          # opportunistic, no certificate
PW_SAM = "sam-Sign 1!"
PW_PAT = "pat-secret-77"
TTL = 4
POLICY = ('rules = ( { match = "partner.example"; encrypt = "never"; } );\n'
          'sign_unauthenticated = true;\n'
          'outbound: { locked_signing_key = "unsigned"; };')
S = {}
H = None        # the HookLab


def env():
    if "users" not in S:
        skip("lab or enrollment not ready")
    return S["env"]


def behave(unlock, password=PW_SAM):
    H.behave("unlock=%s\nrelease=allow\npassword=%s\n" % (unlock, password))


def stats():
    """kmctl stats as a dict of ints."""
    out = H.kmctl("stats").stdout.decode()
    return {k: int(v) for k, v in re.findall(r"^(\w+)=(-?\d+)$", out, re.M)}


def send(sender, rcpt, tag):
    """Submit from the internal client; (message, log fields, log line)."""
    raw = labsmtp.make_message(sender, [rcpt], "signprotect " + tag,
                               "Hello %s from %s.\r\n" % (tag, sender))
    qid = labsmtp.submit(S["env"], sender, [rcpt], raw, timeout=60)
    path = labsmtp.wait_delivered(S["env"], qid, 60)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(S["env"], qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return msg, labsmtp.parse_log_line(line), line


def check_signed(msg, fields, tag):
    """Signed (only) and verified by openssl against the org CA."""
    check_eq(fields.get("action"), "sign", "log action")
    check_eq(fields.get("result"), "ok", "log result")
    f = H.wfile("signed-%s.eml" % tag, msg)
    r = run(["openssl", "cms", "-verify", "-CAfile", S["env"]["LAB_CA_CERT"], "-purpose",
             "smimesign", "-in", f, "-out", H.wpath("content-%s" % tag)])
    check(b"Verification successful" in r.stderr, "openssl: %r" % r.stderr[-200:])
    with open(H.wpath("content-%s" % tag), "rb") as fp:
        check(("Hello %s" % tag).encode() in fp.read(), "signed content")


def check_unsigned(msg, fields, line, why, kinds=("signed=no",)):
    """Sent unsigned, logged result=downgraded (warning level only) saying
    what it lost and why."""
    check(b"pkcs7-signature" not in msg.lower() and b"pkcs7-mime" not in msg.lower(),
          "the message is signed")
    check_eq(fields.get("result"), "downgraded", "log result")
    for k in kinds:
        check(" %s " % k in line, "log line lacks %s: %r" % (k, line))
    reason = line.partition(" reason=")[2]
    check(why in reason, "log reason %r does not say %r" % (reason, why))


def key_files():
    d = os.path.join(S["env"]["LAB_DIR"], "kmilter", "state", "signing")
    out = {}
    for p in glob.glob(os.path.join(d, "*.key")):
        with open(p, "rb") as fp:
            out[p] = fp.read()
    return out


def counted(before, name, n=1):
    after = stats()
    check_eq(after.get(name, 0) - before.get(name, 0), n, "kmctl stats %s" % name)
    return after


def main():
    global H
    suite = Suite()
    H = HookLab(suite, "t-signprotect.")
    S["figures"] = []

    @suite.case("lab up with a hook group (unlocked_key_ttl %d)" % TTL)
    def _():
        behave("keep-encrypted")
        extra = 'hook: { path = "%s"; timeout_ms = 3000; unlocked_key_ttl = %d; };' % (
            H.hook, TTL)
        S["env"] = H.up(KMILTER_CONF_EXTRA=extra, KMILTER_CONF_POLICY=POLICY)
        check(S["env"].get("LAB_KM_A") and S["env"].get("LAB_REDIS"), "KM or Redis not started")

    @suite.case("enroll: sam --protect, signing-enroll refused without the password, "
                "made protected with it; pat and nokey at level default")
    def _():
        if "env" not in S:
            skip("lab is not up")
        pws = H.wfile("pw-sam", PW_SAM + "\n")
        out = H.kmctl("enroll", SAM, "--protect", "--password-file", pws).stdout.decode()
        check("protection enhanced" in out, "enroll --protect said %r" % out)
        before = key_files()
        r = H.kmctl("signing-enroll", SAM, ok=False)
        check(r.returncode != 0 and b"needs the protection password" in r.stderr,
              "signing-enroll without a password: rc %d %r" % (r.returncode, r.stderr[-300:]))
        r = H.kmctl("signing-enroll", SAM, "--password-file", H.wfile("pw-bad", "not-it-at-all\n"),
                  ok=False)
        check(r.returncode != 0 and b"wrong password" in r.stderr, "wrong password accepted")
        check_eq(key_files(), before, "signing keys after the refusals")
        out = H.kmctl("signing-enroll", SAM, "--password-file", pws).stdout.decode()
        check("key protected by the user's password" in out, "signing-enroll said %r" % out)
        for u in (PAT, NOKEY):
            H.kmctl("enroll", u)
        out = H.kmctl("signing-enroll", PAT).stdout.decode()
        check("protected" not in out, "pat's key protected? %r" % out)
        S["users"] = True

    @suite.case("the hook hands over the password: signed, openssl verifies, "
                "asked once within the TTL")
    def _():
        env()
        behave("password")
        msg, f, _ = send(SAM, DAVE, "pw1")
        check_signed(msg, f, "pw1")
        check_eq(H.calls(), [["unlock", SAM, "enhanced", "signing"]], "hook calls")
        S["unlocked_at"] = time.monotonic()
        msg, f2, _ = send(SAM, DAVE, "pw2")
        check_signed(msg, f2, "pw2")
        check_eq(len(H.calls()), 1, "hook calls within the TTL")
        S["figures"].append("signing key unlocked by the hook: first message ms=%s, next "
                            "(unlocked, in memory) ms=%s" % (f.get("ms"), f2.get("ms")))

    @suite.case("past hook.unlocked_key_ttl the hook is asked again")
    def _():
        env()
        if "unlocked_at" not in S:
            skip("not unlocked")
        # the TTL is a span of time, not an event: wait it out
        wait_for(lambda: time.monotonic() > S["unlocked_at"] + TTL + 0.5, TTL + 5, "TTL over")
        msg, f, _ = send(SAM, DAVE, "pw3")
        check_signed(msg, f, "pw3")
        check_eq(len(H.calls()), 2, "hook calls after the TTL")

    @suite.case("keep-encrypted: sent unsigned, result=downgraded signed=no, counted")
    def _():
        env()
        H.kmctl("flush", SAM)
        behave("keep-encrypted")
        before = stats()
        msg, f, line = send(SAM, DAVE, "keep")
        check_unsigned(msg, f, line, "signing key of %s locked: keep-encrypted" % SAM)
        after = counted(before, "downgraded_unsigned")
        check_eq(after["downgraded_outbound"] - before["downgraded_outbound"], 1,
                 "downgraded_outbound")
        check_eq(after.get("downgraded_unencrypted", 0), before.get("downgraded_unencrypted", 0),
                 "downgraded_unencrypted")
        check_eq(H.calls(), [["unlock", SAM, "enhanced", "signing"]], "hook calls")

    @suite.case("wrong password: unsigned, 'wrong password', the next message does not ask")
    def _():
        env()
        H.kmctl("flush", SAM)
        behave("wrong")
        msg, f, line = send(SAM, DAVE, "wrong1")
        check_unsigned(msg, f, line, "wrong password")
        msg, f, line = send(SAM, DAVE, "wrong2")
        check_unsigned(msg, f, line, "wrong password")
        check_eq(len(H.calls()), 1, "hook calls")

    @suite.case("locked_signing_key = tempfail: 451 at end of DATA")
    def _():
        env()
        H.restart_milter('locked_signing_key = "unsigned";', 'locked_signing_key = "tempfail";')
        try:
            behave("keep-encrypted")
            raw = labsmtp.make_message(SAM, [DAVE], "tempfail", "Hello.\r\n")
            try:
                labsmtp.submit(S["env"], SAM, [DAVE], raw, timeout=60)
                raise Failure("the message was accepted")
            except smtplib.SMTPDataError as e:
                check(400 <= e.smtp_code < 500, "got %d %r, want 4xx" % (e.smtp_code, e.smtp_error))
            check_eq(len(H.calls()), 1, "hook calls")
        finally:
            H.restart_milter('locked_signing_key = "tempfail";', 'locked_signing_key = "unsigned";')

    @suite.case("set-password elsewhere: a plain signing key is protected on first use")
    def _():
        env()
        plain = key_files()
        pwf = H.wfile("pw-pat", PW_PAT + "\n")
        out = H.kmctl("set-password", PAT, "--password-file", pwf).stdout.decode()
        check("signing key on this gateway protected" in out, "set-password said %r" % out)
        now = key_files()
        changed = [p for p in now if now[p] != plain.get(p)]
        check_eq(len(changed), 1, "key files set-password changed")
        # put the plain file back: as on a gateway kmctl did not run on
        with open(changed[0], "wb") as fp:
            fp.write(plain[changed[0]])
        H.kmctl("flush", PAT)
        behave("password", password=PW_PAT)
        msg, f, _ = send(PAT, DAVE, "lazy")
        check_signed(msg, f, "lazy")
        check_eq(H.calls(), [["unlock", PAT, "enhanced", "signing"]], "hook calls")
        with open(changed[0], "rb") as fp:
            check(fp.read() != plain[changed[0]], "the key file was not wrapped")
        with open(S["env"]["LAB_LOG"], "rb") as fp:
            check(("signing key for %s is now protected" % PAT).encode() in fp.read(),
                  "lazy wrap not logged")
        # the hook's password must be the escrow's: another one wraps nothing
        S["pat_key"] = changed[0]

    @suite.case("clear-password: the signing key is plain again, the hook is not asked")
    def _():
        env()
        if "pat_key" not in S:
            skip("no protected key for pat")
        out = H.kmctl("clear-password", PAT, "--password-file", H.wpath("pw-pat")).stdout.decode()
        check("signing key on this gateway plain" in out, "clear-password said %r" % out)
        behave("crash")
        msg, f, _ = send(PAT, DAVE, "cleared")
        check_signed(msg, f, "cleared")
        check_eq(H.calls(), [], "hook calls at level default")

    @suite.case("downgrade walk: not encrypted -> encrypted=no, counted as unencrypted")
    def _():
        env()
        before = stats()
        msg, f, line = send(PAT, EVE, "noenc")
        check_eq(f.get("action"), "sign", "log action")
        check_eq(f.get("result"), "downgraded", "log result")
        check(" encrypted=no " in line and " signed=no " not in line, "line: %r" % line)
        check("not encrypted: <%s>" % EVE in line, "reason: %r" % line)
        after = counted(before, "downgraded_unencrypted")
        check_eq(after.get("downgraded_unsigned", 0), before.get("downgraded_unsigned", 0),
                 "downgraded_unsigned")

    @suite.case("downgrade walk: no signing key here -> signed=no, counted")
    def _():
        env()
        before = stats()
        msg, f, line = send(NOKEY, DAVE, "nokey")
        check_unsigned(msg, f, line, "has no signing key here")
        counted(before, "downgraded_unsigned")

    @suite.case("downgrade walk: sign_unauthenticated = false -> signed=no, counted")
    def _():
        env()
        H.restart_milter("sign_unauthenticated = true;", "sign_unauthenticated = false;")
        try:
            before = stats()
            msg, f, line = send(PAT, DAVE, "noauth")
            check_unsigned(msg, f, line, "the client did not authenticate")
            counted(before, "downgraded_unsigned")
        finally:
            H.restart_milter("sign_unauthenticated = false;", "sign_unauthenticated = true;")

    @suite.case("kmctl stats --format prometheus carries the counters")
    def _():
        env()
        text = stats()
        prom = H.kmctl("stats", "--format", "prometheus").stdout.decode()
        for lost, name in (("signature", "downgraded_unsigned"),
                           ("encryption", "downgraded_unencrypted")):
            want = 'kmilter_downgraded_outbound_total{lost="%s"} %d' % (lost, text[name])
            check(want in prom, "%r not in the prometheus output" % want)
        check("# TYPE kmilter_downgraded_outbound_total counter" in prom, "TYPE line")

    @suite.case("no password appears in kmilter's log")
    def _():
        env()
        H.check_no_secret_logged((PW_SAM, PW_PAT, "not-" + PW_SAM))

    t0 = time.time()
    rc = suite.run()
    for fig in S["figures"]:
        print("FIGURE %s" % fig)
    print("FIGURE t-signprotect %.1fs" % (time.time() - t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
