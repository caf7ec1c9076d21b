#!/usr/bin/python3
"""t-revocation - revocation of outside certificates (issue 16 item 4)
through the lab: a real CA made with `openssl ca` (issue, revoke, gencrl),
its OCSP responder (`openssl ocsp` over the CA's index) and its CRLs served
over HTTP on 127.0.0.1 by tests/lablib/revocation_http.py, started and
stopped (by pid) here.

kmilter runs with revocation.check = "soft" first, then "hard"
(restart-milter).  Cases: a good outside certificate is encrypted to and
the second message is answered from the cache (the responder's request
count does not move); an OCSP-revoked one, a CRL-revoked one (distribution
point over HTTP) and one revoked in a configured CRL file are not
encrypted to (signed only, result=downgraded, reason revoked); a revoked
signer of inbound mail gives smime=fail (revoked), a good one smime=pass;
a responder that does not answer: soft = encrypted anyway, warned once,
hard = downgraded ("revocation status unknown") and 451 at RCPT for a
mandatory recipient, smime=temperror for a signer; a garbage OCSP answer and a garbage CRL: a clear log
line, mail delivered, kmilter up; with hard-fail the garbage answer means
not encrypted.
"""
import os
import re
import shlex
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import (BUILD, TOP, Failure, Suite, check, check_eq, pid_alive, skip,  # noqa: E402
                   stop_pid)
import labsmtp  # noqa: E402
from revca import free_port, gencrl, issue, mkca, revoke, start_server  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
ALICE = "alice@example.com"
GOOD = "good@outside.example"        # AIA OCSP + CDP; good
REV = "rev@outside.example"          # AIA OCSP; revoked
CRLREV = "crlrev@outside.example"    # CDP over HTTP only; revoked
FILEREV = "filerev@outside.example"  # second CA, no AIA/CDP; revoked in crl_files
DOWN = "down@outside.example"        # AIA OCSP at a port where nobody listens
DOWNM = "down@strict.example"        # the same, encryption mandatory
JUNK = "junk@outside.example"        # AIA OCSP answering garbage
JUNKCRL = "junkcrl@outside.example"  # CDP serving a garbage CRL
SIGNREV = "signrev@outside.example"  # revoked signer of inbound mail
ENCRYPTED = ("sign+encrypt", "encrypt")

S = {}


def run(argv, input=None, ok=True, env=None, timeout=120):
    r = subprocess.run(argv, input=input, capture_output=True, env=env, timeout=timeout)
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def env():
    if "env" not in S:
        skip("lab is not up")
    return S["env"]


def kmctl(*args):
    return run(shlex.split(S["env"]["LAB_KMCTL"]) + list(args))


def mkmsg(rcpts, subject, sender=ALICE, body="revocation test\r\n"):
    return labsmtp.make_message(sender, rcpts, subject, body)


def send(rcpts, subject):
    qid = labsmtp.submit(S["env"], ALICE, rcpts, mkmsg(rcpts, subject), timeout=120)
    path = labsmtp.wait_delivered(S["env"], qid, 120)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(S["env"], qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return msg, line, labsmtp.parse_log_line(line)


def ctype(msg):
    hdr, _ = labsmtp.split_message(msg)
    m = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", hdr)
    return m.group(1).decode().strip().lower() if m else ""


def encrypted_to(rcpt, subject):
    msg, line, f = send([rcpt], subject)
    check(f.get("action") in ENCRYPTED and f.get("result") == "ok",
          "to <%s>: want encrypted, result ok; log: %s" % (rcpt, line))
    check_eq(ctype(msg), "application/pkcs7-mime", "delivered Content-Type")
    return line


def downgraded(rcpt, subject, why):
    msg, line, f = send([rcpt], subject)
    check(f.get("action") not in ENCRYPTED, "to <%s>: encrypted; log: %s" % (rcpt, line))
    check_eq(f.get("result"), "downgraded", "log result")
    check(why in line, "log line does not say %r: %s" % (why, line))
    check(ctype(msg) != "application/pkcs7-mime", "delivered encrypted")
    return line


def log_text():
    with open(S["env"]["LAB_LOG"], "rb") as fp:
        return fp.read().decode("utf-8", "replace")


def requests(kind):
    """How many requests the CA's server got ("POST /ocsp", "GET /ca.crl")."""
    with open(S["httpd_log"]) as fp:
        return sum(1 for l in fp if l.strip() == "REQ " + kind)


def milter_alive():
    pid = labsmtp.milter_pid(S["env"])
    check(pid is not None and pid_alive(pid), "kmilter is not running")


def signed_inbound(signer_crt, signer_key, sender, subject):
    """Mail from an outside client signed by sender; Authentication-Results."""
    w = S["work"]
    body = os.path.join(w, "in.txt")
    with open(body, "wb") as fp:
        fp.write(b"Content-Type: text/plain\r\n\r\nsigned from outside\r\n")
    r = run(["openssl", "cms", "-sign", "-signer", signer_crt, "-inkey", signer_key,
             "-in", body, "-md", "sha256"])
    raw = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
           "Message-ID: <%d.%d@out.test>\r\n" % (sender, ALICE, subject, os.getpid(),
                                                  int(time.time() * 1e6))).encode()
    raw += r.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    e = S["env"]
    qid = labsmtp.submit(e, sender, [ALICE], raw, source=labsmtp.outside_client(e), timeout=120)
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(e, qid, 120))
    hdr, _ = labsmtp.split_message(msg)
    text = re.sub(r"\r?\n[ \t]+", " ", hdr.decode("utf-8", "replace"))
    return [v for v in re.findall(r"(?im)^authentication-results:\s*(.*)$", text)]


