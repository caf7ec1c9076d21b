#!/usr/bin/python3
"""t-hp - RFC 9788 header protection through the lab, both ways.

One lab (real Postfix, kmilter, Redis, two PyKMIP servers), authserv-id
mx.example.com, a rule hide_subject = "no" for clear.example.  bob and
alice are enrolled (alice with a signing key); dave@partner.example and
carol@clear.example are outside correspondents with imported certificates.

Inbound (messages made here with openssl cms, as RFC 9788 clients send them):
  - encrypted, hp="cipher", outer Subject "[...]", with HP-Outer and a
    Legacy Display Element: delivered with each header once, the protected
    Subject in place of "[...]", the outer one kept as "HP-Outer: Subject:
    [...]", X-Kmilter-Header-Protection naming what was protected;
  - signed then encrypted (the protected headers in the signed part);
  - opaque signed-data, hp="clear", the outer Subject changed in transit;
  - malformed: a Subject twice inside, a From of another address, an
    invalid header block inside, an unknown hp value: a defined result
    each, never a header doubled or lost.
Outbound:
  - alice -> dave: the outer Subject is "[...]"; openssl, gpgsm and NSS
    cmsutil decrypt and find hp="cipher", the protected headers, HP-Outer
    and the Legacy Display Element;
  - alice -> carol (rule hide_subject = "no"): the Subject stays outside;
  - round trip: what kmilter sent alice -> bob, arriving from outside,
    is delivered with the real Subject again.
"""
import base64
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import Suite, check, check_eq, need  # noqa: E402

labsmtp = L.labsmtp
AUTHSERV = "mx.example.com"
ALICE, BOB = "alice@example.com", "bob@example.com"
DAVE, CAROL = "dave@partner.example", "carol@clear.example"
P12PASS = "kmtest-hp"

suite = Suite()
S = {}


def fields_of(head):
    """[(name, value)] of a header block; a fold becomes one space."""
    text = re.sub(rb"\r?\n[ \t]+", b" ", head).decode("latin-1")
    return [(n.strip(), v.strip()) for n, _, v in
            (ln.partition(":") for ln in re.split(r"\r?\n", text) if ":" in ln)]


class Got:
    """A delivered message: its headers, body and kmilter's log fields."""

    def __init__(self, qid, msg, line):
        self.qid, self.msg, self.line = qid, msg, line or ""
        self.head, self.body = labsmtp.split_message(msg)
        self.fields = fields_of(self.head)
        self.log = labsmtp.parse_log_line(line) if line else {}

    def all(self, name):
        return [v for n, v in self.fields if n.lower() == name.lower()]

    def one(self, name, want, what):
        check_eq(self.all(name), [want], "%s: %s headers (log: %s)" % (what, name, self.line))


def deliver(sender, rcpts, raw, outside=True):
    env = S["env"]
    qid = labsmtp.submit(env, sender, list(rcpts), raw,
                         source=labsmtp.outside_client(env) if outside else None)
    p = labsmtp.wait_delivered(env, qid, timeout=30)
    _, msg = labsmtp.read_delivered(p)
    return Got(qid, msg, labsmtp.wait_log_line(env, qid, timeout=10))


def outer(sender, rcpt, subject, entity, msgid):
    hdrs = ["From: Dave <%s>" % sender, "To: Bob <%s>" % rcpt, "Subject: %s" % subject,
            "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <%s>" % msgid]
    ent = L.crlf(entity)
    if not ent.startswith(b"MIME-Version:"):
        ent = b"MIME-Version: 1.0\r\n" + ent
    return ("\r\n".join(hdrs) + "\r\n").encode() + ent


def protected(tag, hp="cipher", subject=None, extra=b"", legacy=True, sender=DAVE):
    """An RFC 9788 cryptographic payload (text/plain) for bob from sender."""
    subject = subject or "the real subject %s" % tag
    msgid = "%s@partner.example" % tag
    ctype = 'text/plain; charset=us-ascii; hp="%s"' % hp
    prefix = b""
    if legacy and hp == "cipher":
        ctype += '; hp-legacy-display="1"'
        prefix = b"Subject: %s\r\n\r\n" % subject.encode()
    head = ("Content-Type: %s\r\nFrom: Dave <%s>\r\nTo: Bob <%s>\r\nSubject: %s\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s>\r\n"
            % (ctype, sender, BOB, subject, msgid)).encode() + extra
    if hp == "cipher":
        head += (b"HP-Outer: From: Dave <%s>\r\nHP-Outer: To: Bob <%s>\r\n"
                 b"HP-Outer: Subject: [...]\r\n" % (DAVE.encode(), BOB.encode()))
    return head + b"\r\n" + prefix + b"body of %s\r\n" % tag.encode(), subject, msgid


