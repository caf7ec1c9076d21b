#!/usr/bin/python3
"""t-headers - nothing a sender writes poses as the gateway's headers.

One lab (real Postfix, kmilter, Redis, two PyKMIP servers) with
policy.inbound.authserv_id "mx.example.com" and an outside CA for dave.
alice and bob are enrolled (with signing keys), dave@partner.example is an
outside correspondent whose certificate is imported.

Attacks, each delivered through Postfix and read back from smtp-sink:
  - headers inside encrypted content (From, Authentication-Results,
    X-Kmilter-Decrypted, Received, Subject; plain and RFC 9788 hp="cipher")
    and inside opaque signed-data must not become message headers: the
    delivered message has exactly the outer From and Subject, only
    kmilter's own X-Kmilter-Decrypted / Authentication-Results.  With
    hp="cipher" the sender's protected Subject and Reply-To are shown in
    place of the outer ones (RFC 9788, t-hp.py), each once; the inner From
    of another address, Authentication-Results, X-Kmilter-* and Received
    never are;
  - forged Authentication-Results with our authserv-id written folded
    (CRLF TAB before the id), after a (nested) comment, as a quoted-string,
    with a version, with a blank before the colon, and X-Kmilter-* headers
    are removed inbound, from internal-to-internal mail, from outbound
    mail (encrypted and signed-only) and from pass-through mail;
  - Authentication-Results of other authserv-ids (also one that merely
    starts with ours) are kept, and a pass-through message is otherwise
    delivered unchanged.
Every forged header carries the marker FORGED<n>, every header that must
stay KEEP<n>; the delivered header block is searched for them.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import Suite, check, check_eq, skip  # noqa: E402

labsmtp = L.labsmtp
AUTHSERV = "mx.example.com"
ALICE, BOB = "alice@example.com", "bob@example.com"
DAVE, NOCERT = "dave@partner.example", "nocert@nowhere.example"
STRANGER, OTHER = "x@elsewhere.example", "y@other.example"

suite = Suite()
S = {}

# Headers a sender adds to pose as kmilter's (each must go) and results of
# other authserv-ids (each must stay).  Raw header lines, CRLF folds kept.
FORGED = [
    "Authentication-Results: %s; smime=pass body.smime-identifier=FORGED1@example.com" % AUTHSERV,
    "Authentication-Results:\r\n\t%s; smime=pass body.smime-identifier=FORGED2@example.com"
    % AUTHSERV,
    "Authentication-Results: (comment) %s; smime=pass body.smime-identifier=FORGED3@example.com"
    % AUTHSERV,
    "Authentication-Results: (a (nested) comment)\r\n %s 1; smime=pass "
    "body.smime-identifier=FORGED4@example.com" % AUTHSERV,
    "Authentication-Results: \"MX.Example.COM\"; smime=pass body.smime-identifier=FORGED5@x",
    "Authentication-Results: %s(c); smime=pass body.smime-identifier=FORGED6@example.com"
    % AUTHSERV.upper(),
    "X-Kmilter-Decrypted: decrypted by FORGED7",
    "X-KMILTER-Verdict: FORGED8",
    "Authentication-Results : %s; smime=pass body.smime-identifier=FORGED9@example.com"
    % AUTHSERV,
]
KEPT = [
    "Authentication-Results: other.example; spf=pass smtp.mailfrom=KEEP1.example",
    "Authentication-Results: %s.evil.example; dkim=pass header.d=KEEP2.example" % AUTHSERV,
    "Authentication-Results: (%s) other.example; dmarc=pass header.from=KEEP3.example"
    % AUTHSERV,
]


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


# --- messages and what was delivered -------------------------------------

def message(sender, rcpt, subject, entity, extra=()):
    """Outer RFC 5322 headers (raw lines, folds kept) in front of an entity."""
    hdrs = ["From: Sender <%s>" % sender, "To: <%s>" % rcpt, "Subject: %s" % subject,
            "Date: Mon, 23 Nov 2026 10:00:00 +0000",
            "Message-ID: <%s@headers.test>" % os.urandom(8).hex()] + list(extra)
    ent = L.crlf(entity)
    if not ent.startswith(b"MIME-Version:"):
        ent = b"MIME-Version: 1.0\r\n" + ent
    return ("\r\n".join(hdrs) + "\r\n").encode() + ent


def plain_entity(tag):
    return (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"plain body of %s\r\n" % tag.encode())


def unfold(head):
    """[(name, value)] of a header block, folds joined with one space."""
    out = []
    for line in re.split(rb"\r?\n", head):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1][1] += " " + line.decode("latin-1").strip()
        else:
            name, _, value = line.decode("latin-1").partition(":")
            out.append([name.strip(), value.strip()])
    return out


class Delivered:
    def __init__(self, qid, msg, line):
        self.qid, self.msg, self.line = qid, msg, line or ""
        self.head, self.body = labsmtp.split_message(msg)
        self.headers = unfold(self.head)
        self.fields = labsmtp.parse_log_line(self.line) if line else {}

    def get(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def why(self):
        return "log: %s | headers: %s" % (self.line, [(n, v[:70]) for n, v in self.headers])



def source_for(env, sender):
    """Mail from an outside sender comes from a client outside the lab's
    internal_hosts, as it would through an MX."""
    return None if sender.lower().endswith("@example.com") else labsmtp.outside_client(env)

def deliver(sender, rcpts, raw):
    env = S["env"]
    qid = labsmtp.submit(env, sender, list(rcpts), raw, source=source_for(env, sender))
    p = labsmtp.wait_delivered(env, qid, timeout=30)
    _, msg = labsmtp.read_delivered(p)
    return Delivered(qid, msg, labsmtp.wait_log_line(env, qid, timeout=10))


def check_no_forged(d, what):
    found = sorted(set(re.findall(rb"FORGED\d+", d.head)))
    check(not found, "%s: forged header(s) delivered: %s (%s)" % (what, found, d.why()))
    for i in range(1, len(KEPT) + 1):
        check(b"KEEP%d" % i in d.head, "%s: the Authentication-Results with KEEP%d of another "
              "authserv-id was removed (%s)" % (what, i, d.why()))


# --- setup ---------------------------------------------------------------

@suite.case("lab_up")
def _():
    lab = L.Lab("t-headers")
    S["lab"] = lab
    pki = L.OutsidePKI(lab)
    S["pki"] = pki
    lab.policy = 'inbound: { ca_file = "%s"; authserv_id = "%s"; };' % (pki.ca_crt, AUTHSERV)
    lab.up()
    S["env"] = lab.env
    S["certs"] = L.enroll_users(lab, [ALICE, BOB], sign=True, workers=2)
    S["dave"] = L.import_certs(lab, pki, [DAVE], workers=1)[DAVE]
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)


# --- 1. headers inside decrypted or unwrapped content --------------------

INNER_FORGED = (b"From: CEO <ceo@example.com>\r\n"
                b"Authentication-Results: %s; smime=pass body.smime-identifier=FORGED11@x\r\n"
                b"X-Kmilter-Decrypted: decrypted by FORGED12\r\n"
                b"Received: from FORGED13.example by %s\r\n"
                b"Subject: FORGED14 inner subject\r\n"
                b"Reply-To: <FORGED15@evil.example>\r\n"
                % (AUTHSERV.encode(), AUTHSERV.encode()))


def inner_entity(tag, ctype=b"text/plain; charset=us-ascii"):
    return (b"Content-Type: " + ctype + b"\r\n" + INNER_FORGED +
            b"Content-Transfer-Encoding: 7bit\r\n\r\n"
            b"inner body of %s\r\n" % tag.encode())


def check_only_outer(d, what, sender, subject, protected=False):
    """protected: RFC 9788 hp="cipher": the sender's own Subject (FORGED14)
    and Reply-To (FORGED15) replace the outer ones, once each, the outer
    Subject kept as HP-Outer; nothing else from inside."""
    check_eq(d.get("From"), ["Sender <%s>" % sender], "%s: From headers (%s)" % (what, d.why()))
    if protected:
        check_eq(d.get("Subject"), ["FORGED14 inner subject"], "%s: Subject headers" % what)
        check_eq(d.get("Reply-To"), ["<FORGED15@evil.example>"], "%s: Reply-To" % what)
        check_eq(d.get("HP-Outer"), ["Subject: %s" % subject], "%s: HP-Outer" % what)
    else:
        check_eq(d.get("Subject"), [subject], "%s: Subject headers" % what)
        check(not d.get("Reply-To"), "%s: inner Reply-To made a message header" % what)
    head = re.sub(rb"FORGED1[45]", b"", d.head) if protected else d.head
    found = sorted(set(re.findall(rb"FORGED\d+", head)))
    check(not found, "%s: inner header(s) made message headers: %s (%s)" % (what, found, d.why()))


@suite.case("decrypted_inner_headers_not_lifted")
def _():
    need("certs")
    for tag, ctype in (("plain", b"text/plain; charset=us-ascii"),
                       ("hp-cipher", b"text/plain; charset=us-ascii; hp=\"cipher\"")):
        ent = inner_entity(tag, ctype)
        blob = L.encrypt_entity(S["lab"], ent, [S["certs"][BOB]], "inner-" + tag)
        subject = "outer subject %s" % tag
        d = deliver(DAVE, [BOB], message(DAVE, BOB, subject, blob))
        what = "decrypted (%s)" % tag
        check_eq(d.fields.get("action"), "decrypt", "%s: log action (%s)" % (what, d.line))
        check(("inner body of %s" % tag).encode() in d.body, "%s: not decrypted: %r"
              % (what, d.body[:200]))
        check_only_outer(d, what, DAVE, subject, protected=tag == "hp-cipher")
        xs = d.get("X-Kmilter-Decrypted")
        check(len(xs) == 1 and xs[0].startswith("decrypted by "),
              "%s: X-Kmilter-Decrypted: %r" % (what, xs))
        ours = [v for v in d.get("Authentication-Results") if AUTHSERV in v.lower()]
        check(not ours, "%s: Authentication-Results on an unsigned message: %r" % (what, ours))
        ct = d.get("Content-Type")
        check(len(ct) == 1 and ct[0].startswith("text/plain"), "%s: Content-Type %r"
              % (what, ct))


@suite.case("unwrapped_inner_headers_not_lifted")
def _():
    need("dave")
    crt, key = S["dave"]
    src = S["lab"].wpath("opaque.in")
    with open(src, "wb") as fp:
        fp.write(inner_entity("opaque"))
    signed = L.run(["openssl", "cms", "-sign", "-md", "sha256", "-signer", crt, "-inkey", key,
                    "-in", src, "-nodetach", "-binary", "-crlfeol"]).stdout
    check(b"signed-data" in signed, "openssl did not make signed-data")
    subject = "outer subject opaque"
    d = deliver(DAVE, [BOB], message(DAVE, BOB, subject, signed))
    check_eq(d.fields.get("action"), "unwrap+verify", "log action (%s)" % d.line)
    check(b"inner body of opaque" in d.body, "not unwrapped: %r" % d.body[:200])
    check_only_outer(d, "unwrapped", DAVE, subject)
    ours = [v for v in d.get("Authentication-Results") if v.lower().startswith(AUTHSERV)]
    check_eq(ours, ["%s; smime=pass body.smime-identifier=%s" % (AUTHSERV, DAVE)],
             "Authentication-Results of %s (%s)" % (AUTHSERV, d.why()))
    check(not d.get("X-Kmilter-Decrypted"), "X-Kmilter-Decrypted on a signed-only message")


# --- 2. forged result headers, every direction ---------------------------

def forged_message(sender, rcpt, tag):
    return message(sender, rcpt, "forged %s" % tag, plain_entity(tag), FORGED + KEPT)


@suite.case("forged_results_removed_inbound")
def _():
    need("certs")
    d = deliver(DAVE, [BOB], forged_message(DAVE, BOB, "inbound"))
    check_eq(d.fields.get("direction"), "inbound", "direction (%s)" % d.line)
    check_no_forged(d, "inbound plain")
    check(b"plain body of inbound" in d.body, "body changed: %r" % d.body[:200])
    # and on encrypted mail: only kmilter's own X-Kmilter-Decrypted
    blob = L.encrypt_entity(S["lab"], plain_entity("inbound-enc"), [S["certs"][BOB]], "fenc")
    d = deliver(DAVE, [BOB], message(DAVE, BOB, "forged enc", blob, FORGED + KEPT))
    check_eq(d.fields.get("action"), "decrypt", "log action (%s)" % d.line)
    check_no_forged(d, "inbound encrypted")
    xs = d.get("X-Kmilter-Decrypted")
    check(len(xs) == 1 and xs[0].startswith("decrypted by "), "X-Kmilter-Decrypted: %r" % xs)


@suite.case("forged_results_removed_internal_to_internal")
def _():
    need("certs")
    d = deliver(ALICE, [BOB], forged_message(ALICE, BOB, "internal"))
    check_eq(d.fields.get("direction"), "outbound", "direction (%s)" % d.line)
    check_eq(d.fields.get("action"), "sign+encrypt", "action (%s)" % d.line)
    check(L.is_enveloped(d.msg), "internal mail to bob not encrypted: %s" % d.why())
    check_no_forged(d, "internal to internal")


@suite.case("forged_results_removed_outbound")
def _():
    need("dave")
    d = deliver(ALICE, [DAVE], forged_message(ALICE, DAVE, "outbound"))
    check_eq(d.fields.get("direction"), "outbound", "direction (%s)" % d.line)
    check_eq(d.fields.get("action"), "sign+encrypt", "action (%s)" % d.line)
    check_no_forged(d, "outbound encrypted")
    d = deliver(ALICE, [NOCERT], forged_message(ALICE, NOCERT, "signonly"))
    check_eq(d.fields.get("direction"), "outbound", "direction (%s)" % d.line)
    check_no_forged(d, "outbound signed only")


@suite.case("forged_results_removed_pass_through")
def _():
    need("env")
    raw = forged_message(STRANGER, OTHER, "pass")
    d = deliver(STRANGER, [OTHER], raw)
    check_eq(d.fields.get("direction"), "pass", "direction (%s)" % d.line)
    check_eq(d.fields.get("action"), "pass", "action (%s)" % d.line)
    check_eq(d.fields.get("result"), "ok", "result (%s)" % d.line)
    check_no_forged(d, "pass-through")
    # nothing else changed: the body, and every other header in order
    sent_head, sent_body = labsmtp.split_message(raw)
    check(labsmtp.lf(d.body) == labsmtp.lf(sent_body), "pass-through body changed")
    want = [h for h in unfold(sent_head) if not re.search(r"FORGED\d+", h[1])]
    got = [h for h in d.headers if h[0].lower() != "received"]
    check_eq(got, want, "pass-through headers apart from the removals")


def main():
    try:
        return suite.run()
    finally:
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