def set_mode(mode):
    conf = os.path.join(S["env"]["LAB_DIR"], "kmilter", "kmilter.conf")
    with open(conf) as fp:
        text = fp.read()
    text = re.sub(r'check = "\w+";', 'check = "%s";' % mode, text)
    with open(conf, "w") as fp:
        fp.write(text)
    r = subprocess.run([LAB, "restart-milter", S["env"]["LAB_DIR"]], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, KM_BUILD=BUILD))
    check(r.returncode == 0, "restart-milter: %s %s" % (r.stdout[-300:], r.stderr[-800:]))
    milter_alive()


def main():
    suite = Suite()
    base = tempfile.mkdtemp(prefix="t-revocation.")
    os.chmod(base, 0o755)
    lab = os.path.join(base, "lab")
    work = os.path.join(base, "work")
    os.mkdir(work)
    os.chmod(work, 0o755)
    S["work"] = work

    def down():
        subprocess.run([LAB, "down", lab], capture_output=True, timeout=120)

    def stop_httpd():
        if "httpd" in S:
            stop_pid(S["httpd"].pid)
            S["httpd"].wait()

    if not os.environ.get("T_KEEP"):
        suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(down)
    suite.cleanups.append(stop_httpd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @suite.case("outside CA (openssl ca): issue, revoke, CRLs; OCSP/CRL server on 127.0.0.1")
    def _():
        port, dead = free_port(), free_port()
        ca, ca2 = os.path.join(work, "ca"), os.path.join(work, "ca2")
        cnf, cnf2 = mkca(ca, "Outside CA"), mkca(ca2, "Outside File CA")
        url = "http://127.0.0.1:%d" % port
        pki = {}
        pki[GOOD] = issue(ca, cnf, GOOD, ocsp=url + "/ocsp", cdp=url + "/ca.crl")
        pki[REV] = issue(ca, cnf, REV, ocsp=url + "/ocsp")
        pki[CRLREV] = issue(ca, cnf, CRLREV, cdp=url + "/ca.crl")
        pki[DOWN] = issue(ca, cnf, DOWN, ocsp="http://127.0.0.1:%d/ocsp" % dead)
        pki[DOWNM] = issue(ca, cnf, DOWNM, ocsp="http://127.0.0.1:%d/ocsp" % dead)
        pki[JUNK] = issue(ca, cnf, JUNK, ocsp=url + "/junk")
        pki[JUNKCRL] = issue(ca, cnf, JUNKCRL, cdp=url + "/junk.crl")
        pki[SIGNREV] = issue(ca, cnf, SIGNREV, ocsp=url + "/ocsp")
        pki[FILEREV] = issue(ca2, cnf2, FILEREV)
        for who in (REV, CRLREV, SIGNREV):
            revoke(cnf, pki[who][0])
        revoke(cnf2, pki[FILEREV][0])
        gencrl(cnf, os.path.join(ca, "ca.crl"))
        gencrl(cnf2, os.path.join(work, "file.crl"))
        with open(os.path.join(ca, "junk.crl"), "wb") as fp:
            fp.write(b"-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n")
        with open(os.path.join(work, "cas.pem"), "wb") as fp:
            for d in (ca, ca2):
                with open(os.path.join(d, "ca.crt"), "rb") as c:
                    fp.write(c.read())
        os.chmod(os.path.join(work, "cas.pem"), 0o644)
        S["httpd_log"] = os.path.join(work, "httpd.log")
        S["httpd"] = start_server(ca, port, S["httpd_log"])
        check(S["httpd"] is not None, "CA server did not start")
        # the responder says what the index says (before kmilter asks)
        r = run(["openssl", "ocsp", "-issuer", os.path.join(ca, "ca.crt"), "-cert", pki[REV][0],
                 "-url", url + "/ocsp", "-CAfile", os.path.join(ca, "ca.crt")])
        check(b": revoked" in r.stdout, "responder: %r" % r.stdout[-300:])
        S["pki"], S["url"], S["dead"] = pki, url, dead

    @suite.case("lab up (revocation.check = soft, crl_files, outside CAs trusted)")
    def _():
        if "pki" not in S:
            skip("no PKI")
        policy = ('rules = ( { match = "strict.example"; encrypt = "mandatory"; } );\n'
                  'inbound: { ca_file = "%s"; };' % os.path.join(work, "cas.pem"))
        extra = ('revocation: { check = "soft"; crl_files = [ "%s" ]; timeout_ms = 1000;\n'
                 '  backoff_ms = 600000; };' % os.path.join(work, "file.crl"))
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", KMILTER_CONF_POLICY=policy,
                 KMILTER_CONF_EXTRA=extra)
        r = subprocess.run([LAB, "up", lab], env=e, capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "lab up failed (%d): %s %s" % (r.returncode, r.stdout[-500:],
                                                             r.stderr[-1500:]))
        S["env"] = labsmtp.load_env(lab)
        milter_alive()
        for who, (crt, _) in S["pki"].items():
            kmctl("import", who, crt)
        kmctl("enroll", ALICE)
        kmctl("signing-enroll", ALICE)

    @suite.case("good certificate: encrypted; the second message uses the cached answer")
    def _():
        env()
        before = requests("POST /ocsp")
        encrypted_to(GOOD, "good 1")
        n = requests("POST /ocsp")
        check(n == before + 1, "OCSP requests: %d before, %d after" % (before, n))
        encrypted_to(GOOD, "good 2")
        check_eq(requests("POST /ocsp"), n, "OCSP requests after the second message")

    @suite.case("revoked (OCSP): signed only, downgraded, reason revoked")
    def _():
        env()
        downgraded(REV, "rev", "(revoked)")
        check(re.search(r"rcpt=<%s>: certificate not used: certificate .* revoked at \S+ "
                        r"\(keyCompromise\) by OCSP %s/ocsp" % (REV, S["url"]), log_text()),
              "no log line saying who revoked the certificate of %s, when and why" % REV)

    @suite.case("revoked (CRL distribution point over HTTP): downgraded, revoked")
    def _():
        env()
        before = requests("GET /ca.crl")
        downgraded(CRLREV, "crlrev", "(revoked)")
        check(re.search(r"rcpt=<%s>: certificate not used: .* revoked at .* by CRL %s/ca.crl"
                        % (CRLREV, S["url"]), log_text()), "no log line naming the CRL")
        check(requests("GET /ca.crl") == before + 1, "the CRL was not fetched over HTTP")

    @suite.case("revoked (configured CRL file): downgraded, revoked")
    def _():
        env()
        downgraded(FILEREV, "filerev", "(revoked)")
        check(re.search(r"rcpt=<%s>: certificate not used: .* revoked at .* by CRL %s"
                        % (FILEREV, re.escape(os.path.join(work, "file.crl"))), log_text()),
              "no log line naming the CRL file")

    @suite.case("inbound: revoked signer -> smime=fail (revoked); good signer -> pass")
    def _():
        env()
        crt, key = S["pki"][SIGNREV]
        ar = signed_inbound(crt, key, SIGNREV, "signed by a revoked signer")
        check(any("smime=fail (revoked)" in v for v in ar), "Authentication-Results: %r" % ar)
        crt, key = S["pki"][GOOD]
        ar = signed_inbound(crt, key, GOOD, "signed by a good signer")
        check(any("smime=pass" in v for v in ar), "Authentication-Results: %r" % ar)

    @suite.case("soft: responder down -> encrypted anyway, warned once per period")
    def _():
        env()
        encrypted_to(DOWN, "down soft 1")
        encrypted_to(DOWN, "down soft 2")
        warn = "revocation: http://127.0.0.1:%d/ocsp: no answer" % S["dead"]
        check_eq(log_text().count(warn), 1, "warnings about the dead responder")

    @suite.case("garbage OCSP answer and garbage CRL: clear log line, delivered, kmilter up")
    def _():
        env()
        encrypted_to(JUNK, "junk ocsp soft")
        check("/junk: malformed OCSP response" in log_text(), "no clear log line for "
              "the garbage OCSP answer")
        encrypted_to(JUNKCRL, "junk crl soft")
        check("/junk.crl: malformed CRL" in log_text(), "no clear log line for the garbage CRL")
        milter_alive()

    @suite.case("hard: responder down -> downgraded (status unknown); mandatory -> 451; "
                "signer -> smime=temperror")
    def _():
        env()
        set_mode("hard")
        downgraded(DOWN, "down hard", "revocation status unknown")
        try:
            labsmtp.submit(S["env"], ALICE, [DOWNM], mkmsg([DOWNM], "down mandatory"))
            raise Failure("mandatory recipient with unknown status accepted")
        except smtplib.SMTPRecipientsRefused as ex:
            code = ex.recipients[DOWNM][0]
            check_eq(code, 451, "RCPT reply code")
        downgraded(JUNK, "junk hard", "revocation status unknown")
        crt, key = S["pki"][DOWN]
        ar = signed_inbound(crt, key, DOWN, "signed, status unknown, hard")
        check(any("smime=temperror (revocation status unknown)" in v for v in ar),
              "Authentication-Results: %r" % ar)
        # what is known is still used
        encrypted_to(GOOD, "good hard")
        milter_alive()

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
