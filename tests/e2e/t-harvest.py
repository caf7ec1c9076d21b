#!/usr/bin/python3
"""t-harvest - correspondents' encryption certificates harvested from their
verified signatures (issue 16 item 2), end to end through the lab: real
Postfix, kmilter, Redis and the two PyKMIP servers.

One lab, with policy.inbound.ca_file = a "partner" CA this test makes and
harvest_max_per_address = 2.  Outside correspondents sign with a signing-
only certificate and carry encryption certificates in the signature's set,
with an SMIMEEncryptionKeyPreference attribute made by
build/tools/sign-keypref (openssl cms cannot add it).

Cases: carol's certificate named by encKeyPref is stored (not the other,
newer one in the set), logged with address, fingerprint and queue id;
helen's, signed by openssl cms without encKeyPref, is found in the set by
its address (another address's beside it is not looked at); kmctl show
says "source harvested"; then alice@example.com writes to carol
and the message is encrypted to that certificate (no kmctl import); the
same certificate again stores nothing; never stored: a bad signature, a
signer from an unknown CA, a signer that is not the From address, an
encryption certificate for another address, an expired one, one from an
unknown CA; a flood of
new certificates for erin stops at harvest_max_per_address; frank's
imported certificate is not replaced (and his next message is not refused
again in the log: the KM's answer is remembered); with KM server B down a
signed message is delivered, the KM error logged once, and the next one
does not try the KM (back-off).  Every message is delivered.
Env: KTEST_ONLY=substring; T_HARVEST_KEEP=1 leaves the lab in place.
"""
import atexit
import base64
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq, need  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
SIGNER_TOOL = os.path.join(BUILD, "tools", "sign-keypref")
KEEP = os.environ.get("T_HARVEST_KEEP") == "1"
AUTHSERV = "mx.example.com"
ALICE = "alice@example.com"
CAROL, ERIN, FRANK, DAVE = ("carol@partner.example", "erin@partner.example",
                            "frank@partner.example", "dave@partner.example")
GEORGE, HELEN = "george@partner.example", "helen@partner.example"
MAX_PER_ADDRESS = 2

W = None
env = None
state = {}
NOW = datetime.datetime.now(datetime.timezone.utc)


class SetupError(Exception):
    pass


def path(name):
    return os.path.join(W, name)


def run(argv, data=None, ok=(0,)):
    r = subprocess.run(argv, input=data, cwd=W, capture_output=True, timeout=120)
    if r.returncode not in ok:
        raise SetupError("%s: rc %d: %s" % (" ".join(argv[:4]), r.returncode,
                                            r.stderr.decode("utf-8", "replace")[-400:]))
    return r.stdout


def kmctl(*args):
    argv = shlex.split(env["LAB_KMCTL"].replace("$KM_BUILD", BUILD)
                       .replace("$DIR", env["LAB_DIR"])) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SetupError("kmctl %s: rc %d: %s %s" % (" ".join(args), r.returncode,
                                                     r.stdout.strip(), r.stderr.strip()))
    return r.stdout


# --- PKI (python cryptography: exact validity periods) --------------------

def save(name, cert, key):
    with open(path(name + ".crt"), "wb") as fp:
        fp.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(path(name + ".key"), "wb") as fp:
        fp.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.chmod(path(name + ".crt"), 0o644)


def mkca(name, cn):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subj = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=30))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           False)
            .sign(key, hashes.SHA256()))
    save(name, cert, key)
    state["ca:" + name] = (cert, key)


