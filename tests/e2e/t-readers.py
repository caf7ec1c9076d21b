#!/usr/bin/python3
"""t-readers - kmilter decrypts only for who may read a message (issue 12).

One lab in the two-pass layout (LAB_TWO_STAGE=1: the public smtpd expands
virtual aliases and hands every message to a second smtpd where kmilter
only decrypts), real Postfix, kmilter, Redis and both PyKMIP servers.
Internal users alice, bob, carol (kmctl enroll, RSA, one organization CA);
the virtual alias map forwards carol to carol and carol.home@outside.example
(a user's forward).  Outside sender dave@outside.example.

Each attack sends ciphertext whose plaintext holds a marker, then looks at
what the sink received (smtp-sink -d records each delivery's envelope) and
at the decrypt pass's log line:
- alice + an outside recipient: both get ciphertext (it used to go out in
  the clear: only internal recipients were checked);
- a RecipientInfo naming bob spliced into mail for alice (bob's RI of
  another message, or alice's encryptedKey under bob's serial), to alice
  and bob, or to bob alone: ciphertext for all (kmilter used to trust the
  issuer+serial match);
- a forward via virtual alias to an outside address: the outside address
  and carol get ciphertext (Postfix expands aliases after the smtpd milter,
  so one pass never saw the outside address).  Decided: one shared message,
  so both stay encrypted; the log says why;
- control: alice + bob, both genuine readers, decrypted once;
- the decrypt pass leaves mail whose envelope sender is internal alone: it
  does not decrypt it, nor unwrap the opaque signature the first pass made
  on mail to an outside and an internal recipient; the public pass decrypts
  nothing.
Env: KTEST_ONLY=substring runs only matching cases; T_READERS_KEEP=1 keeps
the lab.
"""
import atexit
import base64
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
SPLICE = os.path.join(BUILD, "tools", "cms-splice")
KEEP = os.environ.get("T_READERS_KEEP") == "1"
DAVE, EVE = "dave@outside.example", "eve@outside.example"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
CAROL_HOME = "carol.home@outside.example"

W = None
env = None


class SetupError(Exception):
    pass


