#!/usr/bin/python3
"""t-inbound - inbound S/MIME end to end: real Postfix, kmilter, Redis and
the two PyKMIP servers of the lab.

One lab for the suite, with policy.inbound.ca_file set to an "outside" CA
this test makes and authserv_id "mx.example.com".  Internal users:
bob@example.com (imported from a PKCS#12 the test issues from the lab's
organization CA, so the test can also encrypt with gpgsm and NSS cmsutil),
carol@example.com (kmctl enroll --key ec-p256), frank@example.com (kmctl
enroll).  Outside sender dave@outside.example (RSA, outside CA) signs.

Cases: openssl / gpgsm / cmsutil enveloped mail decrypted; sign-then-
encrypt (multipart/signed kept, verifiable, Authentication-Results pass);
signed only (detached, opaque unwrapped); unknown CA, From mismatch and a
tampered body give smime=fail; AES-256-GCM, RSA-OAEP and ECDH decrypted;
a Bcc'ed recipient without a matching key, an outside recipient, and a
RecipientInfo naming carol spliced in from another message keep the
message encrypted (result=downgraded);
forged kmilter headers removed; tampered, truncated and garbage CMS left
as sent with a reason, kmilter still up; two encryption layers; a renewed
(Deactivated) generation still decrypts, a revoked one no longer does.
Env: KTEST_ONLY=substring runs only matching cases (setup always runs);
T_INBOUND_KEEP=1 leaves the lab running and its directory in place.
"""
import atexit
import base64
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq, pid_alive, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
AUTHSERV = "mx.example.com"
KEEP = os.environ.get("T_INBOUND_KEEP") == "1"
DAVE, EVE = "dave@outside.example", "eve@outside.example"
BOB, CAROL, FRANK = "bob@example.com", "carol@example.com", "frank@example.com"
P12PASS = "kmtest-inbound-p12"

W = None            # work directory (certificates, messages)
env = None          # the lab's DIR/env
state = {}          # kmilter pid, fingerprints, ...


class SetupError(Exception):
    pass


# --- small tools ---------------------------------------------------------

def run(argv, data=None, ok=(0,), env_extra=None, timeout=60):
    """Run argv (list) in W; return stdout bytes; SetupError on bad status."""
    e = dict(os.environ)
    if env_extra:
        e.update(env_extra)
    r = subprocess.run(argv, input=data, cwd=W, capture_output=True, env=e, timeout=timeout)
    if r.returncode not in ok:
        raise SetupError("%s: rc %d: %s" % (" ".join(argv[:4]), r.returncode,
                                            r.stderr.decode("utf-8", "replace").strip()[-400:]))
    return r.stdout


def path(name):
    return os.path.join(W, name)


def write(name, data, mode=0o644):
    p = path(name)
    with open(p, "wb") as fp:
        fp.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(p, mode)
    return p


def crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


def kmctl(*args, errs=None):
    """Run kmctl; its stdout.  errs (a list) collects its stderr lines."""
    argv = shlex.split(env["LAB_KMCTL"].replace("$KM_BUILD", BUILD)
                       .replace("$DIR", env["LAB_DIR"])) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SetupError("kmctl %s: rc %d: %s %s" % (" ".join(args), r.returncode,
                                                     r.stdout.strip(), r.stderr.strip()))
    if errs is not None:
        errs.extend("kmctl %s: %s" % (args[0], ln) for ln in r.stderr.splitlines()
                    if "keystore: L1 " not in ln)
    return r.stdout


def cache_log():
    """kmilter's lines about the cache and its invalidation subscriber."""
    with open(env["LAB_LOG"], errors="replace") as fp:
        return [ln.rstrip("\n") for ln in fp
                if re.search(r"cache|invalidat|subscri|keystore", ln)][-8:]


def invalidations():
    """How many invalidations kmilter logged receiving (log.verbose 2)."""
    with open(env["LAB_LOG"], errors="replace") as fp:
        return sum(1 for ln in fp if "keystore: invalidated " in ln)


# --- PKI -----------------------------------------------------------------

def mkca(name, cn):
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-sha256", "-subj", "/O=%s/CN=%s" % (cn, cn), "-keyout", path(name + ".key"),
         "-out", path(name + ".crt"),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash"])
    os.chmod(path(name + ".crt"), 0o644)