def mkuser(name, email, ca, enc, nb_hours=-1.0, na_hours=24 * 365):
    """A certificate for email from CA ca: encryption (keyEncipherment) or
    signing (digitalSignature) only; validity in hours from now."""
    ca_cert, ca_key = state["ca:" + ca]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subj = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner"),
                      x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ku = (x509.KeyUsage(False, False, True, False, False, False, False, False, False)
          if enc else
          x509.KeyUsage(True, True, False, False, False, False, False, False, False))
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + datetime.timedelta(hours=nb_hours))
            .not_valid_after(NOW + datetime.timedelta(hours=na_hours))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(ku, True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    save(name, cert, key)
    state["fp:" + name] = cert.fingerprint(hashes.SHA256()).hex(":").upper()


# --- messages ------------------------------------------------------------

def crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


def inner(tag):
    return (b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\n"
            b"Hello Alice,\r\nthe harvest test body of case %s.\r\n" % tag.encode())


def signed(tag, signer, pref=None, extra=()):
    """Opaque signed-data by signer (name of .crt/.key) carrying extra
    certificates, encKeyPref naming pref."""
    argv = [SIGNER_TOOL, path(signer + ".crt"), path(signer + ".key")]
    for c in extra:
        argv += ["-c", path(c + ".crt")]
    if pref:
        argv += ["-p", path(pref + ".crt")]
    return run(argv, data=inner(tag))


def mail(der, sender, to=ALICE):
    hdrs = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: harvest test",
            "Date: Tue, 01 Dec 2026 06:00:00 +0000",
            "Message-ID: <%s@partner.example>" % os.urandom(8).hex(), "MIME-Version: 1.0",
            "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m",
            "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename=smime.p7m"]
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + crlf(base64.encodebytes(der))


class Delivered:
    def __init__(self, qid, msg, line):
        self.qid, self.msg, self.line = qid, msg, line or ""
        self.fields = labsmtp.parse_log_line(line) if line else {}

    def log(self):
        """kmilter's lines about this queue id."""
        with open(env["LAB_LOG"], "rb") as fp:
            return [ln.decode("utf-8", "replace").rstrip("\n") for ln in fp
                    if (self.qid + ":").encode() in ln]

    def harvest(self):
        return [ln for ln in self.log() if ": harvest: " in ln]

    def why(self):
        return "log: %s" % " / ".join(self.log())[-700:]


def deliver(raw, sender, rcpts=(ALICE,), outside=True):
    qid = labsmtp.submit(env, sender, list(rcpts), raw,
                         source=labsmtp.outside_client(env) if outside else None)
    p = labsmtp.wait_delivered(env, qid, timeout=60)
    _, msg = labsmtp.read_delivered(p)
    return Delivered(qid, msg, labsmtp.wait_log_line(env, qid, timeout=10))


def ar(d):
    m = re.search(rb"Authentication-Results: " + AUTHSERV.encode() + rb"; smime=(\w+)", d.msg)
    return m.group(1).decode() if m else None


def show(addr):
    return kmctl("show", addr)


def generations(addr):
    return re.findall(r"^\S+ generation (\d+) ", show(addr), re.M)


def refused_once(d, addr, name, why):
    """Exactly one refusal line for the certificate name, saying why."""
    lines = [ln for ln in d.harvest() if "refused %s sha256=%s" % (addr, state["fp:" + name])
             in ln]
    check(len(lines) == 1, "want one refusal of %s, got %r (%s)" % (name, lines, d.why()))
    check(why in lines[0], "refusal does not say %r: %s" % (why, lines[0]))
    check(not any(" stored " in ln for ln in d.harvest()), "stored: %s" % d.why())


# --- lab -----------------------------------------------------------------

def lab_down(d):
    subprocess.run([LAB, "down", d], capture_output=True, timeout=120)