def encrypted(entity, name):
    return L.encrypt_entity(S["lab"], entity, [S["certs"][BOB]], name)


def signed(entity, name, detached=True):
    crt, key = S["dave"]
    src = S["lab"].wpath(name + ".in")
    with open(src, "wb") as fp:
        fp.write(entity)
    argv = ["openssl", "cms", "-sign", "-md", "sha256", "-signer", crt, "-inkey", key,
            "-in", src, "-binary", "-crlfeol"]
    if not detached:
        argv.append("-nodetach")
    out = L.run(argv).stdout
    if detached:
        # the MIME-Version openssl writes belongs to the outer message
        out = re.sub(rb"^MIME-Version: 1.0\r?\n", b"", out)
    return L.crlf(out)


def hp_header(d, what):
    xs = d.all("X-Kmilter-Header-Protection")
    check(len(xs) == 1, "%s: X-Kmilter-Header-Protection %r (log: %s)" % (what, xs, d.line))
    return xs[0]


def each_once(d, what):
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        check_eq(len(d.all(name)), 1, "%s: number of %s headers (%s)" % (what, name, d.fields))


# --- setup ---------------------------------------------------------------

@suite.case("lab_up")
def _():
    lab = L.Lab("t-hp")
    S["lab"] = lab
    pki = L.OutsidePKI(lab)
    lab.policy = ('inbound: { ca_file = "%s"; authserv_id = "%s"; };\n'
                  'rules = ( { match = "clear.example"; hide_subject = "no"; } );'
                  % (pki.ca_crt, AUTHSERV))
    lab.up()
    S["env"] = lab.env
    S["pki"] = pki
    S["certs"] = L.enroll_users(lab, [ALICE, BOB], sign=True, workers=2)
    S["dave"] = L.import_certs(lab, pki, [DAVE], workers=1)[DAVE]
    S["carol"] = L.import_certs(lab, pki, [CAROL], workers=1)[CAROL]
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)


# --- inbound -------------------------------------------------------------

@suite.case("inbound_cipher_protected_headers_replace_outer")
def _():
    need(S, "certs")
    ent, subject, msgid = protected("c1")
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "[...]", encrypted(ent, "c1"), msgid))
    what = "hp=cipher"
    check_eq(d.log.get("action"), "decrypt", "%s: log action (%s)" % (what, d.line))
    check(b"body of c1" in d.body, "%s: not decrypted" % what)
    each_once(d, what)
    d.one("Subject", subject, what)
    d.one("From", "Dave <%s>" % DAVE, what)
    check_eq(d.all("HP-Outer"), ["Subject: [...]"], "%s: HP-Outer" % what)
    check_eq(hp_header(d, what), "hp=cipher; applied=From,To,Subject,Date,Message-ID; "
             "hp-outer=Subject", "%s: X-Kmilter-Header-Protection" % what)
    # the legacy display element stays in the text (the hp-legacy-display
    # parameter lets an RFC 9788 reader hide it)
    check(b"Subject: %s\r\n\r\nbody of c1" % subject.encode() in L.crlf(d.body),
          "%s: legacy display element lost: %r" % (what, d.body[:200]))


@suite.case("inbound_signed_then_encrypted")
def _():
    need(S, "certs", "dave")
    ent, subject, msgid = protected("s1")
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "[...]", encrypted(signed(ent, "s1"), "s1"),
                                   msgid))
    what = "signed inside"
    check_eq(d.log.get("action"), "decrypt+verify", "%s: log action (%s)" % (what, d.line))
    each_once(d, what)
    d.one("Subject", subject, what)
    check_eq(d.all("HP-Outer"), ["Subject: [...]"], "%s: HP-Outer" % what)
    ours = [v for v in d.all("Authentication-Results") if v.lower().startswith(AUTHSERV)]
    check(len(ours) == 1 and "smime=pass" in ours[0], "%s: Authentication-Results %r"
          % (what, ours))
    check(hp_header(d, what).startswith("hp=cipher; applied=From,To,Subject"), what)


@suite.case("inbound_opaque_clear_subject_changed_in_transit")
def _():
    need(S, "dave")
    ent, subject, msgid = protected("o1", hp="clear")
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "changed in transit",
                                   signed(ent, "o1", detached=False), msgid))
    what = "opaque hp=clear"
    check_eq(d.log.get("action"), "unwrap+verify", "%s: log action (%s)" % (what, d.line))
    each_once(d, what)
    d.one("Subject", subject, what)
    check_eq(d.all("HP-Outer"), ["Subject: changed in transit"], "%s: HP-Outer" % what)
    check(hp_header(d, what).startswith("hp=clear;"), what)