def mkuser(name, email, ca_crt, ca_key):
    """RSA-2048 key and certificate for email issued by the CA files."""
    run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", path(name + ".key")])
    run(["openssl", "req", "-new", "-key", path(name + ".key"), "-subj",
         "/O=kmilter inbound test/CN=%s/emailAddress=%s" % (name, email),
         "-out", path(name + ".csr")])
    write(name + ".ext", "basicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=emailProtection\nsubjectAltName=email:%s\n"
          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % email)
    # -set_serial: no serial file next to the CA (the lab's CA dir is not ours)
    run(["openssl", "x509", "-req", "-in", path(name + ".csr"), "-CA", ca_crt,
         "-CAkey", ca_key, "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
         "-days", "365", "-sha256", "-extfile", path(name + ".ext"),
         "-out", path(name + ".crt")])


def fingerprint(crt):
    out = run(["openssl", "x509", "-in", path(crt), "-noout", "-fingerprint", "-sha1"])
    return out.decode().strip().split("=", 1)[1].replace(":", "")


# --- messages ------------------------------------------------------------

def inner(tag):
    """A text/plain MIME entity whose body names the case."""
    return (b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\n"
            b"Hello Bob,\r\nthe inbound test body of case %s.\r\n-- \r\nDave\r\n" % tag.encode())


def mail(entity, to, sender=DAVE, subject="inbound test", extra=()):
    """A whole message: RFC 5322 headers in front of a MIME entity."""
    hdrs = ["From: Dave <%s>" % sender, "To: %s" % ", ".join("<%s>" % t for t in to),
            "Subject: %s" % subject, "Date: Mon, 23 Nov 2026 10:00:00 +0000",
            "Message-ID: <%s@outside.example>" % os.urandom(8).hex()]
    hdrs += list(extra)
    ent = crlf(entity)
    if not ent.startswith(b"MIME-Version:"):
        ent = b"MIME-Version: 1.0\r\n" + ent
    return ("\r\n".join(hdrs) + "\r\n").encode() + ent


def der_entity(der, smime_type):
    """Raw DER CMS (gpgsm, cmsutil) wrapped as application/pkcs7-mime."""
    return (b"Content-Type: application/pkcs7-mime; smime-type=%s; name=smime.p7m\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=smime.p7m\r\n\r\n"
            % smime_type.encode()) + crlf(base64.encodebytes(der))


def ossl_encrypt(entity, recips, cipher="-aes-256-cbc", keyopts=(), outform="SMIME"):
    """openssl cms -encrypt to recips (cert file names); keyopts apply to the last."""
    src = write("enc-in.mime", entity)
    argv = ["openssl", "cms", "-encrypt", "-binary", cipher, "-in", src, "-outform", outform]
    for r in recips:
        argv += ["-recip", path(r)]
    for k in keyopts:
        argv += ["-keyopt", k]
    if outform == "SMIME":
        argv.append("-crlfeol")
    return run(argv)


def ossl_sign(entity, signer="dave", certfile="outca.crt", opaque=False):
    src = write("sign-in.mime", entity)
    argv = ["openssl", "cms", "-sign", "-md", "sha256", "-signer", path(signer + ".crt"),
            "-inkey", path(signer + ".key"), "-in", src, "-crlfeol"]
    if certfile:
        argv += ["-certfile", path(certfile)]
    if opaque:
        argv += ["-nodetach", "-binary"]
    return run(argv)


def unfold_headers(head):
    out = []
    for line in re.split(rb"\r?\n", head):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1][1] += " " + line.decode("latin-1").strip()
        else:
            name, _, value = line.decode("latin-1").partition(":")
            out.append([name, value.strip()])
    return out


def norm(value):
    return re.sub(r"\s+", " ", value or "").strip()