def setup(base):
    global W, env
    W = os.path.join(base, "w")
    os.mkdir(W)
    os.chmod(W, 0o755)
    if not os.access(SIGNER_TOOL, os.X_OK):
        raise SetupError("%s not built (make tools)" % SIGNER_TOOL)
    mkca("partnerca", "Partner CA")
    mkca("rogueca", "Unknown CA")
    mkuser("carol-sign", CAROL, "partnerca", enc=False)
    mkuser("carol-enc", CAROL, "partnerca", enc=True, nb_hours=-2)
    mkuser("carol-decoy", CAROL, "partnerca", enc=True, nb_hours=-1)
    mkuser("carol-enc2", CAROL, "partnerca", enc=True, nb_hours=-0.5)
    mkuser("carol-expired", CAROL, "partnerca", enc=True, nb_hours=-240, na_hours=-24)
    mkuser("carol-rogue", CAROL, "rogueca", enc=False)
    mkuser("carol-rogue-enc", CAROL, "rogueca", enc=True)
    mkuser("mallory-enc", "mallory@partner.example", "partnerca", enc=True)
    mkuser("dave-sign", DAVE, "partnerca", enc=False)
    mkuser("dave-enc", DAVE, "partnerca", enc=True)
    mkuser("erin-sign", ERIN, "partnerca", enc=False)
    for i in range(1, 5):
        mkuser("erin-enc%d" % i, ERIN, "partnerca", enc=True, nb_hours=-10 + i)
    mkuser("helen-sign", HELEN, "partnerca", enc=False)
    mkuser("helen-enc", HELEN, "partnerca", enc=True)
    mkuser("george-sign", GEORGE, "partnerca", enc=False)
    mkuser("george-enc", GEORGE, "partnerca", enc=True)
    mkuser("george-enc2", GEORGE, "partnerca", enc=True)
    mkuser("frank-sign", FRANK, "partnerca", enc=False)
    mkuser("frank-imported", FRANK, "partnerca", enc=True, nb_hours=-5)
    mkuser("frank-new", FRANK, "partnerca", enc=True, nb_hours=-1)

    d = os.path.join(base, "lab")
    policy = ('inbound: { ca_file = "%s"; authserv_id = "%s"; harvest_max_per_address = %d; };'
              % (path("partnerca.crt"), AUTHSERV, MAX_PER_ADDRESS))
    e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", KMILTER_CONF_POLICY=policy)
    if not KEEP:
        atexit.register(lab_down, d)
    r = subprocess.run([LAB, "up", d], env=e, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise SetupError("lab up failed (%d): %s %s" % (r.returncode, r.stdout[-500:],
                                                        r.stderr[-500:]))
    env = labsmtp.load_env(d)
    kmctl("enroll", ALICE)
    kmctl("import", FRANK, path("frank-imported.crt"))


suite = Suite()


@suite.case("enckeypref_certificate_harvested_and_logged")
def _():
    t0 = time.monotonic()
    d = deliver(mail(signed("pref", "carol-sign", pref="carol-enc", extra=["carol-decoy"]),
                     CAROL), CAROL)
    state["t_first"] = time.monotonic() - t0
    check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
    want = "%s: harvest: stored %s sha256=%s generation 1" % (d.qid, CAROL, state["fp:carol-enc"])
    check(any(ln.endswith(want) for ln in d.harvest()), "no %r: %s" % (want, d.why()))
    check(len(d.harvest()) == 1, "the decoy (not named by encKeyPref) was looked at: %s"
          % d.why())
    state["carol_raw"] = d


@suite.case("without_enckeypref_the_certificate_for_from_is_harvested")
def _():
    # openssl cms cannot add encKeyPref: helen's encryption certificate
    # travels in the set only, beside one for another address
    with open(path("helen-in.mime"), "wb") as fp:
        fp.write(inner("openssl"))
    with open(path("helen-extra.pem"), "wb") as fp:
        for c in ("helen-enc", "mallory-enc"):
            with open(path(c + ".crt"), "rb") as cf:
                fp.write(cf.read())
    der = run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
               "-md", "sha256", "-signer", path("helen-sign.crt"),
               "-inkey", path("helen-sign.key"), "-certfile", path("helen-extra.pem"),
               "-in", path("helen-in.mime")])
    d = deliver(mail(der, HELEN), HELEN)
    check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
    lines = d.harvest()
    check(len(lines) == 1 and lines[0].endswith(
        "stored %s sha256=%s generation 1" % (HELEN, state["fp:helen-enc"])),
        "helen-enc not (only) stored: %s" % d.why())


@suite.case("kmctl_show_says_harvested")
def _():
    need(state, "carol_raw")
    out = show(CAROL)
    check(re.search(r"^  source harvested", out, re.M), "kmctl show: %s" % out)
    check("sha256 %s" % state["fp:carol-enc"] in out, "kmctl show fingerprint: %s" % out)
    check_eq(generations(CAROL), ["1"], "carol's generations")
    fout = show(FRANK)
    check(re.search(r"^  source imported", fout, re.M), "kmctl show frank: %s" % fout)


