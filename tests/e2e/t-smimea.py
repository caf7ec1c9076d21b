#!/usr/bin/python3
"""t-smimea - certificates from DNS SMIMEA records (RFC 8162), validated
with DNSSEC, through the lab (issue 16, item 3b).

NSD serves four signed zones and an unsigned one on 127.0.0.1 and a random port (its own
nsd.conf under the suite's directory, zones signed with ldns-keygen and
ldns-signzone, stopped by pid); kmilter asks it as a stub
(directory.smimea.stub) with the zones' DS records as trust anchor.
  smimea.example   carol: her certificate, usage 3 selector 0 mtype 0;
                   pkix: usage 1 (PKIX-EE), issued by a CA of
                   policy.inbound.ca_file; skip: records kmilter cannot
                   encrypt to (usage 1 self-signed, so no PKIX chain;
                   selector 1 + a SHA-256 of the key); nobody: none.
  bogus.example    carol's record changed after signing (RRSIG broken).
  wrongta.example  signed with a key whose DS is not the trust anchor's.
  late.example     never asked until NSD is stopped.
  unsigned.example carol's certificate in a zone with no DNSSEC.
Cases: alice -> carol@smimea.example is encrypted to the certificate in
DNS (openssl decrypts with carol's key), and so is alice -> pkix (usage
1, its chain verifies); records that do not carry a
certificate are skipped (said at debug) and the mail is signed only; no
record: signed only, and the "none" is cached (one lookup for two
messages); a bogus answer (tampered record, wrong trust anchor) is never
used, logged once for two messages, mail signed only; an insecure answer
(unsigned zone) is not used either (said at debug); NSD stopped: the
mail goes signed only within timeout_ms plus a margin, kmilter logs that
the directory did not answer; the next message does not wait (the domain
is in its back-off period, directory.backoff_ms).
"""
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "load"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import loadlib as L  # noqa: E402
import labsmtp  # noqa: E402
import smimeazone  # noqa: E402
from ktest import Suite, check, check_eq, need as kneed  # noqa: E402

ALICE = "alice@example.com"
CAROL = "carol@smimea.example"
PKIX = "pkix@smimea.example"
SKIPPED = "skip@smimea.example"
NOBODY = "nobody@smimea.example"
BOGUS = "carol@bogus.example"
WRONGTA = "carol@wrongta.example"
LATE = "carol@late.example"
UNSIGNED = "carol@unsigned.example"
TIMEOUT_MS = 1500

suite = Suite()
S = {}


def need(*keys):
    kneed(S, *keys)


def der(crt):
    return L.run(["openssl", "x509", "-in", crt, "-outform", "DER"]).stdout


def send(rcpt):
    """alice -> rcpt; (qid, delivered message bytes, log fields, seconds)."""
    m = L.plain_msg(ALICE, rcpt, 800, "outbound")
    t0 = time.time()
    L.send_all(S["env"], [m], sessions=1)
    secs = time.time() - t0
    check_eq(m.status, "accepted", "status of alice -> %s (%s)" % (rcpt, m.reply))
    path = labsmtp.wait_delivered(S["env"], m.qid, timeout=60)
    _, msg = labsmtp.read_delivered(path)
    line = labsmtp.wait_log_line(S["env"], m.qid)
    check(line is not None, "no kmilter log line for %s" % m.qid)
    return m, msg, labsmtp.parse_log_line(line), secs


def log_count(pattern):
    return len(re.findall(pattern.encode(), S["lab"].log_text()))


def self_signed(addr):
    """A self-signed certificate for addr (no chain to any CA we trust)."""
    base = S["lab"].wpath(addr.replace("@", "_at_") + "-self")
    L.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
           "-subj", "/CN=" + addr, "-addext", "subjectAltName=email:" + addr,
           "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
           "-keyout", base + ".key", "-out", base + ".crt"])
    return base + ".crt"