class Delivered:
    def __init__(self, qid, msg, line):
        self.qid, self.msg, self.line = qid, msg, line or ""
        head, self.body = labsmtp.split_message(msg)
        self.headers = unfold_headers(head)
        self.fields = labsmtp.parse_log_line(self.line) if line else {}

    def get(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def one(self, name):
        vals = self.get(name)
        return vals[0] if len(vals) == 1 else None

    @property
    def ctype(self):
        return norm(self.one("Content-Type"))

    def all_log(self):
        """Every line kmilter logged about this queue id."""
        with open(env["LAB_LOG"], "rb") as fp:
            return [ln.decode("utf-8", "replace").rstrip("\n") for ln in fp
                    if (self.qid + ":").encode() in ln]

    def why(self):
        return "log: %s | headers: %s" % (" / ".join(self.all_log())[-600:],
                                          [(n, v[:80]) for n, v in self.headers
                                           if n.lower() in ("content-type",
                                                            "authentication-results",
                                                            "x-kmilter-decrypted")])



def source_for(env, sender):
    """Mail from an outside sender comes from a client outside the lab's
    internal_hosts, as it would through an MX."""
    return None if sender.lower().endswith("@example.com") else labsmtp.outside_client(env)

def deliver(raw, rcpts=(BOB,), sender=DAVE):
    qid = labsmtp.submit(env, sender, list(rcpts), raw, source=source_for(env, sender))
    p = labsmtp.wait_delivered(env, qid, timeout=30)
    _, msg = labsmtp.read_delivered(p)
    return Delivered(qid, msg, labsmtp.wait_log_line(env, qid, timeout=10))


def entity_parts(entity):
    head, body = labsmtp.split_message(crlf(entity))
    ct = [v for n, v in unfold_headers(head) if n.lower() == "content-type"]
    return norm(ct[0] if ct else ""), body


def check_decrypted(d, entity, action="decrypt"):
    """Delivered as the inner entity, with X-Kmilter-Decrypted and a log line."""
    want_ct, want_body = entity_parts(entity)
    check(d.fields.get("direction") == "inbound", "not inbound: %s" % d.why())
    check_eq(d.ctype, want_ct, "delivered Content-Type (%s)" % d.why())
    check(labsmtp.lf(d.body) == labsmtp.lf(want_body),
          "body differs from the inner entity's: %r" % d.body[:200])
    check(len(d.get("X-Kmilter-Decrypted")) == 1, "no X-Kmilter-Decrypted: %s" % d.why())
    check_eq(d.fields.get("action"), action, "log action (%s)" % d.line)


def check_left_as_sent(d, raw, what):
    """Delivered with the sent Content-Type and body, no decryption header."""
    _, sent_body = labsmtp.split_message(raw)
    sent_ct = [v for n, v in unfold_headers(labsmtp.split_message(raw)[0])
               if n.lower() == "content-type"][0]
    check_eq(d.ctype, norm(sent_ct), "%s: Content-Type (%s)" % (what, d.why()))
    check(labsmtp.lf(d.body) == labsmtp.lf(sent_body), "%s: body changed" % what)
    check(not d.get("X-Kmilter-Decrypted"), "%s: X-Kmilter-Decrypted present" % what)


def ar_of(d):
    vals = [norm(v) for v in d.get("Authentication-Results") if v.lower().startswith(AUTHSERV)]
    check(len(vals) == 1, "want one Authentication-Results of %s, got %r (%s)"
          % (AUTHSERV, vals, d.why()))
    return vals[0]


def openssl_verify(msg, ca="outca.crt"):
    p = write("verify-in.eml", msg)
    r = subprocess.run(["openssl", "cms", "-verify", "-CAfile", path(ca), "-purpose",
                        "smimesign", "-in", p, "-out", path("verify-out")],
                       capture_output=True, text=True, cwd=W)
    return r.returncode == 0, r.stderr.strip()[-300:]


# --- gpgsm and NSS -------------------------------------------------------

def setup_gpgsm():
    home = path("gnupg")
    os.mkdir(home, 0o700)
    state["gnupghome"] = home
    write("gnupg/gpg-agent.conf", "allow-loopback-pinentry\n", 0o600)
    write("gnupg/gpgsm.conf", "disable-crl-checks\ndisable-policy-checks\ndisable-ocsp\n", 0o600)
    e = {"GNUPGHOME": home}
    run(["gpgsm", "--batch", "--import", path("orgca.crt")], env_extra=e)
    write("gnupg/trustlist.txt", "%s S relax\n" % fingerprint("orgca.crt"), 0o600)
    run([os.path.join(TOP, "tests", "lablib", "gpgsm-import-p12"), path("bob.p12"),
         path("p12pass"), path("bob.crt"), path("bob.key"), path("orgca.crt")], env_extra=e)
    state["bob_fpr"] = fingerprint("bob.crt")


def gpgsm_encrypt(entity):
    src = write("g-in.mime", entity)
    run(["gpgsm", "--batch", "--yes", "--cipher-algo", "AES256", "-r",
         "0x" + state["bob_fpr"], "--encrypt", "-o", path("g.der"), src],
        env_extra={"GNUPGHOME": state["gnupghome"]})
    with open(path("g.der"), "rb") as fp:
        return fp.read()


def setup_nss():
    os.mkdir(path("nss"))
    db = "sql:" + path("nss")
    run(["certutil", "-N", "-d", db, "--empty-password"])
    run(["certutil", "-A", "-d", db, "-n", "orgca", "-t", "CT,C,C", "-i", path("orgca.crt")])
    run(["pk12util", "-i", path("bob.p12"), "-d", db, "-w", path("p12pass"), "-K", ""])


def cmsutil_encrypt(entity):
    src = write("n-in.mime", entity)
    run(["cmsutil", "-E", "-d", "sql:" + path("nss"), "-p", "", "-r", "bob", "-i", src,
         "-o", path("n.der")])
    with open(path("n.der"), "rb") as fp:
        return fp.read()


# --- lab -----------------------------------------------------------------

def lab_down(d):
    subprocess.run([LAB, "down", d], capture_output=True, timeout=120)


def setup(base):
    global W, env
    W = os.path.join(base, "w")
    os.mkdir(W)
    os.chmod(W, 0o755)
    t0 = time.time()
    mkca("outca", "Outside Org CA")
    mkca("rogueca", "Unknown CA")
    mkuser("dave", DAVE, path("outca.crt"), path("outca.key"))
    mkuser("dave-rogue", DAVE, path("rogueca.crt"), path("rogueca.key"))

    d = os.path.join(base, "lab")
    policy = 'inbound: { ca_file = "%s"; authserv_id = "%s"; };' % (path("outca.crt"), AUTHSERV)
    # verbose 2: kmilter logs each invalidation it receives, which the
    # revocation case waits for
    e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", KMILTER_CONF_POLICY=policy,
             KMILTER_VERBOSE="2")
    if not KEEP:
        atexit.register(lab_down, d)
    t1 = time.time()
    r = subprocess.run([LAB, "up", d], env=e, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise SetupError("lab up failed (%d): %s %s" % (r.returncode, r.stdout[-500:],
                                                        r.stderr[-500:]))
    env = labsmtp.load_env(d)
    t2 = time.time()
    with open(env["LAB_KMILTER_PID_FILE"].replace("$DIR", d)) as fp:
        state["pid"] = int(fp.read().strip())

    # bob: issued by the organization CA, imported from a legacy PKCS#12
    orgca = os.path.join(d, "orgca")
    shutil.copy(os.path.join(orgca, "ca.crt"), path("orgca.crt"))
    mkuser("bob", BOB, os.path.join(orgca, "ca.crt"), os.path.join(orgca, "ca.key"))
    km = pwd.getpwnam("kmilter")
    write("p12pass", P12PASS + "\n", 0o600)
    os.chown(path("p12pass"), km.pw_uid, km.pw_gid)
    run(["openssl", "pkcs12", "-export", "-in", path("bob.crt"), "-inkey", path("bob.key"),
         "-certfile", path("orgca.crt"), "-name", "bob", "-passout", "file:" + path("p12pass"),
         "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1",
         "-out", path("bob.p12")])
    os.chmod(path("bob.p12"), 0o600)
    os.chown(path("bob.p12"), km.pw_uid, km.pw_gid)
    kmctl("import", BOB, path("bob.p12"), "--password-file", path("p12pass"))
    kmctl("enroll", CAROL, "--key", "ec-p256")
    kmctl("enroll", FRANK)
    write("carol.crt", kmctl("export-cert", CAROL))
    write("frank-gen1.crt", kmctl("export-cert", FRANK))
    for c in ("carol.crt", "frank-gen1.crt"):
        run(["openssl", "x509", "-in", path(c), "-noout"])
    setup_gpgsm()
    setup_nss()
    t3 = time.time()
    print("FIGURE setup: outside PKI %.1fs, lab up %.1fs, users+gpgsm+nss %.1fs"
          % (t1 - t0, t2 - t1, t3 - t2), flush=True)


def cleanup(base):
    home = state.get("gnupghome")
    if home and os.path.isdir(home):
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                       capture_output=True, timeout=30)
    shutil.rmtree(base, ignore_errors=True)