@suite.case("outbound_encrypted_to_harvested_certificate")
def _():
    need(state, "carol_raw")
    raw = labsmtp.make_message(ALICE, [CAROL], "to carol", "Hello Carol, encrypted?\r\n")
    d = deliver(raw, ALICE, rcpts=(CAROL,), outside=False)
    check("encrypt" in d.fields.get("action", ""), "not encrypted: %s" % d.line)
    with open(path("out.eml"), "wb") as fp:
        fp.write(d.msg)
    r = subprocess.run(["openssl", "cms", "-decrypt", "-in", path("out.eml"), "-recip",
                        path("carol-enc.crt"), "-inkey", path("carol-enc.key")],
                       capture_output=True, cwd=W)
    check(r.returncode == 0, "carol's harvested key does not open it: %s"
          % r.stderr.decode()[-300:])
    check(b"Hello Carol" in r.stdout, "decrypted text: %r" % r.stdout[:300])


@suite.case("same_certificate_again_stores_nothing")
def _():
    need(state, "carol_raw")
    t0 = time.monotonic()
    d = deliver(mail(signed("again", "carol-sign", pref="carol-enc"), CAROL), CAROL)
    print("FIGURE harvest: signed message delivered in %.2fs when its certificate is "
          "stored (KM scan + 2 Register + 2 Activate), %.2fs when it is already there"
          % (state["t_first"], time.monotonic() - t0), flush=True)
    check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
    check(not any(" stored " in ln or " refused " in ln for ln in d.harvest()),
          "harvest lines for the same certificate: %s" % d.why())
    check_eq(generations(CAROL), ["1"], "carol's generations")


@suite.case("bad_signature_never_harvested")
def _():
    der = signed("tampered", "carol-sign", pref="carol-enc2")
    i = der.find(b"harvest test body")
    check(i > 0, "signed content not found in the DER")
    der = der[:i] + b"H" + der[i + 1:]
    d = deliver(mail(der, CAROL), CAROL)
    check_eq(ar(d), "fail", "Authentication-Results (%s)" % d.why())
    check(d.harvest() == [], "harvest after a bad signature: %s" % d.why())
    check(state["fp:carol-enc2"] not in show(CAROL), "carol-enc2 stored")


@suite.case("unknown_ca_and_from_mismatch_never_harvested")
def _():
    d = deliver(mail(signed("rogue", "carol-rogue", pref="carol-rogue-enc"), CAROL), CAROL)
    check_eq(ar(d), "fail", "unknown CA: Authentication-Results (%s)" % d.why())
    check(d.harvest() == [], "harvest after an untrusted signature: %s" % d.why())
    # dave signs a message whose From is carol: the signer is not From
    d = deliver(mail(signed("mismatch", "dave-sign", pref="dave-enc"), CAROL), CAROL)
    check_eq(ar(d), "fail", "From mismatch: Authentication-Results (%s)" % d.why())
    check(d.harvest() == [], "harvest with a signer that is not From: %s" % d.why())
    out = show(CAROL)
    check(state["fp:carol-rogue-enc"] not in out, "rogue certificate stored")
    check(subprocess.run(shlex.split(env["LAB_KMCTL"].replace("$KM_BUILD", BUILD)
                                     .replace("$DIR", env["LAB_DIR"])) + ["show", DAVE],
                         capture_output=True).returncode != 0, "dave has a certificate")


@suite.case("wrong_address_expired_untrusted_refused_once")
def _():
    d = deliver(mail(signed("wrong", "carol-sign", pref="mallory-enc"), CAROL), CAROL)
    check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
    refused_once(d, CAROL, "mallory-enc", "does not name %s" % CAROL)
    d = deliver(mail(signed("expired", "carol-sign", pref="carol-expired"), CAROL), CAROL)
    refused_once(d, CAROL, "carol-expired", "expired")
    # a trusted signer carrying an encryption certificate of an unknown CA
    d = deliver(mail(signed("rogue-enc", "carol-sign", pref="carol-rogue-enc"), CAROL), CAROL)
    refused_once(d, CAROL, "carol-rogue-enc", "untrusted")
    check_eq(generations(CAROL), ["1"], "carol's generations")


