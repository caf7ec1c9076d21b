#!/usr/bin/python3
"""t-identity - mandatory means mandatory, a signature means the sender:
the attacks of issue 12 (items 3 and 4), end to end through the lab (real
Postfix with SMTP AUTH, kmilter, Redis, two PyKMIP servers).

The lab's policy.internal_hosts is 127.0.0.1 only: a client connecting from
127.0.0.2 is outside (Postfix's mynetworks still relays for it).  SMTP AUTH
uses the lab's private sasldb (alice@example.com, bob@example.com).
Policy: secure.example is mandatory, and so is dave@outside.example (who
has a certificate).  alice is enrolled (encryption + signing key).

Attacks, each a case that fails on the code before the fix:
  1. plaintext labelled application/pkcs7-mime to a mandatory recipient is
     encrypted like any content (it passed as "already encrypted");
  2. nocert@secure.example. / "nocert"@SECURE.example / NOCERT@Secure.Example..
     are refused at RCPT (they dodged the mandatory rule); dave's address
     in another spelling still finds his certificate;
  3. a null or outside sender from an internal host (or an authenticated
     client) to a mandatory recipient without certificate is refused;
     to dave it is encrypted, never signed;
  4. an outside client with an internal From is not signed; authenticated
     alice is signed; authenticated bob with MAIL FROM alice is refused
     553 5.7.1 (or, with sender_login_mismatch = "unsigned", sent unsigned
     and logged result=downgraded); the sender-login map lets bob send as
     alice and is reloaded on SIGHUP, a malformed map keeps the running one;
     with sign_unauthenticated = false an internal host must authenticate
     to have its mail signed.
A sign-only message (recipient without certificate) is logged
result=downgraded reason=not encrypted: ...
"""
import base64
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
from ktest import BUILD, TOP, Failure, Suite, check, check_eq, pid_alive, skip, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
ALICE = "alice@example.com"
BOB = "bob@example.com"
DAVE = "dave@outside.example"
NOCERT = "nocert@secure.example"
POLICY = ('rules = ( { match = "secure.example"; encrypt = "mandatory"; },\n'
          '          { match = "dave@outside.example"; encrypt = "mandatory"; } );\n'
          'sender_login_mismatch = "refuse";\n'
          'sender_login_map = "@LAB_MAP@";\n')

S = {}


def run(argv, input=None, ok=True):
    r = subprocess.run(argv, input=input, capture_output=True, timeout=120)
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def wpath(name):
    return os.path.join(S["work"], name)


def env():
    if "pki" not in S:
        skip("lab or PKI not up")
    return S["env"]


def kmctl(*args):
    return run(shlex.split(S["env"]["LAB_KMCTL"]) + list(args))


def creds(user):
    pw = labsmtp.sasl_password(S["env"], user)
    check(pw, "the lab has no SMTP AUTH (saslpasswd2 missing: tests/install-deps)")
    return (user, pw)


def mkmsg(sender, rcpts, subject, entity_headers, body):
    hdrs = ["From: <%s>" % sender, "To: %s" % ", ".join("<%s>" % r for r in rcpts),
            "Subject: %s" % subject, "Date: Mon, 23 Nov 2026 10:00:00 +0000",
            "Message-ID: <%d.%d@lab.test>" % (os.getpid(), int(time.time() * 1e6)),
            "MIME-Version: 1.0"] + list(entity_headers)
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body.encode()


def plain(sender, rcpts, marker):
    return mkmsg(sender, rcpts, "identity " + marker,
                 ["Content-Type: text/plain; charset=us-ascii"], "Body %s.\r\n" % marker)