@suite.case("inbound_malformed_duplicate_subject")
def _():
    need(S, "certs")
    ent, _, msgid = protected("m1", extra=b"Subject: a second inner subject\r\n", legacy=False)
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "outer m1", encrypted(ent, "m1"), msgid))
    what = "duplicate inner Subject"
    check_eq(d.log.get("action"), "decrypt", "%s: log action (%s)" % (what, d.line))
    each_once(d, what)
    d.one("Subject", "outer m1", what)
    check_eq(d.all("HP-Outer"), [], "%s: HP-Outer" % what)
    check("not-applied=Subject (duplicate)" in hp_header(d, what), what)
    check(re.search(rb"%s: inbound: header protection: .*Subject \(duplicate\)" % d.qid.encode(),
                    S["lab"].log_text()), "%s: no warning in the log" % what)


@suite.case("inbound_malformed_foreign_from")
def _():
    need(S, "certs")
    ent, subject, msgid = protected("m2", sender="ceo@example.com")
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "[...]", encrypted(ent, "m2"), msgid))
    what = "inner From of another address"
    each_once(d, what)
    d.one("From", "Dave <%s>" % DAVE, what)
    d.one("Subject", subject, what)
    check("not-applied=From (differs from the outer From)" in hp_header(d, what), what)


@suite.case("inbound_malformed_header_block")
def _():
    need(S, "certs")
    ent = (b'Content-Type: text/plain; hp="cipher"\r\nSubject: hidden m3\r\n'
           b"this line is not a header\r\n\r\nbody of m3\r\n")
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "[...]", encrypted(ent, "m3"), "m3@x"))
    what = "invalid inner header block"
    # policy.on_malformed = pass: delivered as it came, still encrypted
    check("reason=passed unchanged: malformed" in d.line, "%s: log (%s)" % (what, d.line))
    check(L.is_enveloped(d.msg), "%s: not left encrypted" % what)
    each_once(d, what)
    d.one("Subject", "[...]", what)
    check(b"hidden m3" not in d.head, "%s: inner Subject leaked" % what)


@suite.case("inbound_malformed_unknown_hp")
def _():
    need(S, "certs")
    ent, _, msgid = protected("m4", hp="everything", legacy=False)
    d = deliver(DAVE, [BOB], outer(DAVE, BOB, "outer m4", encrypted(ent, "m4"), msgid))
    what = "unknown hp value"
    check_eq(d.log.get("action"), "decrypt", "%s: log action (%s)" % (what, d.line))
    each_once(d, what)
    d.one("Subject", "outer m4", what)
    check_eq(hp_header(d, what), "hp=invalid; applied=none; not-applied=all (unknown hp "
             "value)", what)


# --- outbound ------------------------------------------------------------

def inner_of(msg, name):
    crt, key = S["dave"]
    p = S["lab"].wpath(name + ".eml")
    with open(p, "wb") as fp:
        fp.write(msg)
    return L.run(["openssl", "cms", "-decrypt", "-recip", crt, "-inkey", key, "-in", p]).stdout


def check_protected_inner(dec, subject, what):
    """The signed part (or the entity) carries hp="cipher" and the headers."""
    for want in (b'hp="cipher"; hp-legacy-display="1"', b"\r\nSubject: %s\r\n" % subject,
                 b"\r\nFrom: <%s>\r\n" % ALICE.encode(), b"\r\nHP-Outer: Subject: [...]\r\n",
                 b"\r\nMessage-ID: <", b"\r\n\r\nSubject: %s\r\n\r\nhello\r\n" % subject):
        check(want in dec, "%s: %r not inside: %r" % (what, want, dec[:700]))


def send_out(rcpt, subject, outer_subject):
    """alice sends to rcpt: signed and encrypted, the outer Subject as expected."""
    raw = labsmtp.make_message(ALICE, [rcpt], subject, "hello\r\n")
    d = deliver(ALICE, [rcpt], raw, outside=False)
    check_eq(d.log.get("action"), "sign+encrypt", "log action (%s)" % d.line)
    d.one("Subject", outer_subject, "outbound to %s" % rcpt)
    return d


@suite.case("outbound_subject_hidden_protected_inside")
def _():
    need(S, "dave")
    d = send_out(DAVE, "budget 2027", "[...]")
    check(b"budget 2027" not in d.msg, "the Subject leaves in clear")
    dec = L.crlf(inner_of(d.msg, "o1"))
    check_protected_inner(dec, b"budget 2027", "openssl")
    S["out1"] = (d.msg, dec)