@suite.case("flood_stops_at_harvest_max_per_address")
def _():
    ds = [deliver(mail(signed("flood%d" % i, "erin-sign", pref="erin-enc%d" % i), ERIN), ERIN)
          for i in range(1, 5)]
    for i, d in enumerate(ds[:MAX_PER_ADDRESS], 1):
        check(any(" stored %s sha256=%s" % (ERIN, state["fp:erin-enc%d" % i]) in ln
                  for ln in d.harvest()), "erin-enc%d not stored: %s" % (i, d.why()))
    for i, d in enumerate(ds[MAX_PER_ADDRESS:], MAX_PER_ADDRESS + 1):
        refused_once(d, ERIN, "erin-enc%d" % i, "harvest_max_per_address")
    out = show(ERIN)
    check_eq(len(generations(ERIN)), MAX_PER_ADDRESS, "erin's generations")
    check("state Active" in out and state["fp:erin-enc%d" % MAX_PER_ADDRESS] in out,
          "the newest stored is not there: %s" % out)


@suite.case("imported_certificate_not_replaced")
def _():
    d = deliver(mail(signed("frank", "frank-sign", pref="frank-new"), FRANK), FRANK)
    check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
    refused_once(d, FRANK, "frank-new", "imported")
    # the next message: the KM's answer is remembered, logged once only
    d = deliver(mail(signed("frank2", "frank-sign", pref="frank-new"), FRANK), FRANK)
    check(not any(" refused " in ln or " stored " in ln for ln in d.harvest()),
          "refusal logged again: %s" % d.why())
    out = show(FRANK)
    check_eq(generations(FRANK), ["1"], "frank's generations")
    check(state["fp:frank-imported"] in out and state["fp:frank-new"] not in out,
          "kmctl show frank: %s" % out)


def km_sh(fn, name, port=""):
    """km_stop / km_start of tests/lablib/km.sh for one KM server."""
    script = ". %s/tests/lablib/common.sh; . %s/tests/lablib/km.sh; %s %s %s %s" % (
        shlex.quote(TOP), shlex.quote(TOP), fn,
        shlex.quote(os.path.join(env["LAB_DIR"], "km")), name, port)
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=60)


@suite.case("km_down_logged_message_delivered_then_back_off")
def _():
    km_sh("km_stop", "km-b")
    try:
        t0 = time.monotonic()
        d = deliver(mail(signed("kmdown", "george-sign", pref="george-enc"), GEORGE), GEORGE)
        t1 = time.monotonic() - t0
        check_eq(ar(d), "pass", "Authentication-Results (%s)" % d.why())
        lines = [ln for ln in d.harvest() if "not stored" in ln]
        check(len(lines) == 1 and "no harvest for 60 s" in lines[0],
              "KM error not logged once: %s" % d.why())
        # back-off: the next new certificate does not try the KM at all
        d = deliver(mail(signed("kmdown2", "george-sign", pref="george-enc2"), GEORGE),
                    GEORGE)
        check(not any("not stored" in ln or " stored " in ln for ln in d.harvest()),
              "KM asked during the back-off: %s" % d.why())
        print("FIGURE harvest: signed message delivered in %.2fs with KM server B down "
              "(harvest failed, logged)" % t1, flush=True)
    finally:
        r = km_sh("km_start", "km-b", env["LAB_KM_B"].rpartition(":")[2])
        if r.returncode != 0:
            print("km-b did not restart: %s" % r.stderr.decode()[-300:], flush=True)


def main():
    base = tempfile.mkdtemp(prefix="t-harvest.")
    os.chmod(base, 0o755)
    if KEEP:
        print("lab kept in %s (tests/lab down %s/lab)" % (base, base), flush=True)
    else:
        atexit.register(shutil.rmtree, base, True)
    try:
        setup(base)
    except (SetupError, labsmtp.LabError, OSError, subprocess.SubprocessError) as e:
        print("FAIL setup: %s" % e, flush=True)
        return 1
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
