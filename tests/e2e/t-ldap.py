#!/usr/bin/python3
"""t-ldap - certificates from LDAP directories (issue 16, 3a), end to end:
the lab (Postfix, kmilter, Redis, the KM pair) plus a real OpenLDAP slapd
this suite starts on 127.0.0.1 (tests/lablib/ldap.sh: its own slapd.conf
and mdb database under the suite's directory, TLS with a certificate of
the suite's own outside CA).

kmilter is configured with two directories on that slapd: partner.example
over LDAPS with a simple bind (bind_dn, password_file), other.example over
ldap:// with StartTLS, anonymous.  The KM has no certificate for any of
these addresses; alice@example.com (enrolled, signing key) writes to them.

Cases: bob@partner.example, whose certificate is only in LDAP
(userSMIMECertificate, a certs-only PKCS#7), gets encrypted mail that his
key decrypts; the second message to him is encrypted without a second
search in slapd's log (cached); carol@other.example (userCertificate;binary,
DER, StartTLS) gets encrypted mail; nobody@partner.example (no entry) gets
signed-only mail, result=downgraded, and the second message does not search
again (negative answer cached); mallory@partner.example, whose entry holds
garbage, a certificate for another address and an expired one, gets
signed-only mail, each bad value logged once with its reason, not again for
the second message; an entry with 100 garbage values costs 64 log lines and
one saying the rest was not looked at; slapd stopped (SIGSTOP: it accepts connections and
never answers): the message to dan@partner.example still goes, signed only,
after one timeout (measured), the next one at once (back-off, measured),
and once slapd answers again and the back-off period ended, dan's mail is
encrypted (the failed lookup was not cached as "none"); a reload (SIGHUP)
that changes a directory setting makes a new key store.
"""
import datetime
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "load"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import loadlib as L  # noqa: E402
from ktest import TOP, Failure, Suite, check, check_eq, need as kneed, skip, wait_for  # noqa: E402
import labsmtp  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@partner.example"
CAROL = "carol@other.example"
NOBODY = "nobody@partner.example"
MALLORY = "mallory@partner.example"
EVE = "eve@partner.example"
DAN = "dan@partner.example"
ERIN = "erin@partner.example"
FLOOD = "flood@partner.example"
FRANK = "frank@partner.example"  # encryption mandatory by rule, in no directory
SUFFIX = "dc=partner,dc=example"
TIMEOUT_MS = 1500
BACKOFF_MS = 8000

suite = Suite()
S = {}


def need(*keys):
    kneed(S, *keys)


def ldap_sh(fn, *args):
    """A function of tests/lablib/ldap.sh."""
    script = ". %s/tests/lablib/common.sh; . %s/tests/lablib/ldap.sh; %s %s" % (
        shlex.quote(TOP), shlex.quote(TOP), fn, " ".join(shlex.quote(a) for a in args))
    return L.run(["/bin/sh", "-c", script], env=dict(os.environ, LAB_PY=sys.executable),
                 timeout=60)


def free_ports(n):
    r = L.run(["/bin/sh", "-c", ". %s/tests/lablib/common.sh; lab_pick_ports %d" % (
        shlex.quote(TOP), n)], env=dict(os.environ, LAB_PY=sys.executable))
    return [int(p) for p in r.stdout.split()]


def searches(addr):
    """How many searches for addr slapd logged."""
    with open(os.path.join(S["ldapdir"], "slapd.log"), "rb") as fp:
        return fp.read().count(b'filter="(mail=%s)"' % addr.encode())


def klog():
    return S["lab"].log_text().decode("utf-8", "replace")


def message(rcpt, subject):
    tok = L.new_token()
    raw = labsmtp.make_message(ALICE, [rcpt], "%s %s" % (subject, tok),
                               "BODY-%s\r\nto %s\r\n" % (tok, rcpt))
    return tok, raw


