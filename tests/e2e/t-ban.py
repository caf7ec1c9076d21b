#!/usr/bin/python3
"""t-ban - bans and retired gateways (issue 17 item 5) as the milter sees
them, through the lab: real Postfix, kmilter, Redis, two PyKMIP servers,
policy.auto_enroll on.  (kmctl's side in detail: t-ban.sh.)

Cases: a banned address (kmctl revoke --ban) that sends its first message
is not auto-enrolled: a warning log line says it is banned, the message
goes out as policy says (unsigned, downgraded), kmctl enroll refuses it
too; after kmctl unban its next message enrolls it and is signed.
kmctl retire-gateway of the lab's gateway name revokes the signing
certificates this gateway recorded in the KM (Compromised on both
servers), the running milter stops signing with its keys (warning, the
message goes out as policy says), and the milter no longer starts under
that name.
"""
import os
import re
import shlex
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Failure, Suite, check, check_eq, pid_alive, skip, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
DAVE = "dave@partner.example"
GW = socket.gethostname()       # milter.gateway_name "" = the host name
S = {}


def run(argv, ok=True, timeout=120):
    r = subprocess.run(argv, capture_output=True, timeout=timeout, input=b"")
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def env():
    if "env" not in S:
        skip("lab is not up")
    return S["env"]


def kmctl(*args, ok=True):
    return run(shlex.split(env()["LAB_KMCTL"]) + list(args), ok=ok)


def gens(addr):
    out = kmctl("show", addr, ok=False).stdout.decode("utf-8", "replace")
    return re.findall(r"^%s generation (\d+) state Active\b" % re.escape(addr), out, re.M)


def km_count(server, name, state):
    """Objects of name in state on KM server "A" or "B", straight from KMIP."""
    e = env()
    port = e["LAB_KM_" + server].rsplit(":", 1)[-1]
    r = run(["runuser", "-u", "kmilter", "--", os.path.join(BUILD, "tools", "kmip-probe"),
             "-p", port, "-C", os.path.join(e["LAB_DIR"], "km", "pki", "ca.crt"),
             "-c", e["LAB_KM_CLIENT_CERT"], "-k", e["LAB_KM_CLIENT_KEY"], "locate",
             "name=" + name, "state=" + state])
    return len(re.findall(rb"^uid=", r.stdout, re.M))


def log_text():
    with open(env()["LAB_LOG"], "rb") as fp:
        return fp.read().decode("utf-8", "replace")


def message(sender, subject):
    return labsmtp.make_message(sender, [DAVE], subject, "Hello from %s.\r\n" % sender)


def submit_retrying(sender, subject, secs=60):
    """Submit; a 451 4.7.1 (enrolling) is retried as an MTA would."""
    end = time.monotonic() + secs
    while True:
        try:
            return labsmtp.submit(env(), sender, [DAVE], message(sender, subject), timeout=60)
        except smtplib.SMTPDataError as e:
            check(e.smtp_code == 451 and b"enrolling" in e.smtp_error,
                  "refused: %d %r" % (e.smtp_code, e.smtp_error))
            check(time.monotonic() < end, "still tempfailed after %ds" % secs)
            wait_for(lambda: "autoenroll: <%s>: " % sender in log_text(), 30,
                     "enrollment of %s logged" % sender)