def der(msg):
    _, body = labsmtp.split_message(msg)
    return base64.b64decode(b"".join(body.split()), validate=True)


@suite.case("outbound_gpgsm_and_cmsutil_read_protected_headers")
def _():
    need(S, "out1")
    msg, dec = S["out1"]
    crt, key = S["dave"]
    lab = S["lab"]
    check(shutil.which("gpgsm") and shutil.which("cmsutil"), "no gpgsm/cmsutil "
          "(tests/install-deps)")
    p12, passf = lab.wpath("dave.p12"), lab.wpath("p12pass")
    with open(passf, "w") as fp:
        fp.write(P12PASS + "\n")
    L.run(["openssl", "pkcs12", "-export", "-in", crt, "-inkey", key, "-name", "dave",
           "-passout", "file:" + passf, "-keypbe", "PBE-SHA1-3DES", "-certpbe",
           "PBE-SHA1-3DES", "-macalg", "sha1", "-out", p12])
    derf = lab.wpath("o1.der")
    with open(derf, "wb") as fp:
        fp.write(der(msg))
    home = lab.wpath("gnupg")
    os.mkdir(home, 0o700)
    with open(os.path.join(home, "gpg-agent.conf"), "w") as fp:
        fp.write("allow-loopback-pinentry\n")
    genv = dict(os.environ, GNUPGHOME=home)
    S["gnupghome"] = home
    L.run([os.path.join(L.TOP, "tests", "lablib", "gpgsm-import-p12"), p12, passf, crt, key],
          env=genv)
    L.run(["gpgsm", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
           "-o", lab.wpath("g.dec"), "--decrypt", derf], input=P12PASS.encode(), env=genv)
    with open(lab.wpath("g.dec"), "rb") as fp:
        check_eq(L.crlf(fp.read()), dec, "gpgsm's plaintext against openssl's")
    db = lab.wpath("nss")
    os.mkdir(db)
    L.run(["certutil", "-N", "-d", "sql:" + db, "--empty-password"])
    L.run(["pk12util", "-i", p12, "-d", "sql:" + db, "-w", passf, "-K", ""])
    L.run(["cmsutil", "-D", "-d", "sql:" + db, "-p", "", "-i", derf, "-o", lab.wpath("n.dec")])
    with open(lab.wpath("n.dec"), "rb") as fp:
        got = L.crlf(fp.read())
    check_eq(got, dec, "cmsutil's plaintext against openssl's")
    check_protected_inner(got, b"budget 2027", "cmsutil")


@suite.case("outbound_rule_keeps_subject")
def _():
    need(S, "carol")
    d = send_out(CAROL, "ticket 4711", "ticket 4711")
    crt, key = S["carol"]
    p = S["lab"].wpath("carol.eml")
    with open(p, "wb") as fp:
        fp.write(d.msg)
    dec = L.crlf(L.run(["openssl", "cms", "-decrypt", "-recip", crt, "-inkey", key,
                        "-in", p]).stdout)
    check(b"\r\nHP-Outer: Subject: ticket 4711\r\n" in dec and b'hp="cipher"' in dec and
          b"hp-legacy-display" not in dec, "inside: %r" % dec[:600])


@suite.case("round_trip_kmilter_to_kmilter")
def _():
    need(S, "certs")
    raw = labsmtp.make_message(ALICE, [BOB], "round trip secret", "hello bob\r\n")
    sent = deliver(ALICE, [BOB], raw, outside=False)
    sent.one("Subject", "[...]", "sent")
    head, body = labsmtp.split_message(sent.msg)
    # as it would arrive elsewhere: without this lab's trace fields (folds included)
    head = re.sub(rb"(?im)^(received|return-path|x-original-to|delivered-to):.*\n(?:[ \t].*\n)*",
                  b"", head)
    d = deliver(ALICE, [BOB], head + body)
    what = "round trip"
    check_eq(d.log.get("direction"), "inbound", "%s: direction (%s)" % (what, d.line))
    check(d.log.get("action", "").startswith("decrypt"), "%s: action (%s)" % (what, d.line))
    each_once(d, what)
    d.one("Subject", "round trip secret", what)
    check_eq(d.all("HP-Outer"), ["Subject: [...]"], "%s: HP-Outer" % what)


def main():
    try:
        return suite.run()
    finally:
        if "gnupghome" in S:
            L.run(["gpgconf", "--homedir", S["gnupghome"], "--kill", "gpg-agent"], ok=False)
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
