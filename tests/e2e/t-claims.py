#!/usr/bin/python3
"""t-claims - README's policy claims, each checked through the lab (real
Postfix -> kmilter -> smtp-sink): what the SMTP client receives (code and
enhanced status), what is delivered, and kmilter's log line.

One lab; its policy group is rewritten between cases and kmilter reloads it
on SIGHUP (the case waits for the "reloaded configuration" line).  Users:
alice@example.com (escrowed key + signing key), carol@example.com (escrowed
key, no signing key), coldin@example.com (escrowed key, never looked up
before the KM outage); outside correspondents with keys made here:
dave@outside.example, frank@nosign.example, cold@coldpartner.example (never
looked up before the KM outage).

Claims (README "What kmilter guarantees when things fail", "Who is signed,
what is encrypted"; kmilter.conf(5)):
  policy.on_malformed = pass (default) | reject (550 5.6.0) | tempfail
    (451 4.3.0) for malformed CMS and MIME in inbound mail; outbound mail is
    signed and encrypted whatever its MIME, never passed or refused for it;
  policy.outbound.missing_cert = sign-only (default) | refuse (550 5.7.1 at
    RCPT naming the recipient; the others of the transaction still go);
  policy.outbound.cipher = aes-256-gcm and rsa_padding = oaep reach the
    delivered CMS (openssl cms -cmsout -print), which dave decrypts;
  policy.rules: the address, domain and ".parent" forms, encrypt and sign,
    and their precedence (address, then domain, then parent domains);
  policy.outbound.subject_tag: mandatory, and removed from the Subject;
  policy.outbound.no_signing_key = unsigned (default, logged downgraded) |
    tempfail (451 4.3.0);
  budgets: 552 5.3.4 for a message larger than milter.max_inflight_mb,
    451 4.3.2 for a connection above milter.max_sessions;
  one KM server down: a certificate still comes from the other (encrypted),
    an uncached key (two shares) gets 451 4.3.0 at end of data; both down:
    451 4.7.1 at RCPT for an uncached certificate, 451 4.3.0 for a key,
    cached certificates keep working; the retries after the KM is back go
    through.
"""
import base64
import os
import re
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
import ktest  # noqa: E402
from ktest import Failure, Suite, check, check_eq, wait_for  # noqa: E402
import labsmtp  # noqa: E402

ALICE = "alice@example.com"
CAROL = "carol@example.com"
COLDIN = "coldin@example.com"
DAVE = "dave@outside.example"
FRANK = "frank@nosign.example"
COLD = "cold@coldpartner.example"
COLD2 = "cold2@coldpartner.example"
NOCERT = "nocert@nowhere.example"
MARK = "# t-claims: policy settings go here"
RELOADED = "kmilter: reloaded configuration from "

suite = Suite()
S = {}


def need(*keys):
    ktest.need(S, *keys)


# ----------------------------------------------------------------- helpers

def reconfigure(policy, milter=""):
    """Put policy (libconfig text) into the policy group and milter into
    the milter group; SIGHUP; wait for the reload line."""
    lab = S["lab"]
    conf = S["conf"].replace(MARK, policy)
    if milter:
        conf, n = re.subn(r'(?m)^(\s*spool_dir = "[^"]*";)$', lambda m: m.group(1) + "\n\t" + milter,
                          conf)
        check_eq(n, 1, "spool_dir lines in the generated kmilter.conf")
    with open(lab.env["LAB_CONF"], "w") as fp:
        fp.write(conf)
    before = lab.log_text().count(RELOADED.encode())
    os.kill(lab.milter_pid(), signal.SIGHUP)
    if not wait_for(lambda: lab.log_text().count(RELOADED.encode()) > before, 10):
        raise Failure("no reload within 10s for policy %r: %s" % (
            policy, lab.log_text()[-600:].decode("utf-8", "replace")))


def message(sender, rcpts, subject, entity=None):
    """A message with a unique token in its Subject and body: (token, raw).
    entity: (Content-* header lines, body) instead of plain text."""
    tok = L.new_token()
    if entity is None:
        entity = (["Content-Type: text/plain; charset=us-ascii"],
                  "BODY-%s\r\nSecond line.\r\n" % tok)
    hdrs = ["From: <%s>" % sender, "To: %s" % ", ".join("<%s>" % r for r in rcpts),
            "Subject: %s %s" % (subject, tok), "Date: Tue, 01 Dec 2026 02:00:00 +0000",
            "Message-ID: <%s@claims.test>" % tok, "MIME-Version: 1.0"] + list(entity[0])
    body = entity[1].encode() if isinstance(entity[1], str) else entity[1]
    return tok, ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body


