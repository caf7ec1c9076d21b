#!/usr/bin/python3
"""t-publish - issue 16 item 1 end to end: kmilter's signatures publish the
sender's encryption certificate, and correspondents' clients use it.

One lab (rule: plain.example is encrypt = "never", so mail to it goes out
signed only and not downgraded).  alice@example.com is enrolled (escrowed
encryption certificate from the org CA) and has a signing key on the
gateway; bob@example.com has a signing key only (no encryption
certificate).

Cases: alice's signed message carries her encryption certificate (the one
`kmctl export-cert` gives) and the org CA in its certificate set, the
SMIMEEncryptionKeyPreference attribute naming it by issuer and serial, and
SMIMECapabilities AES-256-GCM, AES-256-CBC, AES-128-CBC, RSAES-OAEP in that
order (openssl cms -cmsout -print); gpgsm (import of the signature, then
--list-keys: the certificate is there, usage keyEncipherment) and NSS
(cmsutil -D into a fresh database, then certutil -L) pick up the
certificate from the signature alone; a reply encrypted to that
certificate by openssl cms (chosen by the encKeyPref), gpgsm and cmsutil,
sent from outside, arrives at alice decrypted; bob (no encryption
certificate) is signed for as before: no encKeyPref, result ok, logged at
info.
"""
import base64
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Failure, Suite, check, check_eq, need, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
ALICE = "alice@example.com"
BOB = "bob@example.com"
PEER = "pat@plain.example"          # outside correspondent (encrypt never)
POLICY = 'rules = ( { match = "plain.example"; encrypt = "never"; } );'
CAPS = ["aes-256-gcm", "aes-256-cbc", "aes-128-cbc", "rsaesOaep"]
ENCKEYPREF = "1.2.840.113549.1.9.16.2.11"
ENCKEYPREF_DER = bytes.fromhex("060b2a864886f70d010910020b")

S = {}


def run(argv, input=None, ok=True, env=None, timeout=120):
    r = subprocess.run(argv, input=input, capture_output=True, env=env, timeout=timeout)
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def wpath(name):
    return os.path.join(S["work"], name)


def wfile(name, data):
    with open(wpath(name), "wb") as fp:
        fp.write(data)
    return wpath(name)


def crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


def kmctl(*args):
    return run(shlex.split(S["env"]["LAB_KMCTL"]) + list(args))


def mkmsg(sender, rcpt, subject, entity):
    """A message whose top-level entity is entity (headers + body)."""
    hdrs = ["From: <%s>" % sender, "To: <%s>" % rcpt, "Subject: %s" % subject,
            "Date: Tue, 01 Dec 2026 06:00:00 +0000",
            "Message-ID: <%d.%d@lab.test>" % (os.getpid(), int(time.time() * 1e6)),
            "MIME-Version: 1.0"]
    return ("\r\n".join(hdrs) + "\r\n").encode() + crlf(entity)


def send(sender, rcpt, raw, outside=False):
    """Submit and wait for delivery: (delivered message, log fields, log line)."""
    e = S["env"]
    qid = labsmtp.submit(e, sender, [rcpt], raw, timeout=120,
                         source=labsmtp.outside_client(e) if outside else None)
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(e, qid, 120))
    line = labsmtp.wait_log_line(e, qid, 10)
    check(line is not None, "no kmilter log line for %s" % qid)
    return qid, msg, labsmtp.parse_log_line(line)


def signature_der(msg):
    """The raw CMS of a delivered multipart/signed message's smime.p7s."""
    hdr, body = labsmtp.split_message(crlf(msg))
    ct = re.sub(r"\r\n[ \t]+", " ", hdr.decode("utf-8", "replace"))
    check("multipart/signed" in ct.lower(), "delivered message is not multipart/signed")
    m = re.search(r'boundary="([^"]+)"', ct)
    check(m is not None, "no boundary")
    parts = (b"\r\n" + body).split(b"\r\n--" + m.group(1).encode())
    check(len(parts) >= 4, "multipart/signed with %d parts" % (len(parts) - 2))
    _, sbody = labsmtp.split_message(parts[2].split(b"\r\n", 1)[1])
    return parts[1].split(b"\r\n", 1)[1], base64.b64decode(b"".join(sbody.split()))


def tlv(der, i):
    """The DER element at i: (tag, start of contents, end)."""
    tag, n = der[i], der[i + 1]
    i += 2
    if n & 0x80:
        k, n = n & 0x7f, int.from_bytes(der[i:i + (n & 0x7f)], "big")
        i += k
    return tag, i, i + n