def encrypted_to(rcpt, crt, key):
    """alice -> rcpt arrives encrypted; rcpt's key decrypts it."""
    m, msg, f, _ = send(rcpt)
    problem = L.check_delivery(m, msg)
    check(not problem, problem)
    check_eq(f.get("action"), "sign+encrypt", "action")
    src = S["lab"].wpath(rcpt + ".eml")
    with open(src, "wb") as fp:
        fp.write(L.crlf(msg))
    r = L.run(["openssl", "cms", "-decrypt", "-in", src, "-recip", crt, "-inkey", key])
    check(m.marker.encode() in r.stdout, "%s's plaintext lacks %s" % (rcpt, m.marker))
    check(log_count(r"smimea: %s: certificate from SMIMEA " % re.escape(rcpt)) >= 1,
          "no 'certificate from SMIMEA' line for %s" % rcpt)


def signed_only(rcpt):
    m, msg, f, secs = send(rcpt)
    problem = L.check_delivery(L.Msg(m.token, m.sender, m.rcpts, m.raw, "signonly",
                                     m.marker), msg)
    check(not problem, problem)
    check_eq(f.get("result"), "downgraded", "result of alice -> %s" % rcpt)
    return m, msg, f, secs


@suite.case("lab up with NSD serving four signed zones and an unsigned one")
def _():
    for tool in ("nsd", "ldns-keygen", "ldns-signzone", "drill"):
        check(shutil.which(tool) or os.path.exists("/usr/sbin/" + tool),
              "%s is not installed (tests/install-deps)" % tool)
    lab = L.Lab("t-smimea")
    S["lab"] = lab
    suite.cleanups.append(lambda: lab.down())
    pki = L.OutsidePKI(lab, "smimea.example")
    # usage 1 (PKIX-EE) needs a chain to policy.inbound.ca_file
    lab.policy = 'inbound: { ca_file = "%s"; };' % pki.ca_crt
    carol_crt, carol_key = pki.make(CAROL)
    S["carol"] = (carol_crt, carol_key)
    pkix_crt, pkix_key = pki.make(PKIX)
    S["pkix"] = (pkix_crt, pkix_key)
    ns = smimeazone.Nsd(lab.wpath("dns"))
    os.chmod(ns.dir, 0o755)
    z = ns.zone("smimea.example")
    z.smimea(CAROL, der(carol_crt))
    z.smimea(PKIX, der(pkix_crt), usage=1)
    z.smimea(SKIPPED, der(self_signed(SKIPPED)), usage=1)
    z.smimea(SKIPPED, bytes.fromhex("ab" * 32), usage=3, selector=1, mtype=1)
    b = ns.zone("bogus.example")
    bogus_crt, _ = pki.make(BOGUS)
    b.smimea(BOGUS, der(bogus_crt))
    b.tamper(BOGUS)
    w = ns.zone("wrongta.example", wrong_ta=True)
    wrong_crt, _ = pki.make(WRONGTA)
    w.smimea(WRONGTA, der(wrong_crt))
    late = ns.zone("late.example")
    late_crt, _ = pki.make(LATE)
    late.smimea(LATE, der(late_crt))
    u = ns.zone("unsigned.example", signed=False)
    unsigned_crt, _ = pki.make(UNSIGNED)
    u.smimea(UNSIGNED, der(unsigned_crt))
    ns.start()
    S["ns"] = ns
    suite.cleanups.append(ns.stop)
    domains = ", ".join('"%s"' % x.name for x in ns.zones)
    lab.extra = ('directory: { smimea: { enabled = true; stub = "%s"; '
                 'trust_anchor_file = "%s"; timeout_ms = %d; domains = [ %s ]; }; };'
                 % (ns.stub(), ns.ta, TIMEOUT_MS, domains))
    S["env"] = lab.up()
    L.enroll_users(lab, [ALICE])


@suite.case("SMIMEA certificate (DANE-EE): alice -> carol encrypted to it, carol decrypts")
def _():
    need("env")
    encrypted_to(CAROL, *S["carol"])