class Tx:
    """One SMTP transaction: every reply as (code, text)."""

    def __init__(self, sender, rcpts, raw, source=None):
        self.mail, self.rcpt, self.data, self.qid = None, [], None, None
        self.sender, self.mark = sender, log_mark()
        s = labsmtp.connect(S["lab"].env, timeout=60, source=source)
        try:
            self.mail = self._reply(s.mail(sender))
            if self.mail[0] != 250:
                return
            for r in rcpts:
                self.rcpt.append(self._reply(s.rcpt(r)))
            if not any(c in (250, 251) for c, _ in self.rcpt):
                return
            try:
                self.data = self._reply(s.data(raw))
            except smtplib.SMTPResponseException as e:
                self.data = (e.smtp_code, e.smtp_error.decode("utf-8", "replace"))
            if self.data[0] == 250:
                self.qid = labsmtp.QUEUED_RE.search(self.data[1].encode()).group(1).decode()
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    @staticmethod
    def _reply(r):
        return r[0], r[1].decode("utf-8", "replace")


def check_reply(got, code, xcode, what, contains=None):
    """got (code, text) is exactly `code xcode ...` (Postfix passes kmilter's
    reply through)."""
    check(got is not None, "%s: no reply (the transaction stopped earlier)" % what)
    check(got[0] == code and got[1].startswith(xcode + " "),
          "%s: got %d %r, want %d %s" % (what, got[0], got[1], code, xcode))
    if contains:
        check(contains in got[1], "%s: reply %r does not name %r" % (what, got[1], contains))


def delivered(tx):
    """(message, log fields, log line) of an accepted transaction."""
    check(tx.qid is not None, "not accepted: MAIL %r RCPT %r DATA %r" % (tx.mail, tx.rcpt, tx.data))
    env = S["lab"].env
    _, msg = labsmtp.read_delivered(labsmtp.wait_delivered(env, tx.qid, 60))
    line = labsmtp.wait_log_line(env, tx.qid, 10)
    check(line is not None, "no kmilter log line for %s" % tx.qid)
    return msg, labsmtp.parse_log_line(line), line


def not_delivered(tok):
    """No delivered file holds the token (the refusal was synchronous)."""
    hits = []
    for path in labsmtp.delivered_files(S["lab"].env):
        with open(path, "rb") as fp:
            if tok.encode() in fp.read():
                hits.append(path)
    check(not hits, "a refused message was delivered anyway: %s" % hits)


def log_mark():
    return len(S["lab"].log_text())


def log_line_of(tx):
    """kmilter's per-message line of a transaction that was not accepted:
    the line from its sender logged since it began."""
    sender, mark = tx.sender, tx.mark
    pat = re.compile(rb"\w+: from=<" + re.escape(sender.encode()) + rb"> .*")

    def find():
        m = pat.findall(S["lab"].log_text()[mark:])
        return m[-1].decode("utf-8", "replace") if m else None
    line = wait_for(find, 10)
    check(line is not None, "no kmilter log line from=<%s>" % sender)
    return line, labsmtp.parse_log_line(line)


def check_fields(fields, line, **want):
    for k, v in want.items():
        check(fields.get(k) == v, "log %s=%r, want %r: %s" % (k, fields.get(k), v, line))


def header(msg, name):
    hdr, _ = labsmtp.split_message(msg)
    m = re.search(rb"(?im)^" + name.encode() + rb":[ \t]*(.*(?:\n[ \t].*)*)", hdr)
    return m.group(1).decode("utf-8", "replace").strip() if m else None


def enveloped(msg):
    ct = (header(msg, "Content-Type") or "").lower()
    return ct.startswith("application/pkcs7-mime") and "enveloped-data" in ct


def cms_print(msg, name):
    f = S["lab"].wpath(name + ".eml")
    with open(f, "wb") as fp:
        fp.write(msg)
    return L.run(["openssl", "cms", "-cmsout", "-print", "-in", f]).stdout.decode(
        "utf-8", "replace"), f