def children(der, i):
    """The elements inside the constructed element at i: list of (start, end)."""
    _, p, end = tlv(der, i)
    out = []
    while p < end:
        _, _, e = tlv(der, p)
        out.append((p, e))
        p = e
    return out


def issuer_and_serial(pem_path):
    """[0] IMPLICIT IssuerAndSerialNumber of a certificate, from its DER."""
    pem = open(pem_path, "rb").read()
    der = base64.b64decode(b"".join(re.search(rb"-----BEGIN CERTIFICATE-----(.*?)-----END",
                                              pem, re.S).group(1).split()))
    tbs = children(der, 0)[0][0]
    f = children(der, tbs)
    if der[f[0][0]] == 0xa0:         # version
        f = f[1:]
    body = der[f[2][0]:f[2][1]] + der[f[0][0]:f[0][1]]     # issuer, serial
    n = len(body)
    hdr = bytes([0xa0, n]) if n < 0x80 else bytes([0xa0, 0x81, n]) if n < 0x100 else \
        bytes([0xa0, 0x82, n >> 8, n & 0xff])
    return hdr + body


def cms_print(der, name):
    f = wfile(name + ".p7s", der)
    return run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", f]
               ).stdout.decode("utf-8", "replace")


def cert_fields(pem_path):
    out = run(["openssl", "x509", "-in", pem_path, "-noout", "-serial", "-fingerprint",
               "-sha1"]).stdout.decode()
    serial = int(re.search(r"serial=([0-9A-Fa-f]+)", out).group(1), 16)
    sha1 = re.search(r"Fingerprint=([0-9A-F:]+)", out).group(1).replace(":", "")
    return serial, sha1


def certs_of(der, name):
    """The certificates of a CMS signature as PEM files; list of paths."""
    f = wfile(name + ".sig.der", der)
    pem = run(["openssl", "pkcs7", "-inform", "DER", "-in", f, "-print_certs"]).stdout
    out = []
    for i, c in enumerate(re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                                     pem, re.S)):
        out.append(wfile("%s.cert%d.pem" % (name, i), c + b"\n"))
    return out


def reply_entity(marker):
    return ("Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            "Hello Alice,\r\nhere is my encrypted reply: %s\r\n" % marker).encode()


def wrap_der(der):
    """application/pkcs7-mime around raw enveloped CMS (gpgsm, cmsutil)."""
    b64 = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; "
            b"name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n" + b64)


def check_decrypted(msg, fields, marker, who):
    check_eq(fields.get("direction"), "inbound", "log direction (%s)" % who)
    check_eq(fields.get("action"), "decrypt", "log action (%s)" % who)
    check(marker.encode() in msg, "%s's reply did not arrive decrypted" % who)
    check(b"application/pkcs7-mime" not in msg.lower(), "still enveloped (%s)" % who)


