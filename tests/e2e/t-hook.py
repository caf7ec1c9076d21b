#!/usr/bin/python3
"""t-hook - the admin hook and protection passwords, end to end through the
lab: real Postfix, kmilter, Redis and the two PyKMIP servers.

One lab for the whole suite, whose kmilter.conf gets a hook group
(KMILTER_CONF_EXTRA) naming a copy of tests/e2e/hooks/scripted in the
suite's work directory; each case writes the hook's "behaviour" file next to
it and reads the "calls" file the hook appends to (the hook runs as user
kmilter with a clean environment, so it finds both next to itself).

Users: carol@example.com enrolled with `kmctl enroll --protect` (password
from a file), bob@example.com at level default, dan@example.com for the
set-password / clear-password round trip.  Inbound mail comes from
dave@partner.example, encrypted with openssl cms to the certificate from
`kmctl export-cert`.  Between cases `kmctl flush` drops the cached keys.

Cases: the hook hands over the password -> decrypted; keep-encrypted ->
the delivered CMS is the sent one byte for byte (and at the end, after
clear-password, openssl decrypts it with carol's key); wrong password ->
encrypted, and the next message does not ask the hook again; hook timeout,
crash, garbage, non-zero exit, missing -> keep-encrypted with the reason in
the log; on_failure = "tempfail" -> 4xx at end of DATA; release = true with
deny -> encrypted; a default-level user never asks the unlock hook;
set-password / clear-password round trip (kmctl show reports the level,
mail follows it); no password ever appears in kmilter's log.
"""
import base64
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, Failure, Suite, check, check_eq, skip  # noqa: E402
from hooklab import HookLab, run  # noqa: E402
import labsmtp  # noqa: E402

CAROL = "carol@example.com"
BOB = "bob@example.com"
DAN = "dan@example.com"
DAVE = "dave@partner.example"
PW_CAROL = "carol-Pass 1!"       # a space and punctuation on purpose
PW_DAN = "dan-secret-42"
MARK = "HOOK-TEST-BODY"

S = {}
H = None        # the HookLab


def kmctl(*args, ok=True, input=b""):
    return H.kmctl(*args, ok=ok, input=input)


def wpath(name):
    return H.wpath(name)


def wfile(name, data, mode=0o644):
    return H.wfile(name, data, mode)


def env():
    if "users" not in S:
        skip("lab or enrollment not ready")
    return S["env"]


def behave(unlock="keep-encrypted", release="allow", password=PW_CAROL):
    """What the hook does next; and start a fresh calls file."""
    H.behave("unlock=%s\nrelease=%s\npassword=%s\n" % (unlock, release, password))


def calls():
    return H.calls()


def flush(*addrs):
    for a in addrs:
        kmctl("flush", a)