def dave_decrypts(path, name, who="dave"):
    """openssl cms -decrypt with dave's (or who's) key: the plaintext entity."""
    out = S["lab"].wpath(name + ".dec")
    L.run(["openssl", "cms", "-decrypt", "-recip", S[who][0], "-inkey", S[who][1],
           "-in", path, "-out", out])
    with open(out, "rb") as fp:
        return fp.read()


def verify_signed(entity, name):
    """openssl cms -verify of a multipart/signed entity under the org CA."""
    f = S["lab"].wpath(name + ".signed")
    with open(f, "wb") as fp:
        fp.write(entity)
    L.run(["openssl", "cms", "-verify", "-CAfile", S["lab"].env["LAB_CA_CERT"], "-purpose",
           "smimesign", "-in", f, "-out", "/dev/null"])


def outside_sender(what):
    return "%s-%s@outside.example" % (what, L.new_token().replace("ktok-", ""))


def garbage_cms(sender, rcpt):
    """Labelled S/MIME enveloped data, but the base64 is no CMS at all."""
    b64 = base64.encodebytes(b"this is not DER, just text posing as CMS. " * 8)
    return message(sender, [rcpt], "garbage-cms", (
        ["Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
         "Content-Transfer-Encoding: base64"], b64.decode().replace("\n", "\r\n")))


def garbage_signed(sender, rcpt):
    """multipart/signed whose signature part is no CMS."""
    body = ("--sig-b\r\nContent-Type: text/plain\r\n\r\nsigned, they say\r\n"
            "--sig-b\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" +
            base64.encodebytes(b"no signature here " * 6).decode().replace("\n", "\r\n") +
            "--sig-b--\r\n")
    return message(sender, [rcpt], "garbage-signed", (
        ['Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
         'micalg=sha-256; boundary="sig-b"'], body))


# ------------------------------------------------------------------- setup

@suite.case("setup: lab, alice/carol/coldin enrolled, outside correspondents imported")
def _():
    lab = L.Lab("claims", policy=MARK)
    S["lab_obj"] = lab
    lab.up()
    with open(lab.env["LAB_CONF"]) as fp:
        S["conf"] = fp.read()
    check(MARK in S["conf"], "the policy marker is not in the generated kmilter.conf")
    L.enroll_users(lab, [ALICE], sign=True)
    certs = L.enroll_users(lab, [CAROL, COLDIN], sign=False)
    S["coldin.crt"] = certs[COLDIN]
    pki = L.OutsidePKI(lab, "outside.example")
    corr = L.import_certs(lab, pki, [DAVE, FRANK, COLD, COLD2])
    S["dave"], S["frank"] = corr[DAVE], corr[FRANK]
    S["lab"] = lab


# ------------------------------------------------------------- on_malformed

def inbound_malformed(make, what):
    sender = outside_sender(what)
    tok, raw = make(sender, ALICE)
    return sender, tok, Tx(sender, [ALICE], raw, source=labsmtp.outside_client(S["lab"].env))


@suite.case("on_malformed default (pass): inbound garbage CMS and MIME delivered unchanged, logged")
def _():
    need("lab")
    reconfigure("")
    for make, what in ((garbage_cms, "cms"), (garbage_signed, "mime")):
        sender, tok, tx = inbound_malformed(make, "pass-" + what)
        msg, f, line = delivered(tx)
        check(tok.encode() in msg, "%s: token not in the delivered message" % what)
        check_fields(f, line, direction="inbound", action="pass", result="ok")
        check("reason=passed unchanged: malformed:" in line, "%s: log line: %s" % (what, line))


def malformed_refused(setting, code, xcode, reason, result):
    """Inbound garbage CMS and MIME under on_malformed = setting: refused at
    end of data with code xcode, not delivered, logged result and reason."""
    need("lab")
    reconfigure('on_malformed = "%s";' % setting)
    for make, what in ((garbage_cms, "cms"), (garbage_signed, "mime")):
        sender, tok, tx = inbound_malformed(make, "%s-%s" % (setting, what))
        check_reply(tx.data, code, xcode, "%s: DATA" % what)
        not_delivered(tok)
        line, f = log_line_of(tx)
        check_fields(f, line, direction="inbound", result=result)
        check("reason=%s" % reason in line, "%s: log line: %s" % (what, line))