def deliver(sender, rcpts, raw, **kw):
    """Submit; (qid, delivered message, log fields)."""
    qid = labsmtp.submit(S["env"], sender, rcpts, raw, timeout=120, **kw)
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(S["env"], qid, 120))
    line = labsmtp.wait_log_line(S["env"], qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return qid, msg, labsmtp.parse_log_line(line)


def refused_at(sender, rcpts, raw, **kw):
    """Submit expecting a refusal; (stage, code, text)."""
    try:
        qid = labsmtp.submit(S["env"], sender, rcpts, raw, timeout=120, **kw)
    except smtplib.SMTPSenderRefused as e:
        return "mail", e.smtp_code, e.smtp_error.decode("utf-8", "replace")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return "rcpt", code, text.decode("utf-8", "replace")
    except smtplib.SMTPDataError as e:
        return "data", e.smtp_code, e.smtp_error.decode("utf-8", "replace")
    raise Failure("accepted (queue id %s), want a refusal" % qid)


def header(msg, name):
    hdr, _ = labsmtp.split_message(msg)
    text = re.sub(r"\r?\n[ \t]+", " ", hdr.decode("utf-8", "replace"))
    for line in re.split(r"\r?\n", text):
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            return v.strip()
    return None


def ctype(msg):
    return (header(msg, "Content-Type") or "").lower()


def decrypt(msg, name):
    """dave decrypts the delivered message (openssl); the inner entity."""
    check("enveloped-data" in ctype(msg), "not enveloped-data: %r" % ctype(msg))
    f = wpath(name + ".eml")
    with open(f, "wb") as fp:
        fp.write(msg)
    return run(["openssl", "cms", "-decrypt", "-recip", S["pki"]["dave.crt"], "-inkey",
                S["pki"]["dave.key"], "-in", f]).stdout


def signer_of(entity, name):
    """Verify a signed entity under the org CA; the signer certificate's text."""
    f = wpath(name + ".signed")
    with open(f, "wb") as fp:
        fp.write(entity)
    signer = wpath(name + ".signer.pem")
    run(["openssl", "cms", "-verify", "-CAfile", S["pki"]["orgca"], "-purpose", "smimesign",
         "-in", f, "-out", "/dev/null", "-signer", signer])
    return run(["openssl", "x509", "-in", signer, "-noout", "-subject", "-ext",
                "subjectAltName"]).stdout.decode()


def is_signed(entity):
    ct = (header(entity, "Content-Type") or "").lower()
    return ct.startswith("multipart/signed") or "signed-data" in ct


def log_text():
    with open(S["env"]["LAB_LOG"], errors="replace") as fp:
        return fp.read()


def mkuser(d, name, email):
    """An outside CA and a user certificate for email (RSA)."""
    ca_key, ca_crt = os.path.join(d, "outca.key"), os.path.join(d, "outca.crt")
    if not os.path.exists(ca_crt):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
             "-out", ca_crt, "-days", "3650", "-subj", "/O=Outside Test/CN=Outside CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj",
         "/O=Outside Test/CN=%s" % name, "-out", key + ".csr"])
    with open(key + ".ext", "w") as fp:
        fp.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                 "keyEncipherment\nextendedKeyUsage=emailProtection\n"
                 "subjectAltName=email:%s\n" % email)
    run(["openssl", "x509", "-req", "-in", key + ".csr", "-CA", ca_crt, "-CAkey", ca_key,
         "-set_serial", "0x" + os.urandom(8).hex(), "-days", "700", "-extfile", key + ".ext",
         "-out", crt])
    os.chmod(crt, 0o644)
    return crt, key


def set_policy(old, new):
    """Edit the lab's kmilter.conf and SIGHUP kmilter; wait for the outcome."""
    conf = S["env"]["LAB_CONF"]
    with open(conf) as fp:
        text = fp.read()
    check(old in text, "%r not in %s" % (old, conf))
    with open(conf, "w") as fp:
        fp.write(text.replace(old, new))
    return sighup()


def sighup():
    """SIGHUP kmilter; the new reload line ("reloaded" or "has errors")."""
    before = len(re.findall(r"reloaded configuration|has errors: keeping", log_text()))
    with open(S["env"]["LAB_KMILTER_PID_FILE"]) as fp:
        os.kill(int(fp.read().strip()), signal.SIGHUP)
    ok = wait_for(lambda: len(re.findall(r"reloaded configuration|has errors: keeping",
                                         log_text())) > before, 15)
    check(ok, "kmilter did not report the reload")
    return re.findall(r".*(?:reloaded configuration|has errors: keeping).*", log_text())[-1]


def write_map(text):
    with open(S["map"], "w") as fp:
        fp.write(text)
    os.chmod(S["map"], 0o644)