def main():
    suite = Suite()
    base = tempfile.mkdtemp(prefix="t-publish.")
    os.chmod(base, 0o755)
    lab = os.path.join(base, "lab")
    S["work"] = os.path.join(base, "work")
    os.mkdir(S["work"])

    def down():
        subprocess.run([LAB, "down", lab], capture_output=True, timeout=120)

    def kill_agent():
        if "gnupghome" in S:
            subprocess.run(["gpgconf", "--homedir", S["gnupghome"], "--kill", "gpg-agent"],
                           capture_output=True, timeout=30)

    suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(down)
    suite.cleanups.append(kill_agent)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @suite.case("lab up; alice enrolled + signing key, bob signing key only")
    def _():
        check(os.access(os.path.join(BUILD, "kmilter"), os.X_OK), "build/kmilter not built")
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", KMILTER_CONF_POLICY=POLICY)
        r = subprocess.run([LAB, "up", lab], env=e, capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "lab up failed (%d): %s" % (r.returncode, r.stderr[-1500:]))
        S["env"] = labsmtp.load_env(lab)
        kmctl("enroll", ALICE)
        kmctl("signing-enroll", ALICE)
        kmctl("signing-enroll", BOB)
        pem = kmctl("export-cert", ALICE).stdout
        check(b"BEGIN CERTIFICATE" in pem, "export-cert gave no certificate")
        S["alice.crt"] = wfile("alice-enc.crt", pem)
        S["orgca"] = S["env"]["LAB_CA_CERT"]

    @suite.case("alice's signature carries her encryption certificate, the org CA, "
                "encKeyPref naming it and our capabilities")
    def _():
        need(S, "alice.crt")
        raw = mkmsg(ALICE, PEER, "publish", b"Content-Type: text/plain\r\n\r\nHi Pat\r\n")
        _, msg, f = send(ALICE, PEER, raw)
        check_eq(f.get("action"), "sign", "log action")
        check_eq(f.get("result"), "ok", "log result")
        content, der = signature_der(msg)
        S["alice.sig"], S["alice.content"] = der, content
        S["alice.size"] = len(msg)
        text = cms_print(der, "alice")
        serial, sha1 = cert_fields(S["alice.crt"])
        S["alice.sha1"] = sha1
        paths = certs_of(der, "alice")
        sha1s = [cert_fields(p)[1] for p in paths]
        check(sha1 in sha1s, "alice's encryption certificate is not in the signature's set")
        check(cert_fields(S["orgca"])[1] in sha1s, "the org CA is not in the set")
        check(len(sha1s) >= 3, "set holds %d certificates, want signer + enc + CA" % len(sha1s))
        # the attribute: OID, then a SET holding exactly the [0] choice
        # naming alice's encryption certificate by issuer and serial
        want = issuer_and_serial(S["alice.crt"])
        i = der.find(ENCKEYPREF_DER)
        check(i >= 0, "no SMIMEEncryptionKeyPreference attribute")
        tag, p, end = tlv(der, i + len(ENCKEYPREF_DER))
        check(tag == 0x31 and der[p:end] == want,
              "encKeyPref does not name alice's encryption certificate (serial %x): %s, want %s"
              % (serial, der[p:end].hex(), want.hex()))

    @suite.case("SMIMECapabilities: AES-256-GCM, AES-256-CBC, AES-128-CBC, RSAES-OAEP in order")
    def _():
        need(S, "alice.sig")
        der = S["alice.sig"]
        f = wfile("alice.cmsdump.der", der)
        out = run(["openssl", "asn1parse", "-inform", "DER", "-in", f]).stdout.decode()
        i = out.find(":S/MIME Capabilities")
        check(i >= 0, "no S/MIME Capabilities in asn1parse output")
        objs = re.findall(r"OBJECT\s+:(\S+)", out[i:])[:len(CAPS)]
        check_eq(objs, CAPS, "capabilities in order")

    @suite.case("gpgsm picks the encryption certificate out of the signature")
    def _():
        need(S, "alice.sig")
        home = wpath("gnupg")
        os.mkdir(home, 0o700)
        with open(os.path.join(home, "gpg-agent.conf"), "w") as fp:
            fp.write("allow-loopback-pinentry\n")
        with open(os.path.join(home, "gpgsm.conf"), "w") as fp:
            fp.write("disable-crl-checks\ndisable-policy-checks\ndisable-ocsp\n")
        S["gnupghome"] = home
        genv = dict(os.environ, GNUPGHOME=home)
        run(["gpgsm", "--batch", "--import", S["orgca"]], env=genv)
        with open(os.path.join(home, "trustlist.txt"), "w") as fp:
            fp.write("%s S relax\n" % cert_fields(S["orgca"])[1])
        run(["gpgsm", "--batch", "--import", wfile("alice.g.p7s", S["alice.sig"])], env=genv)
        out = run(["gpgsm", "--batch", "--with-colons", "--list-keys", ALICE], env=genv
                  ).stdout.decode()
        fprs = re.findall(r"(?m)^fpr:+([0-9A-F]{40}):", out)
        check(S["alice.sha1"] in fprs, "gpgsm did not import alice's encryption certificate "
              "(has %s)" % fprs)
        # capabilities field 12 of the crt line: e = usable for encryption
        crt = [ln for ln in out.splitlines() if ln.startswith("crt:")]
        enc = [ln for ln, fp in zip(crt, fprs) if fp == S["alice.sha1"]]
        check(enc and "e" in enc[0].split(":")[11],
              "gpgsm does not show alice's certificate as usable for encryption: %r" % enc)
        S["gpgsm"] = genv

    @suite.case("NSS (cmsutil -D) picks the encryption certificate out of the signature")
    def _():
        need(S, "alice.sig")
        db = wpath("nss")
        os.mkdir(db)
        run(["certutil", "-N", "-d", "sql:" + db, "--empty-password"])
        run(["certutil", "-A", "-d", "sql:" + db, "-n", "orgca", "-t", "CT,C,C", "-i", S["orgca"]])
        content = wfile("alice.content", S["alice.content"])
        sig = wfile("alice.n.p7s", S["alice.sig"])
        content = wfile("alice.content", S["alice.content"])
        sig = wfile("alice.n.p7s", S["alice.sig"])

        def decode(usage, keep):
            argv = ["cmsutil", "-D", "-d", "sql:" + db, "-p", "", "-u", usage, "-h", "2",
                    "-c", content, "-i", sig, "-o", wpath("nss.hdr")]
            r = run(argv + (["-k"] if keep else []), ok=False)
            hdr = open(wpath("nss.hdr"), "rb").read() if os.path.exists(wpath("nss.hdr")) else b""
            return (r.stdout + r.stderr + hdr).decode("utf-8", "replace")
        # NSS verifies the signature (usage email signer) ...
        out = decode("4", False)
        check("status=GoodSignature" in out, "cmsutil: no good signature: %s" % out[-300:])
        # ... and -k with usage email recipient keeps the certificates it
        # may encrypt to, as a mail client keeps a correspondent's
        decode("5", True)
        listing = run(["certutil", "-L", "-d", "sql:" + db]).stdout.decode()
        check(re.search(r"(?m)^%s\s" % re.escape(ALICE), listing),
              "certutil -L lists no %s: %s" % (ALICE, listing.strip().replace("\n", " | ")))
        # the certificate NSS now gives for alice's address
        r = run(["certutil", "-L", "-d", "sql:" + db, "-n", ALICE, "-a"])
        got = cert_fields(wfile("nss.alice.pem", r.stdout))[1]
        check_eq(got, S["alice.sha1"], "NSS's certificate for %s" % ALICE)
        S["nss"] = db

    def reply(who, make):
        need(S, "alice.sig")
        marker = "reply-by-%s-%d" % (who, os.getpid())
        entity = make(reply_entity(marker))
        raw = mkmsg(PEER, ALICE, "re: publish", entity)
        _, msg, f = send(PEER, ALICE, raw, outside=True)
        check_decrypted(msg, f, marker, who)

    @suite.case("openssl encrypts to the certificate encKeyPref names; arrives decrypted")
    def _():
        def make(inner):
            # the certificate chosen from the set by the encKeyPref serial
            serial = cert_fields(S["alice.crt"])[0]
            found = [p for p in certs_of(S["alice.sig"], "o") if cert_fields(p)[0] == serial]
            check(found, "no certificate with the encKeyPref's serial in the set")
            cert = found[0]
            out = run(["openssl", "cms", "-encrypt", "-aes-256-cbc", "-binary", "-recip", cert],
                      input=inner).stdout
            return crlf(out)
        reply("openssl", make)

    @suite.case("gpgsm encrypts to the imported certificate; arrives decrypted")
    def _():
        need(S, "gpgsm")

        def make(inner):
            f = wfile("g.in", inner)
            run(["gpgsm", "--batch", "--yes", "--cipher-algo", "AES256", "-r",
                 "0x" + S["alice.sha1"], "--encrypt", "-o", wpath("g.der"), f], env=S["gpgsm"])
            return wrap_der(open(wpath("g.der"), "rb").read())
        reply("gpgsm", make)

    @suite.case("cmsutil encrypts to the stored certificate; arrives decrypted")
    def _():
        need(S, "nss")

        def make(inner):
            f = wfile("n.in", inner)
            run(["cmsutil", "-E", "-d", "sql:" + S["nss"], "-p", "", "-r", ALICE, "-i", f,
                 "-o", wpath("n.der")])
            return wrap_der(open(wpath("n.der"), "rb").read())
        reply("cmsutil", make)

    @suite.case("bob (no encryption certificate): signed as before, no encKeyPref, logged")
    def _():
        need(S, "env")
        raw = mkmsg(BOB, PEER, "no enc cert", b"Content-Type: text/plain\r\n\r\nHi Pat\r\n")
        qid, msg, f = send(BOB, PEER, raw)
        check_eq(f.get("action"), "sign", "log action")
        check_eq(f.get("result"), "ok", "log result (not a downgrade)")
        _, der = signature_der(msg)
        text = cms_print(der, "bob")
        check("encrypKeyPref" not in text and ENCKEYPREF not in text,
              "bob's signature names an encryption certificate")
        check("SMIMECapabilities" in text or "S/MIME Capabilities" in text,
              "bob's signature has no SMIMECapabilities")
        with open(S["env"]["LAB_LOG"], "rb") as fp:
            log = fp.read().decode("utf-8", "replace")
        check(re.search(r"%s: outbound: <%s> has no encryption certificate" % (qid, BOB), log),
              "no log line saying bob has no encryption certificate")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