# --- cases ---------------------------------------------------------------

suite = Suite()


@suite.case("openssl_rsa_aes256cbc_decrypted")
def _():
    ent = inner("openssl-cbc")
    d = deliver(mail(ossl_encrypt(ent, ["bob.crt"]), [BOB]))
    check_decrypted(d, ent)


@suite.case("gpgsm_decrypted")
def _():
    ent = inner("gpgsm")
    d = deliver(mail(der_entity(gpgsm_encrypt(ent), "enveloped-data"), [BOB]))
    check_decrypted(d, ent)


@suite.case("cmsutil_decrypted")
def _():
    ent = inner("cmsutil")
    d = deliver(mail(der_entity(cmsutil_encrypt(ent), "enveloped-data"), [BOB]))
    check_decrypted(d, ent)


@suite.case("signed_then_encrypted")
def _():
    signed = ossl_sign(inner("sign-enc"))
    d = deliver(mail(ossl_encrypt(signed, ["bob.crt"]), [BOB]))
    check_decrypted(d, signed, action="decrypt+verify")
    check(d.ctype.startswith("multipart/signed"), "not multipart/signed: %s" % d.ctype)
    ok, err = openssl_verify(d.msg)
    check(ok, "openssl cms -verify of the delivered message failed: %s" % err)
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")