def send(rcpt, subject):
    """Submit alice -> rcpt: (delivered message, log fields, seconds the
    submission took)."""
    env = S["lab"].env
    tok, raw = message(rcpt, subject)
    t0 = time.monotonic()
    qid = labsmtp.submit(env, ALICE, [rcpt], raw)
    secs = time.monotonic() - t0
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(env, qid, 60))
    line = labsmtp.wait_log_line(env, qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return msg, labsmtp.parse_log_line(line), secs, tok


def rcpt_reply(rcpt):
    """The gateway's reply to RCPT TO rcpt in a submission from alice."""
    s = labsmtp.connect(S["lab"].env)
    try:
        s.mail(ALICE)
        return s.rcpt(rcpt)
    finally:
        s.close()


def encrypted_to(rcpt, key, subject):
    msg, f, secs, tok = send(rcpt, subject)
    check(L.is_enveloped(msg), "mail to %s not encrypted: %s" % (rcpt, f))
    check(f.get("action") == "sign+encrypt", "action %r for %s" % (f.get("action"), rcpt))
    path = S["lab"].wpath("%s.eml" % tok)
    with open(path, "wb") as fp:
        fp.write(msg)
    out = L.run(["openssl", "cms", "-decrypt", "-inkey", key, "-in", path]).stdout
    check(("BODY-%s" % tok).encode() in out, "%s's key does not open the message" % rcpt)
    return secs


def signed_only(rcpt, subject):
    msg, f, secs, tok = send(rcpt, subject)
    check(not L.is_enveloped(msg), "mail to %s encrypted" % rcpt)
    check(f.get("result") == "downgraded", "result %r for %s, want downgraded" % (
        f.get("result"), rcpt))
    ct = (L.header_value(msg, "Content-Type") or "").lower()
    check(ct.startswith("multipart/signed"), "mail to %s not signed: %s" % (rcpt, ct))
    return secs


# ------------------------------------------------------------------- setup

def make_expired(pki, addr):
    """A certificate for addr that expired yesterday (DER path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    with open(pki.ca_key, "rb") as fp:
        ca_key = serialization.load_pem_private_key(fp.read(), None)
    with open(pki.ca_crt, "rb") as fp:
        ca = x509.load_pem_x509_certificate(fp.read())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addr)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(addr)]), False)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False,
                                         False), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
            .sign(ca_key, hashes.SHA256()))
    path = os.path.join(pki.dir, addr.replace("@", "_at_") + ".expired.der")
    with open(path, "wb") as fp:
        fp.write(cert.public_bytes(serialization.Encoding.DER))
    return path


def der_of(crt):
    return L.run(["openssl", "x509", "-in", crt, "-outform", "DER"]).stdout


def p7_of(*crts):
    args = ["openssl", "crl2pkcs7", "-nocrl", "-outform", "DER"]
    for c in crts:
        args += ["-certfile", c]
    return L.run(args).stdout


def entry(addr, attrs):
    import base64
    cn = addr.partition("@")[0]
    lines = ["dn: cn=%s,%s" % (cn, SUFFIX), "objectClass: inetOrgPerson", "cn: %s" % cn,
             "sn: %s" % cn, "mail: %s" % addr]
    for name, value in attrs:
        lines.append("%s:: %s" % (name, base64.b64encode(value).decode()))
    return "\n".join(lines) + "\n\n"


def slapd_tls(pki):
    """slapd's certificate for 127.0.0.1 from the outside CA."""
    base = os.path.join(pki.dir, "slapd")
    with open(base + ".ext", "w") as fp:
        fp.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    L.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
           "-keyout", base + ".key", "-out", base + ".csr"])
    L.run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", pki.ca_crt, "-CAkey",
           pki.ca_key, "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30",
           "-extfile", base + ".ext", "-out", base + ".crt"])
    return base + ".crt", base + ".key"