def delivered(qid):
    path = labsmtp.wait_delivered(env(), qid, 120)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(env(), qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return msg, labsmtp.parse_log_line(line), line


def signed(msg, fields):
    return "sign" in (fields.get("action") or "") and b"pkcs7-signature" in msg.lower()


def main():
    suite = Suite()
    base = tempfile.mkdtemp(prefix="t-ban.")
    os.chmod(base, 0o755)
    lab = os.path.join(base, "lab")
    suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(lambda: subprocess.run([LAB, "down", lab], capture_output=True,
                                                 timeout=120))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @suite.case("lab up: auto_enroll on")
    def _():
        check(os.access(os.path.join(BUILD, "kmilter"), os.X_OK),
              "build/kmilter not built (make all)")
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter",
                 KMILTER_CONF_POLICY='auto_enroll = "on"; auto_enroll_wait_ms = 2000;')
        r = subprocess.run([LAB, "up", lab], env=e, capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "lab up failed (%d): %s %s" % (r.returncode, r.stdout[-500:],
                                                             r.stderr[-1500:]))
        S["env"] = labsmtp.load_env(lab)
        check(S["env"].get("LAB_KM_A") and S["env"].get("LAB_KM_B"), "KM not started")
        pid = labsmtp.milter_pid(S["env"])
        check(pid is not None and pid_alive(pid), "kmilter not running")

    @suite.case("banned: not auto-enrolled (warning names the ban), sent as policy says; "
                "kmctl enroll refused")
    def _():
        u = "banned1@example.com"
        r = kmctl("revoke", u, "--ban")
        check(b"banned from enrollment" in r.stdout, "ban: %r" % r.stdout)
        check_eq((km_count("A", "kmilter:ban:" + u, "active"),
                  km_count("B", "kmilter:ban:" + u, "active")), (1, 1), "ban objects on A, B")
        qid = labsmtp.submit(env(), u, [DAVE], message(u, "banned"), timeout=60)
        msg, f, line = delivered(qid)
        check(not signed(msg, f), "a banned sender's message was signed")
        want = "autoenroll: <%s>: enrollment failed: %s is banned" % (u, u)
        # (log_warnx; the lab's stderr log carries no level)
        check(want in log_text(), "no log line %r" % want)
        check_eq(gens(u), [], "generations of %s" % u)
        r = kmctl("enroll", u, ok=False)
        check(r.returncode == 1 and b"is banned" in r.stderr, "kmctl enroll: %r" % r.stderr)
        r = kmctl("enroll", u, "--force", ok=False)
        check(r.returncode == 1 and b"is banned" in r.stderr, "enroll --force: %r" % r.stderr)

    @suite.case("unban: the next message enrolls the address and is signed")
    def _():
        u = "banned1@example.com"
        r = kmctl("unban", u)
        check(b"ban lifted" in r.stdout, "unban: %r" % r.stdout)
        qid = submit_retrying(u, "after unban")
        msg, f, _ = delivered(qid)
        check(signed(msg, f), "not signed after unban: %r" % f)
        check_eq(gens(u), ["1"], "generations of %s" % u)

    @suite.case("revoke --ban of an enrolled user: revoked, not enrolled again, its "
                "signing key here not used")
    def _():
        u = "banned1@example.com"
        r = kmctl("revoke", u, "--ban")
        check(b"1 generation revoked" in r.stdout, "revoke --ban: %r" % r.stdout)
        qid = labsmtp.submit(env(), u, [DAVE], message(u, "banned again"), timeout=60)
        msg, f, line = delivered(qid)
        # its signing key is still on this gateway's disk: not used
        check(not signed(msg, f), "a banned sender's message was signed: %r" % f)
        check(("keystore: %s: %s is banned" % (u, u)) in log_text(), "refusal not logged")
        check_eq(gens(u), [], "Active generations of %s" % u)
        check(log_text().count("autoenroll: <%s>: enrollment failed: %s is banned" % (u, u)) >= 2,
              "second refusal not logged")

    @suite.case("retire-gateway: this gateway's signing certificates revoked in the KM, "
                "the running milter does not sign with its keys")
    def _():
        u = "ret1@example.com"
        qid = submit_retrying(u, "before retirement")
        msg, f, _ = delivered(qid)
        check(signed(msg, f), "not signed before retirement: %r" % f)
        name = "kmilter:gwcert:" + GW.lower()
        n = km_count("A", name, "active")
        check(n >= 2, "signing certificates recorded for %s on A: %d" % (GW, n))
        check_eq(km_count("B", name, "active"), n, "recorded on B")
        r = kmctl("retire-gateway", GW)
        check(("%d signing certificates revoked" % n).encode() in r.stdout,
              "retire-gateway: %r" % r.stdout)
        check_eq((km_count("A", name, "active"), km_count("A", name, "compromised"),
                  km_count("B", name, "compromised")), (0, n, n), "states after retirement")
        qid = labsmtp.submit(env(), u, [DAVE], message(u, "after retirement"), timeout=60)
        msg, f, line = delivered(qid)
        check(not signed(msg, f), "signed by a retired gateway: %r" % f)
        check("downgraded" in line, "not reported as downgraded: %r" % line)
        text = log_text()
        check(re.search(r"keystore: %s: gateway %s is retired" % (re.escape(u), re.escape(GW)),
                        text), "no warning naming the retirement")

    @suite.case("retired gateway: kmilter does not start under its name")
    def _():
        # a second kmilter on the lab's configuration: it checks before
        # it opens the socket or writes the pid file (main.c), so the
        # running one is not disturbed
        r = subprocess.run([os.path.join(BUILD, "kmilter"), "-f", "-c", env()["LAB_CONF"]],
                           capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        check(r.returncode != 0, "kmilter started under a retired name")
        check("gateway %s is retired (kmctl retire-gateway)" % GW in r.stderr,
              "start-up refusal not said: %r" % r.stderr[-400:])

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