@suite.case("signed_only_detached")
def _():
    signed = ossl_sign(inner("detached"))
    d = deliver(mail(signed, [BOB]))
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")
    check(d.ctype.startswith("multipart/signed"), "not multipart/signed: %s" % d.ctype)
    check(not d.get("X-Kmilter-Decrypted"), "X-Kmilter-Decrypted on a signed-only message")
    ok, err = openssl_verify(d.msg)
    check(ok, "delivered signature no longer verifies: %s" % err)
    check_eq(d.fields.get("action"), "verify", "log action (%s)" % d.line)


@suite.case("signed_only_opaque_unwrapped")
def _():
    ent = inner("opaque")
    signed = ossl_sign(ent, opaque=True)
    check(b"signed-data" in signed, "openssl did not produce signed-data")
    d = deliver(mail(signed, [BOB]))
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")
    want_ct, want_body = entity_parts(ent)
    check_eq(d.ctype, want_ct, "delivered Content-Type (%s)" % d.why())
    check(labsmtp.lf(d.body) == labsmtp.lf(want_body), "unwrapped body differs: %r"
          % d.body[:200])
    check_eq(d.fields.get("action"), "unwrap+verify", "log action (%s)" % d.line)


@suite.case("signed_unknown_ca_fails")
def _():
    d = deliver(mail(ossl_sign(inner("rogue"), signer="dave-rogue", certfile="rogueca.crt"),
                     [BOB]))
    ar = ar_of(d)
    check(ar.startswith("%s; smime=fail (untrusted signer" % AUTHSERV), "AR: %s" % ar)
    check(ar.endswith("body.smime-identifier=%s" % DAVE), "AR identifier: %s" % ar)


@suite.case("signed_from_mismatch_fails")
def _():
    d = deliver(mail(ossl_sign(inner("mismatch")), [BOB], sender=EVE), sender=EVE)
    check_eq(ar_of(d), "%s; smime=fail (signer does not match From) "
             "body.smime-identifier=%s" % (AUTHSERV, DAVE), "Authentication-Results")


@suite.case("signed_tampered_body_fails")
def _():
    signed = ossl_sign(inner("tamper"))
    bad = signed.replace(b"inbound test body", b"inbound TEST body", 1)
    check(bad != signed, "nothing tampered")
    ok, _ = openssl_verify(crlf(bad))
    check(not ok, "precondition: openssl still verifies the tampered message")
    d = deliver(mail(bad, [BOB]))
    ar = ar_of(d)
    check(ar.startswith("%s; smime=fail (bad signature)" % AUTHSERV), "AR: %s" % ar)


@suite.case("openssl_aes256gcm_authenveloped_decrypted")
def _():
    ent = inner("gcm")
    out = ossl_encrypt(ent, ["bob.crt"], cipher="-aes-256-gcm")
    check(b"authEnveloped-data" in out, "openssl did not produce authEnveloped-data")
    check_decrypted(deliver(mail(out, [BOB])), ent)


@suite.case("openssl_rsa_oaep_decrypted")
def _():
    ent = inner("oaep")
    out = ossl_encrypt(ent, ["bob.crt"], keyopts=["rsa_padding_mode:oaep",
                                                    "rsa_oaep_md:sha256"])
    check_decrypted(deliver(mail(out, [BOB])), ent)


@suite.case("openssl_ecdh_to_carol_decrypted")
def _():
    ent = inner("ecdh")
    out = ossl_encrypt(ent, ["carol.crt"])
    check_decrypted(deliver(mail(out, [CAROL]), rcpts=(CAROL,)), ent)