@suite.case("setup: slapd (LDAPS + StartTLS) with the entries, lab with two directories")
def _():
    for prog in ("slapd", "ldapadd"):
        if shutil.which(prog) is None and not os.access("/usr/sbin/" + prog, os.X_OK):
            skip("ci-unavailable: %s is not installed (tests/install-deps: slapd, ldap-utils)"
                 % prog)
    lab = L.Lab("ldap", policy='rules = ( { match = "%s"; encrypt = "mandatory"; } );' % FRANK)
    S["lab_obj"] = lab
    pki = L.OutsidePKI(lab, "partner.example")
    S["ldapdir"] = lab.wpath("slapd")
    crt, key = slapd_tls(pki)
    port, tls = free_ports(2)
    ldap_sh("ldap_start", S["ldapdir"], str(port), str(tls), SUFFIX, "ldap-secret",
            pki.ca_crt, crt, key)
    S["slapd"] = int(open(os.path.join(S["ldapdir"], "pid")).read())
    people = {a: pki.make(a) for a in (BOB, CAROL, MALLORY, EVE, DAN)}
    S["keys"] = {a: k for a, (c, k) in people.items()}
    ldif = entry(BOB, [("userSMIMECertificate", p7_of(people[BOB][0]))])
    ldif += entry(CAROL, [("userCertificate;binary", der_of(people[CAROL][0]))])
    ldif += entry(DAN, [("userSMIMECertificate", der_of(people[DAN][0]))])
    with open(make_expired(pki, MALLORY), "rb") as fp:
        expired = fp.read()
    ldif += entry(MALLORY, [("userSMIMECertificate", b"\x30\x82garbage, not DER " * 9),
                            ("userSMIMECertificate", p7_of(people[EVE][0])),
                            ("userSMIMECertificate", expired)])
    ldif += entry(FLOOD, [("userSMIMECertificate", b"junk value %03d " % i * 4)
                          for i in range(100)])
    path = lab.wpath("people.ldif")
    with open(path, "w") as fp:
        fp.write(ldif)
    ldap_sh("ldap_add", S["ldapdir"], path)
    pw = lab.wpath("ldap.pw")
    with open(pw, "w") as fp:
        fp.write("ldap-secret\n")
    os.chmod(pw, 0o600)
    L.run(["chown", "kmilter", pw], ok=False)
    lab.extra = """directory: {
  ldap = ( { domains = [ "partner.example" ]; uri = "ldaps://127.0.0.1:%d/";
             base = "%s"; bind_dn = "cn=admin,%s"; password_file = "%s";
             ca_file = "%s"; timeout_ms = %d; },
           { domains = [ "other.example" ]; uri = "ldap://127.0.0.1:%d/";
             starttls = true; base = "%s"; ca_file = "%s"; timeout_ms = %d; } );
  backoff_ms = %d;
};
""" % (tls, SUFFIX, SUFFIX, pw, pki.ca_crt, TIMEOUT_MS, port, SUFFIX, pki.ca_crt,
       TIMEOUT_MS, BACKOFF_MS)
    lab.up()
    L.enroll_users(lab, [ALICE], sign=True)
    S["lab"] = lab


@suite.case("cert only in LDAP (PKCS#7, LDAPS, bind): mail to bob is encrypted to it")
def _():
    need("lab")
    encrypted_to(BOB, S["keys"][BOB], "ldap-first")
    check_eq(searches(BOB), 1, "searches for bob")
    check("ldapdir: ldaps://" in klog() and "certificate for %s found" % BOB in klog(),
          "no log line for bob's certificate from LDAP")
    S["bob"] = True


@suite.case("second message to bob: encrypted, LDAP not asked again (cached)")
def _():
    need("bob")
    encrypted_to(BOB, S["keys"][BOB], "ldap-second")
    check_eq(searches(BOB), 1, "searches for bob after the second message")


@suite.case("userCertificate;binary over StartTLS: mail to carol is encrypted")
def _():
    need("lab")
    encrypted_to(CAROL, S["keys"][CAROL], "ldap-starttls")
    check_eq(searches(CAROL), 1, "searches for carol")


@suite.case("address not in LDAP: signed only (downgraded), the none is cached")
def _():
    need("lab")
    signed_only(NOBODY, "ldap-none")
    check_eq(searches(NOBODY), 1, "searches for nobody")
    signed_only(NOBODY, "ldap-none-again")
    check_eq(searches(NOBODY), 1, "searches for nobody after the second message")


@suite.case("garbage, another address's, expired: never used, each logged once")
def _():
    need("lab")
    signed_only(MALLORY, "ldap-bad")
    signed_only(MALLORY, "ldap-bad-again")
    check_eq(searches(MALLORY), 1, "searches for mallory")
    text = klog()
    bad = [ln for ln in text.splitlines() if "ldapdir:" in ln and MALLORY in ln or
           "ldapdir:" in ln and "cn=mallory" in ln]
    kinds = {"garbage": r"not a certificate nor a certs-only PKCS#7",
             "other address": r"does not name %s" % re.escape(MALLORY),
             "expired": r"certificate for %s expired" % re.escape(MALLORY)}
    for what, pat in kinds.items():
        n = sum(1 for ln in bad if re.search(pat, ln))
        check_eq(n, 1, "log lines for the %s value (%s)" % (what, bad))
    check(not any("certificate for %s found" % MALLORY in ln for ln in bad),
          "a bad certificate for mallory was used")