@suite.case("SMIMEA certificate (PKIX-EE, chain to our CA file): alice -> pkix encrypted")
def _():
    need("env")
    encrypted_to(PKIX, *S["pkix"])


@suite.case("records without a usable certificate are skipped (debug), mail signed only")
def _():
    need("env")
    signed_only(SKIPPED)
    check(log_count(r"smimea: %s: record \d skipped: usage 1 \(PKIX-EE\): self.signed"
                    % re.escape(SKIPPED)) == 1, "self-signed usage 1 record not said skipped")
    check(log_count(r"smimea: %s: record \d skipped: selector 1 matching type 1"
                    % re.escape(SKIPPED)) == 1, "selector 1 record not said skipped")


@suite.case("no record: signed only, the none cached (one lookup for two messages)")
def _():
    need("env")
    signed_only(NOBODY)
    signed_only(NOBODY)
    n = log_count(r"smimea: %s: looking up " % re.escape(NOBODY))
    check_eq(n, 1, "SMIMEA lookups for %s" % NOBODY)
    # a cached "none", not a failure kept from asking (back-off)
    check_eq(log_count(r"keystore: %s: directory:" % re.escape(NOBODY)), 0,
             "directory failure lines for %s" % NOBODY)


def never_used(rcpt):
    signed_only(rcpt)
    signed_only(rcpt)
    n = log_count(r"smimea: %s: answer for \S+ does not validate, not used" % re.escape(rcpt))
    check_eq(n, 1, "'does not validate' lines for %s" % rcpt)
    check_eq(log_count(r"smimea: %s: certificate from SMIMEA" % re.escape(rcpt)), 0,
             "certificate lines for %s" % rcpt)


@suite.case("tampered record (bogus answer): never used, logged once, signed only")
def _():
    need("env")
    never_used(BOGUS)


@suite.case("wrong trust anchor (bogus answer): never used, logged once, signed only")
def _():
    need("env")
    never_used(WRONGTA)


@suite.case("unsigned zone (insecure answer): not used, said at debug, signed only")
def _():
    need("env")
    signed_only(UNSIGNED)
    check_eq(log_count(r"smimea: %s: answer for \S+ is not DNSSEC signed, not used"
                       % re.escape(UNSIGNED)), 1, "'not DNSSEC signed' lines")
    check_eq(log_count(r"smimea: %s: certificate from SMIMEA" % re.escape(UNSIGNED)), 0,
             "certificate lines for %s" % UNSIGNED)


@suite.case("NSD stopped: mail goes signed only within the timeout, logged, then back-off")
def _():
    need("env", "ns")
    S["ns"].stop()
    _, _, _, secs = signed_only(LATE)
    check(secs < TIMEOUT_MS / 1000.0 + 10, "alice -> %s took %.1fs" % (LATE, secs))
    # in its back-off period the domain is not asked: no second timeout
    _, _, _, secs = signed_only(LATE)
    check(secs < TIMEOUT_MS / 1000.0, "second alice -> %s took %.1fs" % (LATE, secs))
    check_eq(log_count(r"smimea: %s: looking up " % re.escape(LATE)), 1,
             "SMIMEA lookups for %s (back-off)" % LATE)
    check(log_count(r"keystore: %s: directory: SMIMEA: late.example did not answer, "
                    r"not asked for \d+ ms more" % re.escape(LATE)) >= 1,
          "no back-off line for %s" % LATE)
    check(log_count(r"keystore: %s: directory: SMIMEA \S+: (no answer in %d ms|rcode)"
                    % (re.escape(LATE), TIMEOUT_MS)) >= 1,
          "no 'directory did not answer' line for %s" % LATE)
    check_eq(log_count(r"smimea: %s: certificate from SMIMEA" % re.escape(LATE)), 0,
             "certificate lines for %s" % LATE)
    pid = S["lab"].milter_pid()
    check(pid and os.path.exists("/proc/%d" % pid), "kmilter is not running")


if __name__ == "__main__":
    sys.exit(suite.run())