@suite.case("bcc_recipient_without_key_left_encrypted")
def _():
    raw = mail(ossl_encrypt(inner("bcc"), ["bob.crt"]), [BOB])
    d = deliver(raw, rcpts=(BOB, FRANK))
    check_left_as_sent(d, raw, "bcc")
    check(d.ctype.startswith("application/pkcs7-mime") and "enveloped-data" in d.ctype,
          "not enveloped-data: %s" % d.ctype)
    check_eq(d.fields.get("direction"), "inbound", "direction (%s)" % d.line)
    check("<%s> holds no key" % FRANK in d.line, "log line does not say why: %s" % d.line)


@suite.case("outside_recipient_keeps_it_encrypted")
def _():
    # one body for bob and an outside address: plaintext must not go out
    raw = mail(ossl_encrypt(inner("outside-rcpt"), ["bob.crt"]), [BOB, EVE])
    d = deliver(raw, rcpts=(BOB, EVE))
    check_left_as_sent(d, raw, "outside recipient")
    check(b"outside-rcpt" not in d.msg, "plaintext delivered")
    check_eq(d.fields.get("result"), "downgraded", "result (%s)" % d.line)
    check("<%s> is not internal" % EVE in d.line, "log line does not say why: %s" % d.line)


@suite.case("spliced_recipientinfo_keeps_it_encrypted")
def _():
    # carol's RecipientInfo (ECDH) of another message spliced into mail for
    # bob: it names carol but does not give her this message's key
    mine = ossl_encrypt(inner("spliced"), ["bob.crt"], outform="DER")
    donor = ossl_encrypt(inner("donor"), ["carol.crt"], outform="DER")
    write("mine.der", mine)
    write("donor.der", donor)
    run([os.path.join(BUILD, "tools", "cms-splice"), "add-ri", path("mine.der"),
         path("donor.der"), path("spliced.der")])
    with open(path("spliced.der"), "rb") as fp:
        raw = mail(der_entity(fp.read(), "enveloped-data"), [BOB, CAROL])
    d = deliver(raw, rcpts=(BOB, CAROL))
    check_left_as_sent(d, raw, "spliced RecipientInfo")
    check(b"spliced" not in d.msg, "plaintext delivered")
    check_eq(d.fields.get("result"), "downgraded", "result (%s)" % d.line)
    check("<%s> cannot open it" % CAROL in d.line, "log line does not say why: %s" % d.line)


@suite.case("forged_headers_removed")
def _():
    forged = ["Authentication-Results: %s; smime=pass body.smime-identifier=ceo@example.com"
              % AUTHSERV, "X-Kmilter-Decrypted: yes",
              "Authentication-Results: other.example; spf=pass smtp.mailfrom=outside.example"]
    # a plain message: nothing of kmilter's may remain
    d = deliver(labsmtp.make_message(DAVE, [BOB], "forged plain", "plain body\r\n", forged))
    check(not d.get("X-Kmilter-Decrypted"), "forged X-Kmilter-Decrypted kept: %s" % d.why())
    ours = [v for v in d.get("Authentication-Results") if v.lower().startswith(AUTHSERV)]
    check(not ours, "forged Authentication-Results kept: %r" % ours)
    check(any(v.startswith("other.example;") for v in d.get("Authentication-Results")),
          "another authserv-id's Authentication-Results was removed too")
    # a signed, encrypted message: only kmilter's own remain
    raw = mail(ossl_encrypt(ossl_sign(inner("forged")), ["bob.crt"]), [BOB], extra=forged)
    d = deliver(raw)
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")
    xs = d.get("X-Kmilter-Decrypted")
    check(len(xs) == 1 and xs[0] != "yes", "X-Kmilter-Decrypted: %r" % xs)


def b64_body_lines(entity):
    head, body = labsmtp.split_message(crlf(entity))
    return head, [ln for ln in body.split(b"\r\n") if ln]