@suite.case("a flood of 100 bad values: at most 64 looked at, one line says so, signed only")
def _():
    need("lab")
    signed_only(FLOOD, "ldap-flood")
    lines = [ln for ln in klog().splitlines() if "cn=flood," in ln]
    check_eq(len(lines), 64, "log lines for flood's values")
    check_eq(klog().count("more than 64 values"), 1, "lines saying the rest was not looked at")


@suite.case("slapd not answering: mail goes signed only after one timeout, then at once")
def _():
    need("lab")
    pid = S["slapd"]
    os.kill(pid, signal.SIGSTOP)
    try:
        before = klog().count("not asked again for")
        slow = signed_only(DAN, "ldap-down")
        t_fail = time.monotonic()
        fast = signed_only(ERIN, "ldap-down-2")
        after = klog().count("not asked again for")
        mandatory = rcpt_reply(FRANK)
    finally:
        os.kill(pid, signal.SIGCONT)
    print("FIGURE ldap-down first message: %.2fs (timeout_ms %d)" % (slow, TIMEOUT_MS))
    print("FIGURE ldap-down next message (back-off): %.2fs" % fast)
    check(slow >= TIMEOUT_MS / 1000.0 * 0.9, "the first message took %.2fs, less than the "
          "timeout: LDAP was not waited for" % slow)
    check(slow < TIMEOUT_MS / 1000.0 + 3, "the first message took %.2fs" % slow)
    check(fast < min(1.0, slow - 0.5), "the message in the back-off period took %.2fs" % fast)
    check_eq(after - before, 1, "warnings about the directory not answering")
    check(mandatory[0] == 451 and mandatory[1].startswith(b"4.7.1"),
          "RCPT of %s (encryption mandatory) while the directory does not answer: %r, "
          "want 451 4.7.1 (a 5xx would bounce the mail)" % (FRANK, mandatory))
    S["t_fail"] = t_fail


@suite.case("after the back-off period: dan's mail is encrypted (the failure was not cached)")
def _():
    need("t_fail")
    wait_for(lambda: time.monotonic() >= S["t_fail"] + BACKOFF_MS / 1000.0 + 0.2,
             BACKOFF_MS / 1000.0 + 5)
    encrypted_to(DAN, S["keys"][DAN], "ldap-back")
    check("answers again" in klog(), "no log line saying the directory answers again")


@suite.case("reload with a changed directory setting: a new key store (SIGHUP)")
def _():
    need("lab")
    lab = S["lab"]
    conf = lab.env["LAB_CONF"]
    with open(conf) as fp:
        text = fp.read()
    check("backoff_ms = %d;" % BACKOFF_MS in text, "backoff_ms not in %s" % conf)
    with open(conf, "w") as fp:
        fp.write(text.replace("backoff_ms = %d;" % BACKOFF_MS, "backoff_ms = %d;" % (BACKOFF_MS + 1)))
    os.kill(lab.milter_pid(), signal.SIGHUP)
    line = wait_for(lambda: re.search(r"reload: (directory\.\S+) changed: new key store", klog()), 15)
    check(line is not None, "no new key store after a reload that changed directory.backoff_ms")
    check_eq(line.group(1), "directory.backoff_ms", "the setting the reload names")
    wait_for(lambda: "reloaded configuration" in klog(), 10)
    encrypted_to(BOB, S["keys"][BOB], "ldap-after-reload")


def main():
    def down():
        if "lab_obj" in S:
            S["lab_obj"].down(keep=bool(os.environ.get("T_LDAP_KEEP")))

    def slapd_down():
        if "ldapdir" in S:
            try:
                ldap_sh("ldap_stop", S["ldapdir"])
            except Failure as e:
                print("ldap_stop: %s" % e)
    suite.cleanups.append(down)
    suite.cleanups.append(slapd_down)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    rc = suite.run()
    print("FIGURE t-ldap: %.1fs" % (time.time() - t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