@suite.case("on_malformed = reject: inbound garbage CMS and MIME -> 550 5.6.0, not delivered")
def _():
    malformed_refused("reject", 550, "5.6.0", "malformed S/MIME message: ", "rejected")


@suite.case("on_malformed = tempfail: inbound garbage CMS and MIME -> 451 4.3.0, not delivered")
def _():
    malformed_refused("tempfail", 451, "4.3.0", "malformed S/MIME: ", "tempfail")


@suite.case("on_malformed = reject does not apply outbound: malformed MIME to dave leaves encrypted")
def _():
    need("lab")
    reconfigure('on_malformed = "reject";')
    tok, raw = message(ALICE, [DAVE], "malformed-out", (
        ["Content-Type: multipart/mixed"],          # no boundary parameter
        "--\r\nContent-Type: text/plain\r\n\r\nBODY-part\r\n--\r\n--x--\r\n"))
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
    check(enveloped(msg) and b"BODY-part" not in msg, "not encrypted: %r" % msg[:300])
    _, path = cms_print(msg, "malformed-out")
    check(b"BODY-part" in dave_decrypts(path, "malformed-out"), "dave's plaintext lacks the body")


# ------------------------------------------------------------- missing_cert

@suite.case("missing_cert default (sign-only): nocert + dave -> both get it signed, logged downgraded")
def _():
    need("lab")
    reconfigure("")
    tok, raw = message(ALICE, [DAVE, NOCERT], "sign-only")
    tx = Tx(ALICE, [DAVE, NOCERT], raw)
    check_eq([c for c, _ in tx.rcpt], [250, 250], "RCPT codes")
    msg, f, line = delivered(tx)
    check_fields(f, line, direction="outbound", action="sign", result="downgraded")
    check("reason=not encrypted: <%s>" % NOCERT in line, "log line: %s" % line)
    check((header(msg, "Content-Type") or "").lower().startswith("multipart/signed"),
          "not multipart/signed: %r" % header(msg, "Content-Type"))
    verify_signed(msg, "sign-only")


@suite.case("missing_cert = refuse: RCPT nocert -> 550 5.7.1 naming it; dave in the same "
            "transaction gets it encrypted")
def _():
    need("lab")
    reconfigure('outbound: { missing_cert = "refuse"; };')
    tok, raw = message(ALICE, [DAVE, NOCERT], "refuse")
    tx = Tx(ALICE, [NOCERT, DAVE], raw)
    check_reply(tx.rcpt[0], 550, "5.7.1", "RCPT %s" % NOCERT, "<%s>" % NOCERT)
    check_eq(tx.rcpt[1][0], 250, "RCPT dave")
    msg, f, line = delivered(tx)
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok", rcpts="1")
    check(enveloped(msg), "not encrypted")
    check(tok.encode() in msg and ("BODY-" + tok).encode() not in msg,
          "plaintext visible, or the Subject lost")
    check(re.search(r"rcpt=<%s> refused" % re.escape(NOCERT),
                    S["lab"].log_text().decode("utf-8", "replace")),
          "kmilter did not log the refusal of %s" % NOCERT)


# ----------------------------------------------------- cipher and padding

@suite.case("cipher = aes-256-gcm, rsa_padding = oaep: authEnvelopedData, AES-256-GCM, "
            "RSAES-OAEP for every recipient; dave decrypts, alice's signature verifies")
def _():
    need("lab")
    reconfigure('outbound: { cipher = "aes-256-gcm"; rsa_padding = "oaep"; };')
    tok, raw = message(ALICE, [DAVE], "gcm-oaep")
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
    ct = (header(msg, "Content-Type") or "").lower()
    check("smime-type=authenveloped-data" in ct, "Content-Type %r" % ct)
    text, path = cms_print(msg, "gcm")
    check("id-smime-ct-authEnvelopedData" in text, "not authEnvelopedData")
    algs = re.findall(r"contentEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)", text)
    check_eq(algs, ["aes-256-gcm"], "content encryption algorithm(s)")
    kt = re.findall(r"keyEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)", text)
    check_eq(kt, ["rsaesOaep", "rsaesOaep"], "key transport of dave and alice (encrypt to self)")
    plain = dave_decrypts(path, "gcm")
    check(("BODY-" + tok).encode() in plain, "dave's plaintext lacks the body")
    verify_signed(plain, "gcm")