@suite.case("malformed_cms_left_as_sent")
def _():
    results = []
    # 1. tampered ciphertext: flip the last byte of the next-to-last CBC block,
    #    which flips the padding byte of the last plaintext block.
    der = bytearray(ossl_encrypt(inner("tampered"), ["bob.crt"], outform="DER"))
    der[-17] ^= 0xFF
    write("tampered.der", bytes(der))
    r = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in",
                        path("tampered.der"), "-recip", path("bob.crt"), "-inkey",
                        path("bob.key")], capture_output=True, cwd=W)
    check(r.returncode != 0, "precondition: openssl decrypts the tampered ciphertext")
    check(b"bad decrypt" in r.stderr, "precondition: openssl refused the tampered ciphertext "
          "for another reason than its padding: %r" % r.stderr[-300:])
    raw = mail(der_entity(bytes(der), "enveloped-data"), [BOB])
    results.append(("tampered", raw, deliver(raw)))
    # 2. base64 cut in half
    head, lines = b64_body_lines(ossl_encrypt(inner("truncated"), ["bob.crt"]))
    raw = mail(head + b"\r\n".join(lines[:len(lines) // 2]) + b"\r\n", [BOB])
    results.append(("truncated", raw, deliver(raw)))
    # 3. application/pkcs7-mime holding garbage, with and without smime-type
    junk = crlf(base64.encodebytes(b"this is not CMS at all " * 20))
    for name, ct in (("garbage-enveloped", "application/pkcs7-mime; "
                      "smime-type=enveloped-data; name=smime.p7m"),
                     ("garbage-untyped", "application/pkcs7-mime; name=smime.p7m")):
        raw = mail(b"Content-Type: " + ct.encode() +
                   b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + junk, [BOB])
        results.append((name, raw, deliver(raw)))
    for name, raw, d in results:
        check_left_as_sent(d, raw, name)
        check(not [v for v in d.get("Authentication-Results")
                   if v.lower().startswith(AUTHSERV)], "%s: got an Authentication-Results "
              "header, not left as sent: %s" % (name, d.why()))
        check_eq(d.fields.get("direction"), "inbound", "%s: direction (%s)" % (name, d.line))
        reason = d.fields.get("reason") or ""
        check(reason, "%s: the message's log line does not say why: %s (all: %s)"
              % (name, d.line, d.all_log()))
    check(pid_alive(state["pid"]), "kmilter (pid %d) is gone" % state["pid"])
    with open(env["LAB_KMILTER_PID_FILE"]) as fp:
        check_eq(int(fp.read().strip()), state["pid"], "kmilter pid")
    print("  malformed reasons: " + " | ".join("%s: %s" % (n, d.line.split("reason=", 1)[-1])
                                               for n, _, d in results), flush=True)


@suite.case("nested_signed_encrypted_twice")
def _():
    signed = ossl_sign(inner("nested"))
    once = ossl_encrypt(signed, ["bob.crt"])
    twice = ossl_encrypt(once, ["bob.crt"])
    d = deliver(mail(twice, [BOB]))
    check_decrypted(d, signed, action="decrypt+verify")
    ok, err = openssl_verify(d.msg)
    check(ok, "delivered signature does not verify: %s" % err)
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")


def big_inner(tag, mb=3):
    """A text entity of about mb MB: past milter.spool_memory_max (1 MiB)."""
    line = b"%s: the quick brown fox jumps over the lazy dog 0123456789\r\n" % tag.encode()
    return (b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\n" + line * (mb * 1000000 // len(line)))


def ossl_encrypt_stream(entity):
    """openssl cms -encrypt -stream to bob: indefinite lengths, chunked content."""
    return run(["openssl", "cms", "-encrypt", "-binary", "-stream", "-aes-256-cbc",
                "-crlfeol", "-in", write("big-in.mime", entity), path("bob.crt")])


def streamed(d):
    """Did kmilter read this message's envelope from the spool (the stream path)?"""
    return any("from the spool" in ln for ln in d.all_log())


@suite.case("large_signed_then_encrypted_streamed")
def _():
    # 3 MB signed by dave, encrypted with -stream (indefinite lengths,
    # chunked content): decrypted from the spool and its signature checked
    # reading the signed part from the spool
    signed = ossl_sign(big_inner("large-signed"))
    d = deliver(mail(ossl_encrypt_stream(signed), [BOB]))
    check(streamed(d), "not read as a stream: %s" % d.why())
    check_decrypted(d, signed, action="decrypt+verify")
    ok, err = openssl_verify(d.msg)
    check(ok, "delivered signature does not verify: %s" % err)
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")


@suite.case("large_signed_only_streamed")
def _():
    # 3 MB signed by dave, not encrypted: checked from the spool, delivered as sent
    signed = ossl_sign(big_inner("large-signed-only"))
    raw = mail(signed, [BOB])
    d = deliver(raw)
    check(streamed(d), "not read from the spool: %s" % d.why())
    check_eq(ar_of(d), "%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE),
             "Authentication-Results")
    check(labsmtp.lf(d.body) == labsmtp.lf(labsmtp.split_message(raw)[1]), "body changed")
    check_eq(d.fields.get("action"), "verify", "log action (%s)" % d.line)


@suite.case("large_gcm_streamed")
def _():
    ent = big_inner("large-gcm", 2)
    d = deliver(mail(ossl_encrypt(ent, ["bob.crt"], cipher="-aes-256-gcm"), [BOB]))
    check(streamed(d), "not read as a stream: %s" % d.why())
    check_decrypted(d, ent)


@suite.case("large_truncated_or_lying_left_as_sent")
def _():
    results = []
    # 1. a 3 MB -stream message cut at 60% of its base64 lines
    head, lines = b64_body_lines(ossl_encrypt_stream(big_inner("large-cut")))
    results.append(("truncated", mail(head + b"\r\n".join(lines[:len(lines) * 6 // 10])
                                      + b"\r\n", [BOB]), "truncated"))
    # 2. DER whose outer length says one octet more, and one octet less
    der = ossl_encrypt(big_inner("large-lie"), ["bob.crt"], outform="DER")
    check(der[:2] == b"\x30\x83", "unexpected DER header %r" % der[:2])
    n = int.from_bytes(der[2:5], "big")
    for name, delta in (("longer", 1), ("shorter", -1)):
        lie = der[:2] + (n + delta).to_bytes(3, "big") + der[5:]
        results.append((name, mail(der_entity(lie, "enveloped-data"), [BOB]),
                        "a length says"))
    for name, raw, why in results:
        d = deliver(raw)
        check(streamed(d) or any("CMS stream" in ln for ln in d.all_log()),
              "%s: not read as a stream: %s" % (name, d.why()))
        check_left_as_sent(d, raw, name)
        check(why in d.line, "%s: the log line does not say %r: %s" % (name, why, d.line))
    check(pid_alive(state["pid"]), "kmilter (pid %d) is gone" % state["pid"])


@suite.case("renewed_generation_decrypts_revoked_not")
def _():
    errs = []

    def why():
        return "kmctl stderr: %s; kmilter cache log: %s" % (errs, cache_log())
    out = kmctl("renew", FRANK, errs=errs)
    check("generation 2" in out, "renew: %s" % out.strip())
    show = kmctl("show", FRANK)
    check(re.search(r"generation 1\b.*Deactivated", show), "show after renew: %s" % show)
    ent = inner("old-generation")
    d = deliver(mail(ossl_encrypt(ent, ["frank-gen1.crt"]), [FRANK]), rcpts=(FRANK,))
    check_decrypted(d, ent)
    hdr = d.one("X-Kmilter-Decrypted") or ""
    # frank's keys were cached by the Bcc case before the renewal: a key
    # set that still calls generation 1 current means the cache is stale
    check("generation 1 (expired)" in hdr, "X-Kmilter-Decrypted after renew: %r "
          "(generation 1 should no longer be current; %s)" % (hdr, why()))
    n0 = invalidations()
    t0 = time.monotonic()
    out = kmctl("revoke", FRANK, "1", errs=errs)
    check("revoked" in out, "revoke: %s" % out.strip())
    t1 = time.monotonic()
    # the event: kmilter's subscriber received the revocation's invalidation,
    # within the 2 s that the fixed pause here used to allow
    wait_for(lambda: invalidations() > n0, 2.0,
             lambda: "kmilter logging the invalidation published by kmctl revoke (%s)" % why())
    print("INFO invalidation reached kmilter %.2fs after kmctl revoke returned "
          "(%.2fs after it started)" % (time.monotonic() - t1, time.monotonic() - t0))
    raw = mail(ossl_encrypt(inner("revoked"), ["frank-gen1.crt"]), [FRANK])
    d = deliver(raw, rcpts=(FRANK,))
    check(not d.get("X-Kmilter-Decrypted"), "decrypted with a revoked key after kmilter "
          "received the invalidation: %r (%s)" % (d.get("X-Kmilter-Decrypted"), why()))
    check_left_as_sent(d, raw, "revoked generation")
    check(d.fields.get("reason"), "log line does not say why: %s" % d.line)


def main():
    base = tempfile.mkdtemp(prefix="t-inbound.")
    os.chmod(base, 0o755)
    if KEEP:
        print("lab kept in %s (tests/lab down %s/lab)" % (base, base), flush=True)
    else:
        atexit.register(cleanup, base)
    t0 = time.time()
    try:
        setup(base)
    except (SetupError, labsmtp.LabError, OSError, subprocess.SubprocessError) as e:
        print("FAIL setup: %s" % e, flush=True)
        return 1
    rc = suite.run()
    print("FIGURE t-inbound total %.1fs" % (time.time() - t0), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