def run(argv, data=None):
    r = subprocess.run(argv, input=data, cwd=W, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise SetupError("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                            r.stderr.decode("utf-8", "replace")[-400:]))
    return r.stdout


def path(name):
    return os.path.join(W, name)


def write(name, data):
    with open(path(name), "wb") as fp:
        fp.write(data if isinstance(data, bytes) else data.encode())
    return path(name)


def kmctl(*args):
    argv = shlex.split(env["LAB_KMCTL"]) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SetupError("kmctl %s: %s %s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


# --- messages ------------------------------------------------------------

def inner(token):
    """A text/plain entity; SECRET-token must never reach the sink."""
    return ("Content-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
            "Dear reader,\r\nSECRET-%s is the plan.\r\n" % token).encode()


def encrypt_der(entity, certs, cipher="-aes-256-cbc"):
    src = write("in.mime", entity)
    argv = ["openssl", "cms", "-encrypt", "-binary", cipher, "-in", src, "-outform", "DER"]
    for c in certs:
        argv += ["-recip", path(c)]
    return run(argv)


def splice(op, *args):
    """cms-splice add-ri IN DONOR | set-rid IN INDEX CERT; DER bytes."""
    files = []
    for a in args:
        if isinstance(a, bytes):
            files.append(write("splice-%d.der" % len(files), a))
        else:
            files.append(a)
    run([SPLICE, op] + files + [path("spliced.der")])
    with open(path("spliced.der"), "rb") as fp:
        return fp.read()


def mail(der, to, token, sender=DAVE, smime_type="enveloped-data"):
    mid = "<%s-%s@outside.example>" % (token, os.urandom(6).hex())
    head = ("From: <%s>\r\nTo: %s\r\nSubject: readers %s\r\nMessage-ID: %s\r\n"
            "Date: Mon, 30 Nov 2026 21:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: application/pkcs7-mime; smime-type=%s; name=smime.p7m\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=smime.p7m\r\n\r\n"
            % (sender, ", ".join("<%s>" % t for t in to), token, mid, smime_type))
    body = re.sub(rb"\r?\n", b"\r\n", base64.encodebytes(der))
    return head.encode() + body, mid


# --- what the sink received ------------------------------------------------

class Copy:
    """One delivery the sink recorded: envelope recipients and message."""

    def __init__(self, p):
        self.path = p
        self.sink, self.msg = labsmtp.read_delivered(p)
        self.rcpts = [re.sub(r"^<([^>]*)>.*$", r"\1", v) for v in self.sink.get("X-Rcpt-Args", [])]
        head, self.body = labsmtp.split_message(self.msg)
        self.head = head.decode("latin-1")
        ids = re.findall(r"\(Postfix\) with E?SMTP\S* id (\w+)", self.head)
        self.qids = ids             # top first: the decrypt pass, then the public one

    def header(self, name):
        m = re.search(r"^%s:[ \t]*(.*(?:\n[ \t].*)*)" % re.escape(name), self.head,
                      re.I | re.M)
        return re.sub(r"\s+", " ", m.group(1)).strip() if m else None

    def encrypted(self):
        ct = self.header("Content-Type") or ""
        return ct.startswith("application/pkcs7-mime") and "enveloped-data" in ct.lower()


def copies_of(mid, rcpts, timeout=30):
    """Wait until the sink holds every recipient of rcpts for Message-ID mid."""
    end = time.time() + timeout
    want = set(rcpts)
    while True:
        found = []
        for p in glob.glob(os.path.join(env["LAB_OUT"], "*")):
            try:
                with open(p, "rb") as fp:
                    if mid.encode() not in fp.read(16384):
                        continue
                c = Copy(p)
            except (OSError, ValueError):
                continue
            found.append(c)
        got = set(r for c in found for r in c.rcpts)
        if want <= got:
            return found
        if time.time() > end:
            raise labsmtp.LabError("%s: sink has %s, want %s" % (mid, sorted(got), sorted(want)))
        time.sleep(0.05)


def decrypt_pass_line(c):
    """kmilter's line for the decrypt pass (the top Postfix queue id)."""
    check(len(c.qids) >= 2, "not through two passes: Received ids %r" % c.qids)
    line = labsmtp.wait_log_line(env, c.qids[0], timeout=10)
    check(line, "no kmilter log line for the decrypt pass %s" % c.qids[0])
    return line, labsmtp.parse_log_line(line)


def send(raw, rcpts, sender=DAVE, port=None):
    e = dict(env)
    if port:
        e["LAB_SMTP_PORT"] = port
    return labsmtp.submit(e, sender, list(rcpts), raw)


def check_kept_encrypted(token, raw, mid, rcpts, who, why, delivered=None):
    """Every copy ciphertext, no marker anywhere; the decrypt pass says why."""
    cs = copies_of(mid, delivered or rcpts)
    for c in cs:
        check(b"SECRET-" + token.encode() not in c.msg,
              "plaintext delivered to %s" % c.rcpts)
        check(c.encrypted(), "copy for %s is not enveloped-data: %s" % (c.rcpts,
                                                                        c.header("Content-Type")))
        check(c.header("X-Kmilter-Decrypted") is None, "X-Kmilter-Decrypted for %s" % c.rcpts)
        check(labsmtp.lf(c.body).strip() == labsmtp.lf(labsmtp.split_message(raw)[1]).strip(),
              "ciphertext for %s changed" % c.rcpts)
    line, f = decrypt_pass_line(cs[0])
    check_eq(f.get("result"), "downgraded", "result (%s)" % line)
    want = why if who is None else "<%s> %s" % (who, why)   # who None: a reason of the message
    check(want in line, "log line does not say %s: %s" % (want, line))
    return cs


# --- lab -------------------------------------------------------------------

def setup(base):
    global W, env
    W = os.path.join(base, "w")
    os.mkdir(W)
    os.chmod(W, 0o755)
    check(os.access(SPLICE, os.X_OK), "%s not built (make tools)" % SPLICE)
    d = os.path.join(base, "lab")
    e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", LAB_TWO_STAGE="1",
             LAB_VIRTUAL_ALIASES="%s %s, %s" % (CAROL, CAROL, CAROL_HOME),
             KMILTER_CONF_POLICY='outbound: { signature = "opaque"; };')
    if not KEEP:
        atexit.register(lambda: subprocess.run([LAB, "down", d], capture_output=True,
                                               timeout=120))
    r = subprocess.run([LAB, "up", d], env=e, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise SetupError("lab up: %s %s" % (r.stdout[-400:], r.stderr[-400:]))
    env = labsmtp.load_env(d)
    check(env.get("LAB_DECRYPT_PORT"), "lab without a decrypt pass")
    for u in (ALICE, BOB, CAROL):
        kmctl("enroll", u)
        write(u.split("@")[0] + ".crt", kmctl("export-cert", u))
    kmctl("signing-enroll", ALICE)


suite = Suite()


@suite.case("both_readers_decrypted")
def _():
    raw, mid = mail(encrypt_der(inner("both"), ["alice.crt", "bob.crt"]), [ALICE, BOB], "both")
    send(raw, [ALICE, BOB])
    cs = copies_of(mid, [ALICE, BOB])
    for c in cs:
        check(b"SECRET-both" in c.msg, "not decrypted for %s: %s" % (c.rcpts,
                                                                    c.header("Content-Type")))
        check(c.header("X-Kmilter-Decrypted"), "no X-Kmilter-Decrypted")
    line, f = decrypt_pass_line(cs[0])
    check_eq((f.get("action"), f.get("result")), ("decrypt", "ok"), "decrypt pass (%s)" % line)
    # the public pass left it alone
    pub = labsmtp.wait_log_line(env, cs[0].qids[1], timeout=10) or ""
    check("action=pass" in pub, "public pass did more than pass: %s" % pub)


@suite.case("outside_recipient_kept_encrypted")
def _():
    raw, mid = mail(encrypt_der(inner("outside"), ["alice.crt"]), [ALICE, EVE], "outside")
    send(raw, [ALICE, EVE])
    check_kept_encrypted("outside", raw, mid, [ALICE, EVE], EVE, "is not internal")


@suite.case("spliced_ri_of_other_message_kept_encrypted")
def _():
    # With AES-CBC bob's wrong content key fails (255 times in 256) on the
    # padding, else only comparing the plaintexts tells; AES-256-OFB, which
    # has no padding at all, is no longer even tried: inbound takes AES-CBC
    # and AES-GCM only (issue 15), so that splice stays encrypted for its
    # cipher before any reader is asked.
    for cipher, who, why in (("-aes-256-cbc", BOB, "cannot open it"),
                             ("-aes-256-ofb", None, "content cipher AES-256-OFB is not accepted")):
        token = "donor" + cipher[-3:]
        mine = encrypt_der(inner(token), ["alice.crt"], cipher=cipher)
        donor = encrypt_der(inner("other"), ["bob.crt"], cipher=cipher)
        raw, mid = mail(splice("add-ri", mine, donor), [ALICE, BOB], token)
        send(raw, [ALICE, BOB])
        check_kept_encrypted(token, raw, mid, [ALICE, BOB], who, why)


@suite.case("spliced_rid_copy_of_alice_key_kept_encrypted")
def _():
    der = splice("set-rid", encrypt_der(inner("ridcopy"), ["alice.crt", "alice.crt"]), "1",
                 path("bob.crt"))
    raw, mid = mail(der, [ALICE, BOB], "ridcopy")
    send(raw, [ALICE, BOB])
    check_kept_encrypted("ridcopy", raw, mid, [ALICE, BOB], BOB, "cannot open it")
    # bob alone (AES-GCM: any wrong content key fails the tag, so the
    # outcome does not depend on CBC padding luck)
    der = splice("set-rid", encrypt_der(inner("ridbob"), ["alice.crt", "alice.crt"],
                                        cipher="-aes-256-gcm"), "1", path("bob.crt"))
    raw, mid = mail(der, [BOB], "ridbob", smime_type="authEnveloped-data")
    send(raw, [BOB])
    cs = copies_of(mid, [BOB])
    for c in cs:
        check(b"SECRET-ridbob" not in c.msg, "plaintext delivered to bob")
        check(c.header("X-Kmilter-Decrypted") is None, "X-Kmilter-Decrypted for bob")
    line, f = decrypt_pass_line(cs[0])
    check("<%s> cannot open it" % BOB in line, "log: %s" % line)


@suite.case("forward_via_virtual_alias_kept_encrypted")
def _():
    raw, mid = mail(encrypt_der(inner("forward"), ["carol.crt"]), [CAROL], "forward")
    send(raw, [CAROL])
    cs = check_kept_encrypted("forward", raw, mid, [CAROL], CAROL_HOME, "is not internal",
                              delivered=[CAROL, CAROL_HOME])
    check(any(CAROL_HOME in c.rcpts for c in cs), "the forward did not happen")


@suite.case("decrypt_pass_skips_internal_sender")
def _():
    # Straight into the decrypt pass: an internal sender's encrypted mail
    # (encrypted on purpose in the first pass) stays encrypted ...
    raw, mid = mail(encrypt_der(inner("insider"), ["bob.crt"]), [BOB], "insider", sender=ALICE)
    send(raw, [BOB], sender=ALICE, port=env["LAB_DECRYPT_PORT"])
    c = copies_of(mid, [BOB])[0]
    check(b"SECRET-insider" not in c.msg and c.encrypted(), "decrypted mail from an insider")
    # ... and an outside sender's is decrypted there.
    raw, mid = mail(encrypt_der(inner("direct"), ["bob.crt"]), [BOB], "direct")
    send(raw, [BOB], port=env["LAB_DECRYPT_PORT"])
    c = copies_of(mid, [BOB])[0]
    check(b"SECRET-direct" in c.msg, "decrypt pass did not decrypt: %s" % c.header("Content-Type"))


@suite.case("outbound_signed_mail_untouched_by_decrypt_pass")
def _():
    # alice -> eve (no certificate) + bob: the first pass signs it (opaque
    # signed-data, sign-only for everyone); the decrypt pass sees an
    # internal recipient but must not unwrap it (eve would get it unsigned)
    raw = labsmtp.make_message(ALICE, [EVE, BOB], "readers outbound", "signed by the gateway\r\n")
    mid = re.search(rb"Message-ID: (<[^>]+>)", raw).group(1).decode()
    send(raw, [EVE, BOB], sender=ALICE)
    for c in copies_of(mid, [EVE, BOB]):
        ct = c.header("Content-Type") or ""
        check("signed-data" in ct.lower(), "copy for %s is not signed-data: %s" % (c.rcpts, ct))
        check(c.header("Authentication-Results") is None,
              "the decrypt pass verified it: %s" % c.header("Authentication-Results"))
        line, f = decrypt_pass_line(c)
        check_eq(f.get("direction"), "pass", "decrypt pass direction (%s)" % line)


def main():
    base = tempfile.mkdtemp(prefix="t-readers.")
    os.chmod(base, 0o755)
    if KEEP:
        print("lab kept in %s (tests/lab down %s/lab)" % (base, base), flush=True)
    else:
        atexit.register(shutil.rmtree, base, True)
    t0 = time.time()
    try:
        setup(base)
    except Exception as e:  # noqa: BLE001 - any setup problem is one FAIL line
        print("FAIL setup: %s" % e, flush=True)
        return 1
    rc = suite.run()
    print("FIGURE t-readers total %.1fs" % (time.time() - t0), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