def main():
    suite = Suite()
    base = tempfile.mkdtemp(prefix="t-identity.")
    os.chmod(base, 0o755)
    lab = os.path.join(base, "lab")
    S["work"] = os.path.join(base, "work")
    os.mkdir(S["work"])
    os.chmod(S["work"], 0o755)
    S["map"] = os.path.join(S["work"], "sender-logins")
    write_map("# empty at start\n")

    suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(lambda: subprocess.run([LAB, "down", lab], capture_output=True,
                                                 timeout=120))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @suite.case("lab up (internal_hosts 127.0.0.1 only, SMTP AUTH), alice enrolled, dave imported")
    def _():
        check(os.access(os.path.join(BUILD, "kmilter"), os.X_OK),
              "build/kmilter not built (make all)")
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter",
                 KMILTER_CONF_POLICY=POLICY.replace("@LAB_MAP@", S["map"]))
        r = subprocess.run([LAB, "up", lab], env=e, capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "lab up failed: %s" % r.stderr[-1500:])
        S["env"] = labsmtp.load_env(lab)
        conf = open(S["env"]["LAB_CONF"]).read()
        hosts = re.search(r"(?m)^\s*internal_hosts\s*=\s*\[(.*)\]", conf)
        check(hosts and "127.0.0.1/32" in hosts.group(1) and "127.0.0.0/8" not in hosts.group(1),
              "the lab trusts more than 127.0.0.1: %r" % (hosts and hosts.group(0)))
        d = wpath("pki")
        os.mkdir(d)
        os.chmod(d, 0o755)
        pki = {"orgca": S["env"]["LAB_CA_CERT"]}
        pki["dave.crt"], pki["dave.key"] = mkuser(d, "dave", DAVE)
        kmctl("import", DAVE, pki["dave.crt"])
        kmctl("enroll", ALICE)
        kmctl("signing-enroll", ALICE)
        S["pki"] = pki
        S["milter_pid"] = labsmtp.milter_pid(S["env"])

    # ---- 1: a label is not encryption ---------------------------------------

    @suite.case("1: plaintext labelled pkcs7-mime enveloped-data to a mandatory rcpt is encrypted")
    def _():
        env()
        body = "TOP-SECRET-PLAINTEXT-1 is not encrypted at all.\r\n"
        raw = mkmsg(ALICE, [DAVE], "fake enveloped", [
            'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
            "Content-Transfer-Encoding: 7bit"], body)
        qid, msg, f = deliver(ALICE, [DAVE], raw)
        check(b"TOP-SECRET-PLAINTEXT-1" not in msg, "the plaintext left the gateway")
        check_eq(f.get("action"), "sign+encrypt", "action")
        inner = decrypt(msg, "fake1")
        check(b"TOP-SECRET-PLAINTEXT-1" in inner, "dave does not get the content")
        check(ALICE in signer_of(inner, "fake1"), "not signed by alice")
        check(re.search(r"%s: outbound: labelled .* not CMS enveloped data" % qid, log_text()),
              "the log does not say the label was not believed")

    @suite.case("1: pkcs7-mime without smime-type, base64 garbage, is content too")
    def _():
        env()
        garbage = base64.encodebytes(b"TOP-SECRET-2 " + os.urandom(300)).decode()
        raw = mkmsg(ALICE, [DAVE], "fake unknown", [
            "Content-Type: application/pkcs7-mime", "Content-Transfer-Encoding: base64"],
            garbage.replace("\n", "\r\n"))
        qid, msg, f = deliver(ALICE, [DAVE], raw)
        check_eq(f.get("action"), "sign+encrypt", "action")
        decrypt(msg, "fake2")

    @suite.case("1: a really client-encrypted message still passes untouched")
    def _():
        env()
        inner = wpath("real.inner")
        with open(inner, "wb") as fp:
            fp.write(b"Content-Type: text/plain\r\n\r\nReally encrypted.\r\n")
        out = run(["openssl", "cms", "-encrypt", "-aes-256-cbc", "-in", inner,
                   S["pki"]["dave.crt"]]).stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        hdr, body = labsmtp.split_message(out)
        ents = [ln for ln in hdr.decode().split("\r\n") if ln and
                not ln.lower().startswith("mime-version")]
        raw = mkmsg(ALICE, [DAVE], "real", ents, body.decode())
        qid, msg, f = deliver(ALICE, [DAVE], raw)
        check_eq(f.get("action"), "pass", "action")
        check_eq(f.get("result"), "ok", "result")
        check(b"Really encrypted." in decrypt(msg, "real"), "dave cannot read it")

    # ---- 2: one address, one rule --------------------------------------------

    # Postfix itself refuses "..", with 501 5.1.3: any 5xx will do there.
    for spelling, by_kmilter in (("nocert@secure.example.", True),
                                 ('"nocert"@SECURE.example', True),
                                 ("NOCERT@Secure.Example.", True),
                                 ('"no\\cert"@secure.example.', True),
                                 ("nocert@secure.example..", False)):
        @suite.case("2: RCPT <%s> (mandatory domain, no certificate) -> 5xx" % spelling)
        def _(spelling=spelling, by_kmilter=by_kmilter):
            env()
            stage, code, text = refused_at(ALICE, [spelling], plain(ALICE, [NOCERT], "n2"))
            check(stage == "rcpt" and 500 <= code < 600, "refusal: %s %s %s" % (stage, code, text))
            if by_kmilter:
                check(code == 550 and text.startswith("5.7.1") and "S/MIME certificate" in text,
                      "not kmilter's refusal: %d %r" % (code, text))

    @suite.case("2: RCPT <dave@Outside.EXAMPLE.> finds dave's certificate: encrypted to him")
    def _():
        env()
        rcpt = "dave@Outside.EXAMPLE."
        qid, msg, f = deliver(ALICE, [rcpt], plain(ALICE, [DAVE], "spelling"))
        check_eq(f.get("action"), "sign+encrypt", "action")
        check_eq(f.get("result"), "ok", "result")
        check(b"Body spelling." in decrypt(msg, "spelling"), "dave cannot read it")

    # ---- 3: every sender from inside follows the rules -------------------------

    @suite.case("3: null sender from an internal host to a mandatory rcpt without cert -> 550")
    def _():
        env()
        stage, code, text = refused_at("", [NOCERT], plain("", [NOCERT], "null"))
        check_eq((stage, code), ("rcpt", 550), "refusal (%s)" % text)

    @suite.case("3: outside sender from an internal host to a mandatory rcpt without cert -> 550")
    def _():
        env()
        eve = "eve@elsewhere.example"
        stage, code, text = refused_at(eve, [NOCERT], plain(eve, [NOCERT], "eve"))
        check_eq((stage, code), ("rcpt", 550), "refusal (%s)" % text)

    @suite.case("3: authenticated client (outside host), null sender, mandatory rcpt -> 550")
    def _():
        env()
        stage, code, text = refused_at("", [NOCERT], plain("", [NOCERT], "nullauth"),
                                       source=labsmtp.outside_client(S["env"]),
                                       auth=creds(BOB))
        check_eq((stage, code), ("rcpt", 550), "refusal (%s)" % text)

    @suite.case("3: outside sender from an internal host to dave: encrypted, never signed")
    def _():
        env()
        eve = "eve@elsewhere.example"
        qid, msg, f = deliver(eve, [DAVE], plain(eve, [DAVE], "eve-dave"))
        check_eq(f.get("direction"), "outbound", "direction")
        check_eq(f.get("action"), "encrypt", "action")
        inner = decrypt(msg, "eve")
        check(not is_signed(inner), "an outside sender's mail was signed")

    # ---- 4: a signature means the sender --------------------------------------

    @suite.case("4: outside client (127.0.0.2), From alice, no AUTH: not signed")
    def _():
        env()
        qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "spoof"),
                              source=labsmtp.outside_client(S["env"]))
        check(f.get("action") not in ("sign", "sign+encrypt"), "signed: %r" % f)
        check(not is_signed(msg) and "pkcs7" not in ctype(msg), "delivered signed: %r" % ctype(msg))
        check(b"Body spoof." in msg, "the body changed")

    @suite.case("4: authenticated alice (outside host): signed as alice and encrypted")
    def _():
        env()
        qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "alice-auth"),
                              source=labsmtp.outside_client(S["env"]), auth=creds(ALICE))
        check_eq(f.get("action"), "sign+encrypt", "action")
        check_eq(f.get("result"), "ok", "result")
        check(ALICE in signer_of(decrypt(msg, "aliceauth"), "aliceauth"), "signer is not alice")

    @suite.case("4: authenticated bob, MAIL FROM alice -> 553 5.7.1 naming alice, nothing sent")
    def _():
        env()
        before = len(labsmtp.delivered_files(S["env"]))
        for source in (labsmtp.outside_client(S["env"]), None):
            stage, code, text = refused_at(ALICE, [DAVE], plain(ALICE, [DAVE], "bob"),
                                           source=source, auth=creds(BOB))
            check_eq((stage, code), ("mail", 553), "refusal (%s)" % text)
            check(text.startswith("5.7.1") and "<%s>" % ALICE in text and BOB in text,
                  "reply: %r" % text)
        check_eq(len(labsmtp.delivered_files(S["env"])), before, "delivered messages")
        check("MAIL FROM <%s> refused: not owned" % ALICE in log_text(), "no log line")

    @suite.case("4: authenticated bob as himself is not refused")
    def _():
        env()
        qid, msg, f = deliver(BOB, [DAVE], plain(BOB, [DAVE], "bob-self"),
                              source=labsmtp.outside_client(S["env"]), auth=creds(BOB))
        check_eq(f.get("direction"), "outbound", "direction")
        decrypt(msg, "bobself")

    @suite.case("4: sender_login_mismatch = unsigned (SIGHUP): bob as alice encrypted, unsigned, downgraded")
    def _():
        env()
        line = set_policy('sender_login_mismatch = "refuse";', 'sender_login_mismatch = "unsigned";')
        check("reloaded" in line, "reload: %s" % line)
        try:
            qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "bob-unsigned"),
                                  source=labsmtp.outside_client(S["env"]), auth=creds(BOB))
            check_eq(f.get("action"), "encrypt", "action")
            check_eq(f.get("result"), "downgraded", "result")
            check(not is_signed(decrypt(msg, "bobunsigned")), "signed with alice's key")
            lines = [ln for ln in log_text().splitlines() if "%s: from=" % qid in ln]
            check(lines and "sending unsigned" in lines[0] and "does not own" in lines[0],
                  "log line: %r" % lines)
        finally:
            set_policy('sender_login_mismatch = "unsigned";', 'sender_login_mismatch = "refuse";')

    @suite.case("4: sender_login_map lets bob send as alice (SIGHUP reload): signed as alice")
    def _():
        env()
        write_map("# kmilter sender-login map\nalice@example.com  alice@example.com, bob@example.com\n")
        try:
            check("reloaded" in sighup(), "reload failed")
            qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "bob-map"),
                                  source=labsmtp.outside_client(S["env"]), auth=creds(BOB))
            check_eq(f.get("action"), "sign+encrypt", "action")
            check(ALICE in signer_of(decrypt(msg, "bobmap"), "bobmap"), "signer is not alice")
        finally:
            write_map("# empty again\n")
            sighup()

    @suite.case("4: a malformed sender_login_map on SIGHUP: FILE:LINE logged, running config kept")
    def _():
        env()
        write_map("# bad\nalice@example.com bob@example.com\nbroken-line-without-login@example.com\n")
        try:
            line = sighup()
            check("has errors" in line, "reload accepted a malformed map: %s" % line)
            check("%s:3:" % S["map"] in log_text(), "no FILE:LINE for the bad line")
            stage, code, text = refused_at(ALICE, [DAVE], plain(ALICE, [DAVE], "bad-map"),
                                           source=labsmtp.outside_client(S["env"]),
                                           auth=creds(BOB))
            check_eq((stage, code), ("mail", 553), "the half-read map was used (%s)" % text)
        finally:
            write_map("# empty again\n")
            sighup()

    @suite.case("4: sign_unauthenticated = false (SIGHUP): internal host without AUTH unsigned, downgraded")
    def _():
        env()
        line = set_policy('sender_login_mismatch = "refuse";',
                          'sender_login_mismatch = "refuse"; sign_unauthenticated = false;')
        check("reloaded" in line, "reload: %s" % line)
        try:
            qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "noauth"))
            check_eq((f.get("action"), f.get("result")), ("encrypt", "downgraded"), "action, result")
            check(not is_signed(decrypt(msg, "noauth")), "signed without AUTH")
            qid, msg, f = deliver(ALICE, [DAVE], plain(ALICE, [DAVE], "auth"), auth=creds(ALICE))
            check_eq((f.get("action"), f.get("result")), ("sign+encrypt", "ok"), "with AUTH")
        finally:
            set_policy('sender_login_mismatch = "refuse"; sign_unauthenticated = false;',
                       'sender_login_mismatch = "refuse";')

    # ---- never downgrade in silence -------------------------------------------

    @suite.case("downgrade: opportunistic rcpt without certificate -> result=downgraded reason=not encrypted")
    def _():
        env()
        who = "someone@nowhere.example"
        qid, msg, f = deliver(ALICE, [who], plain(ALICE, [who], "oppo"))
        check_eq(f.get("action"), "sign", "action")
        check_eq(f.get("result"), "downgraded", "result")
        line = [ln for ln in log_text().splitlines() if "%s: from=" % qid in ln][0]
        check("reason=not encrypted: <%s>" % who in line, "log line: %s" % line)

    @suite.case("kmilter stayed up")
    def _():
        env()
        pid = labsmtp.milter_pid(S["env"])
        check(pid == S["milter_pid"] and pid_alive(pid), "kmilter restarted or died")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