# -------------------------------------------------------------------- rules

RULES = """rules = (
	{ match = "dave@outside.example"; encrypt = "never"; },
	{ match = ".parent.example"; encrypt = "mandatory"; },
	{ match = "open.parent.example"; encrypt = "opportunistic"; },
	{ match = "strict.example"; encrypt = "mandatory"; },
	{ match = "vip@strict.example"; encrypt = "opportunistic"; },
	{ match = "nosign.example"; sign = "no"; }
);"""


@suite.case("rules: address, domain and .parent forms; address > domain > parent, whatever "
            "the order")
def _():
    need("lab")
    reconfigure(RULES)
    refused = {}
    for rcpt, want in (("x@strict.example", 550),         # domain rule: mandatory
                       ("x@sub.parent.example", 550),     # parent rule covers subdomains
                       ("y@parent.example", 550),         # ... and the domain itself
                       ("z@open.parent.example", 250),    # domain rule beats the parent rule
                       ("vip@strict.example", 250)):      # address rule beats the domain rule
        tok, raw = message(ALICE, [rcpt], "rules")
        tx = Tx(ALICE, [rcpt], raw)
        refused[rcpt] = tx.rcpt[0]
        if want == 550:
            check_reply(tx.rcpt[0], 550, "5.7.1", "RCPT %s" % rcpt, "<%s>" % rcpt)
            continue
        check_eq(tx.rcpt[0][0], 250, "RCPT %s (%s)" % (rcpt, tx.rcpt[0][1]))
        msg, f, line = delivered(tx)
        check_fields(f, line, action="sign", result="downgraded")
        check("reason=not encrypted: <%s>" % rcpt in line, "log line: %s" % line)

    # address rule: encrypt = never although dave has a certificate (not a downgrade)
    tok, raw = message(ALICE, [DAVE], "rule-never")
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign", result="ok")
    check(not enveloped(msg) and ("BODY-" + tok).encode() in msg, "encrypted to dave anyway")
    verify_signed(msg, "rule-never")

    # domain rule: sign = no, encrypt default (opportunistic): frank has a certificate
    tok, raw = message(ALICE, [FRANK], "rule-nosign")
    msg, f, line = delivered(Tx(ALICE, [FRANK], raw))
    check_fields(f, line, direction="outbound", action="encrypt", result="ok")
    check(enveloped(msg), "not encrypted to frank")
    text, path = cms_print(msg, "nosign")
    check("contentType: pkcs7-envelopedData" in text, "not envelopedData")
    plain = dave_decrypts(path, "nosign", who="frank")
    check(("BODY-" + tok).encode() in plain, "frank's plaintext lacks the body")
    check(b"multipart/signed" not in plain.lower(), "signed although the rule says sign = no")


@suite.case("rules over outbound sign = no, encrypt = never: sign = yes signs, a mandatory "
            "rule still refuses, the rest leaves as it came (policy, not a downgrade)")
def _():
    need("lab")
    reconfigure('outbound: { sign = "no"; encrypt = "never"; };\n'
                'rules = ( { match = "outside.example"; sign = "yes"; },\n'
                '\t{ match = "strict.example"; encrypt = "mandatory"; } );')
    tok, raw = message(ALICE, [DAVE], "rule-sign-yes")
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign", result="ok")
    check(not enveloped(msg), "encrypted although outbound.encrypt = never")
    verify_signed(msg, "rule-sign-yes")
    tok, raw = message(ALICE, [FRANK], "no-rule")
    msg, f, line = delivered(Tx(ALICE, [FRANK], raw))
    check_fields(f, line, direction="outbound", action="pass", result="ok")
    check(("BODY-" + tok).encode() in msg and b"multipart/signed" not in msg.lower(),
          "frank's copy was signed or encrypted")
    tok, raw = message(ALICE, ["x@strict.example"], "rule-mandatory")
    tx = Tx(ALICE, ["x@strict.example"], raw)
    check_reply(tx.rcpt[0], 550, "5.7.1", "RCPT x@strict.example", "<x@strict.example>")


# -------------------------------------------------------------- subject tag

@suite.case("subject_tag: tagged mail is mandatory (550 5.7.1 without a certificate) and the "
            "tag is removed from the Subject")