def inbound(rcpt, tag):
    """A message from outside, encrypted with openssl to rcpt's escrowed
    certificate; returns (raw message, the CMS DER)."""
    crt = wpath(rcpt.split("@")[0] + ".crt")
    inner = wfile("inner-%s" % tag, "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                  "Hi, %s %s\r\n" % (MARK, tag))
    out = wpath("enc-%s" % tag)
    run(["openssl", "cms", "-encrypt", "-aes-256-cbc", "-in", inner, "-out", out,
         "-from", DAVE, "-to", rcpt, "-subject", "hook " + tag, crt])
    with open(out, "rb") as fp:
        raw = re.sub(rb"\r?\n", b"\r\n", fp.read())
    return raw, der_of(raw)


def der_of(msg):
    _, body = labsmtp.split_message(msg)
    return base64.b64decode(b"".join(body.split()), validate=True)


def send(rcpt, tag):
    """Send an encrypted message to rcpt; (sent DER, delivered msg, log fields)."""
    raw, der = inbound(rcpt, tag)
    qid = labsmtp.submit(S["env"], DAVE, [rcpt], raw, timeout=60)
    path = labsmtp.wait_delivered(S["env"], qid, 60)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(S["env"], qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return der, msg, labsmtp.parse_log_line(line), line


def check_decrypted(msg, fields, tag):
    check_eq(fields.get("action"), "decrypt", "log action")
    check(b"pkcs7-mime" not in msg.lower(), "still application/pkcs7-mime")
    check(("%s %s" % (MARK, tag)).encode() in msg, "plain text not in the delivered message")


def check_encrypted(sent, why):
    """sent = send()'s answer: delivered still encrypted, byte for byte the
    CMS that was sent, and the log line's reason (free text, the rest of
    the line from reason=) says why."""
    der, msg, fields, line = sent
    check_eq(fields.get("action"), "pass", "log action")
    check(b"application/pkcs7-mime" in msg.lower(), "not application/pkcs7-mime any more")
    check(der_of(msg) == der, "the delivered CMS is not the one sent")
    reason = line.partition(" reason=")[2]
    check(why in reason, "log reason %r does not say %r" % (reason, why))
    # The hook's own decision is policy (result=ok); a failure, a wrong
    # password or a missing hook leaves the mail less readable than policy
    # wanted: result=downgraded, at warning level.
    policy = "keep-encrypted" in why or (why.startswith("release denied")
                                         and "no hook configured" not in why)
    check_eq(fields.get("result"), "ok" if policy else "downgraded", "log result")


def restart_milter(old, new):
    H.restart_milter(old, new)


def main():
    global H
    suite = Suite()
    H = HookLab(suite, "t-hook.")
    hook = H.hook

    @suite.case("lab up with a hook group (timeout_ms 1000, on_failure default)")
    def _():
        behave()
        S["env"] = H.up(KMILTER_CONF_EXTRA='hook: { path = "%s"; timeout_ms = 1000; };' % hook)
        check(S["env"].get("LAB_KM_A") and S["env"].get("LAB_REDIS"), "KM or Redis not started")

    @suite.case("enroll carol --protect (password file), bob and dan at level default")
    def _():
        if "env" not in S:
            skip("lab is not up")
        pwf = wfile("pw-carol", PW_CAROL + "\n", 0o644)   # kmctl runs as kmilter
        out = kmctl("enroll", CAROL, "--protect", "--password-file", pwf).stdout.decode()
        check("protection enhanced" in out, "enroll --protect said %r" % out)
        kmctl("enroll", BOB)
        kmctl("enroll", DAN)
        show = kmctl("show", CAROL).stdout.decode()
        check("%s level enhanced" % CAROL in show, "show carol: %r" % show)
        check("%s level default" % BOB in kmctl("show", BOB).stdout.decode(), "show bob")
        for u in (CAROL, BOB, DAN):
            wfile(u.split("@")[0] + ".crt", kmctl("export-cert", u).stdout)
        # a password is never taken from the command line, and a short or
        # missing one is refused
        r = kmctl("set-password", DAN, "--password-file", wfile("short", "abc\n"), ok=False)
        check(r.returncode != 0 and b"characters" in r.stderr, "short password accepted")
        r = kmctl("set-password", DAN, "--password-fd", "0", ok=False)
        check(r.returncode != 0, "empty password from stdin accepted")
        S["users"] = True

    @suite.case("enhanced: hook hands over the password -> delivered decrypted")
    def _():
        env()
        flush(CAROL)
        behave("password")
        der, msg, f, _ = send(CAROL, "pw")
        check_decrypted(msg, f, "pw")
        check_eq(calls(), [["unlock", CAROL, "enhanced"]], "hook calls")

    @suite.case("enhanced: keep-encrypted -> delivered CMS byte-identical, reason logged")
    def _():
        env()
        flush(CAROL)
        behave("keep-encrypted")
        r = send(CAROL, "keep")
        check_encrypted(r, "locked: keep-encrypted")
        S["kept"] = r[1]

    @suite.case("enhanced: wrong password -> encrypted; next message does not ask again")
    def _():
        env()
        flush(CAROL)
        behave("wrong")
        r = send(CAROL, "wrong1")
        check_encrypted(r, "wrong password")
        check_eq(len(calls()), 1, "hook calls after the first message")
        r = send(CAROL, "wrong2")
        check_encrypted(r, "wrong password")
        check_eq(len(calls()), 1, "hook calls after the second message")

    for mode, why in (("sleep", "hook failed: timeout"), ("crash", "hook failed: killed by signal"),
                      ("garbage", "hook failed: malformed"), ("exit1", "hook failed: non-zero exit"),
                      ("missing", "hook failed: cannot start")):
        @suite.case("hook %s -> on_failure keep-encrypted, log says %r" % (mode, why))
        def _(mode=mode, why=why):
            env()
            flush(CAROL)
            behave(mode if mode != "missing" else "password")
            if mode == "missing":
                os.rename(hook, hook + ".away")
            try:
                r = send(CAROL, mode)
            finally:
                if mode == "missing":
                    os.rename(hook + ".away", hook)
            check_encrypted(r, why)

    @suite.case("default-level user: decrypted, the unlock hook is never asked")
    def _():
        env()
        flush(BOB)
        behave("crash")
        der, msg, f, _ = send(BOB, "bob")
        check_decrypted(msg, f, "bob")
        check_eq(calls(), [], "hook calls")

    @suite.case("on_failure = tempfail: a failing hook gives 4xx at end of DATA")
    def _():
        env()
        restart_milter("timeout_ms = 1000;", 'timeout_ms = 1000; on_failure = "tempfail";')
        try:
            flush(CAROL)
            behave("crash")
            raw, _ = inbound(CAROL, "tempfail")
            try:
                labsmtp.submit(S["env"], DAVE, [CAROL], raw, timeout=60)
                raise Failure("the message was accepted")
            except smtplib.SMTPDataError as e:
                check(400 <= e.smtp_code < 500, "got %d %r, want 4xx" % (e.smtp_code, e.smtp_error))
            check(len(calls()) == 1, "hook calls: %r" % calls())
        finally:
            restart_milter('timeout_ms = 1000; on_failure = "tempfail";', "timeout_ms = 1000;")

    @suite.case("release = true: deny -> stays encrypted (default-level user)")
    def _():
        env()
        restart_milter("timeout_ms = 1000;", "timeout_ms = 1000; release = true;")
        try:
            flush(BOB)
            behave("keep-encrypted", release="deny")
            r = send(BOB, "deny")
            check_encrypted(r, "release denied")
            check_eq([c[0] for c in calls()], ["release"], "hook events")
            flush(BOB)
            behave("keep-encrypted", release="allow")
            der, msg, f, _ = send(BOB, "allow")
            check_decrypted(msg, f, "allow")
        finally:
            restart_milter("timeout_ms = 1000; release = true;", "timeout_ms = 1000;")

    @suite.case("set-password / clear-password round trip: show and mail follow the level")
    def _():
        env()
        pwf = wfile("pw-dan", PW_DAN + "\n", 0o644)
        behave("keep-encrypted", password=PW_DAN)
        der, msg, f, _ = send(DAN, "dan0")
        check_decrypted(msg, f, "dan0")          # default: the hook is not asked
        out = kmctl("set-password", DAN, "--password-file", pwf).stdout.decode()
        check("protection enhanced (1 generation changed)" in out, "set-password: %r" % out)
        check("%s level enhanced" % DAN in kmctl("show", DAN).stdout.decode(), "show after set")
        # kmctl invalidated the caches itself: no flush here
        r = send(DAN, "dan1")
        check_encrypted(r, "locked: keep-encrypted")
        flush(DAN)
        behave("password", password=PW_DAN)
        der, msg, f, _ = send(DAN, "dan2")
        check_decrypted(msg, f, "dan2")
        # set again with the same password: nothing to do; another: refused
        out = kmctl("set-password", DAN, "--password-file", pwf).stdout.decode()
        check("0 generations changed" in out, "set-password again: %r" % out)
        r = kmctl("set-password", DAN, "--password-file", wfile("pw-other", "another-pass\n"),
                  ok=False)
        check(r.returncode != 0 and b"another password" in r.stderr, "other password accepted")
        r = kmctl("clear-password", DAN, "--password-file", wfile("pw-bad", "wrong-pass\n"),
                  ok=False)
        check(r.returncode != 0 and b"wrong password" in r.stderr, "wrong password cleared it")
        out = kmctl("clear-password", DAN, "--password-file", pwf).stdout.decode()
        check("protection default (1 generation changed)" in out, "clear-password: %r" % out)
        check("%s level default" % DAN in kmctl("show", DAN).stdout.decode(), "show after clear")
        behave("crash")
        der, msg, f, _ = send(DAN, "dan3")
        check_decrypted(msg, f, "dan3")
        check_eq(calls(), [], "hook calls at level default")

    @suite.case("carol can still read the kept-encrypted message with her password")
    def _():
        env()
        if "kept" not in S:
            skip("no kept-encrypted message")
        pwf = wpath("pw-carol")
        kmctl("clear-password", CAROL, "--password-file", pwf)
        keys = wpath("carol-keys")
        os.mkdir(keys)
        os.chmod(keys, 0o777)
        run(["runuser", "-u", "kmilter", "--", os.path.join(BUILD, "tools", "keymodel-probe"),
             "-c", S["env"]["LAB_CONF"], "keys", CAROL, keys])
        msgf = wfile("kept.eml", S["kept"])
        r = run(["openssl", "cms", "-decrypt", "-inkey", os.path.join(keys, "gen1.key"),
                 "-recip", os.path.join(keys, "gen1.crt"), "-in", msgf])
        check(("%s keep" % MARK).encode() in r.stdout, "decrypted text: %r" % r.stdout[:200])

    @suite.case("no password appears in kmilter's log")
    def _():
        env()
        H.check_no_secret_logged((PW_CAROL, PW_DAN, "not-" + PW_CAROL))

    t0 = time.time()
    rc = suite.run()
    print("FIGURE t-hook %.1fs" % (time.time() - t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