def _():
    need("lab")
    # hide_subject off: the outer Subject shows the tag removed (with it on,
    # encrypted mail leaves with "[...]" outside and the same inside: test_outbound)
    reconfigure('outbound: { subject_tag = "[secure]"; hide_subject = false; };')
    tok, raw = message(ALICE, [NOCERT], "[secure] tagged")
    tx = Tx(ALICE, [NOCERT], raw)
    check_eq(tx.rcpt[0][0], 250, "RCPT (the tag is seen at end of data)")
    check_reply(tx.data, 550, "5.7.1", "DATA", "<%s>" % NOCERT)
    not_delivered(tok)
    line, f = log_line_of(tx)
    check_fields(f, line, direction="outbound", result="rejected")

    tok, raw = message(ALICE, [DAVE], "[secure] tagged")
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
    check(enveloped(msg), "not encrypted")
    check_eq(header(msg, "Subject"), "tagged %s" % tok, "delivered Subject")


# ----------------------------------------------------------- no_signing_key

@suite.case("no_signing_key default (unsigned): carol -> dave encrypted, not signed, logged "
            "downgraded")
def _():
    need("lab")
    reconfigure("")
    tok, raw = message(CAROL, [DAVE], "nosignkey")
    msg, f, line = delivered(Tx(CAROL, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="encrypt", result="downgraded")
    check("has no signing key here" in line, "log line: %s" % line)
    _, path = cms_print(msg, "nosignkey")
    plain = dave_decrypts(path, "nosignkey")
    check(("BODY-" + tok).encode() in plain, "dave's plaintext lacks the body")
    check(b"multipart/signed" not in plain.lower() and b"pkcs7-signature" not in plain.lower(),
          "signed although carol has no signing key")


@suite.case("no_signing_key = tempfail: carol -> dave gets 451 4.3.0, not delivered")
def _():
    need("lab")
    reconfigure('outbound: { no_signing_key = "tempfail"; };')
    tok, raw = message(CAROL, [DAVE], "nosignkey-tf")
    tx = Tx(CAROL, [DAVE], raw)
    check_reply(tx.data, 451, "4.3.0", "DATA")
    not_delivered(tok)
    line, f = log_line_of(tx)
    check_fields(f, line, direction="outbound", result="tempfail")
    check("reason=signing key of <%s>" % CAROL in line, "log line: %s" % line)


# ------------------------------------------------------------------ budgets

@suite.case("max_inflight_mb: a message that alone needs more than the budget -> 552 5.3.4, "
            "not delivered, the log names milter.max_inflight_mb; a smaller one passes")
def _():
    need("lab")
    reconfigure("", milter="max_inflight_mb = 1;")
    # on the crypto path a message counts 8 times: 300 kB needs 2.4 MB of a 1 MB budget
    tok, raw = message(ALICE, [DAVE], "too-big", (
        ["Content-Type: text/plain; charset=us-ascii"],
        "".join("line %05d of a message too big for this gateway's budget\r\n" % i
                for i in range(5000))))
    tx = Tx(ALICE, [DAVE], raw)
    check_reply(tx.data, 552, "5.3.4", "DATA")
    not_delivered(tok)
    line, f = log_line_of(tx)
    check_fields(f, line, direction="outbound", result="rejected")
    check("milter.max_inflight_mb (1 MB)" in line, "log line: %s" % line)
    tok, raw = message(ALICE, [DAVE], "fits")        # a few hundred bytes: 8x fits
    msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")


@suite.case("max_sessions: a connection above it -> 451 4.3.2 through Postfix, the log names "
            "milter.max_sessions; nothing delivered")
def _():
    need("lab")
    reconfigure("", milter="max_sessions = 1;")
    env = S["lab"].env
    first = labsmtp.connect(env, timeout=60)       # holds the one milter session
    try:
        mark = log_mark()
        tok, raw = message(ALICE, [DAVE], "busy")
        tx = Tx(ALICE, [DAVE], raw)
        stage, got = next(((n, r) for n, r in (("MAIL", tx.mail),
                                               ("RCPT", tx.rcpt[0] if tx.rcpt else None),
                                               ("DATA", tx.data))
                           if r is not None and r[0] != 250), ("DATA", tx.data))
        print("INFO max_sessions: Postfix gave the milter's reply at %s: %d %s" % (
            stage, got[0], got[1]))
        check_reply(got, 451, "4.3.2", "the second session's first refused reply")
        not_delivered(tok)
        check("milter.max_sessions (1) connections open" in
              S["lab"].log_text()[mark:].decode("utf-8", "replace"),
              "no log line naming milter.max_sessions")
    finally:
        first.quit()
    reconfigure("")


# ------------------------------------------------------------- KM unreachable

def inbound_to_coldin():
    """An outside sender's message encrypted to coldin: (sender, raw)."""
    inner = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nINNER-cold\r\n"
    blob = L.encrypt_entity(S["lab"], inner, [S["coldin.crt"]], "coldin")
    sender = outside_sender("kmdown")
    return sender, (("From: <%s>\r\nTo: <%s>\r\nSubject: km-down-in\r\n" % (sender, COLDIN))
                    .encode() + blob)


def key_tempfails(n, in_sender, in_raw):
    """With n KM server(s) down an uncached key (both shares) -> 451 4.3.0."""
    tx = Tx(in_sender, [COLDIN], in_raw, source=labsmtp.outside_client(S["lab"].env))
    check_reply(tx.data, 451, "4.3.0", "%d down: DATA inbound to %s" % (n, COLDIN))
    line, f = log_line_of(tx)
    check_fields(f, line, direction="inbound", result="tempfail")


def km_stop(lab, name):
    pid = lab.km_pid(name)
    r = lab.km_sh("km_stop", name)
    check(r.returncode == 0, "km_stop %s: %r" % (name, r.stderr[-200:]))
    check(pid is None or wait_for(lambda: not L.pid_alive(pid), 10), "KM %s still runs" % name)


@suite.case("KM servers down: one -> a certificate still comes from the other, a key (two "
            "shares) gets 451 4.3.0; both -> 451 4.7.1 at RCPT, 451 4.3.0 at end of data, "
            "cached certificates still work; the retries go through once the KM is back")
def _():
    need("lab")
    lab = S["lab"]
    reconfigure("")
    # warm: dave's and alice's certificates in kmilter's caches
    tok, raw = message(ALICE, [DAVE], "warm")
    delivered(Tx(ALICE, [DAVE], raw))
    ports = {n: lab.km_port(n) for n in ("km-b", "km-a")}
    in_sender, in_raw = inbound_to_coldin()
    out_tok, out_raw = message(ALICE, [COLD2], "km-down-out")
    try:
        km_stop(lab, "km-b")
        tok, raw = message(ALICE, [COLD], "one-km-down")
        msg, f, line = delivered(Tx(ALICE, [COLD], raw))
        check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
        check(enveloped(msg), "not encrypted to %s with one KM server up" % COLD)
        key_tempfails(1, in_sender, in_raw)
        km_stop(lab, "km-a")
        tx = Tx(ALICE, [COLD2], out_raw)
        check_reply(tx.rcpt[0], 451, "4.7.1", "2 down: RCPT %s" % COLD2, "<%s>" % COLD2)
        key_tempfails(2, in_sender, in_raw)
        tok, raw = message(ALICE, [DAVE], "cached")
        msg, f, line = delivered(Tx(ALICE, [DAVE], raw))
        check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
    finally:
        for n, port in ports.items():
            r = lab.km_sh("km_start", n, port)
            if r.returncode != 0:
                raise Failure("km_start %s: %r" % (n, r.stderr[-300:]))
    # what an SMTP client does with a 4xx: try again, now accepted
    msg, f, line = delivered(Tx(ALICE, [COLD2], out_raw))
    check_fields(f, line, direction="outbound", action="sign+encrypt", result="ok")
    check(enveloped(msg), "the retry to %s is not encrypted" % COLD2)
    msg, f, line = delivered(Tx(in_sender, [COLDIN], in_raw,
                                source=labsmtp.outside_client(lab.env)))
    check_fields(f, line, direction="inbound", action="decrypt", result="ok")
    check(b"INNER-cold" in msg, "the retry to %s was not decrypted" % COLDIN)


def main():
    def down():
        if "lab_obj" in S:
            S["lab_obj"].down()
    suite.cleanups.append(down)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    rc = suite.run()
    print("FIGURE t-claims: %.1fs" % (time.time() - t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
