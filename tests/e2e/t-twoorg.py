#!/usr/bin/python3
"""t-twoorg - two organizations that both sign start encrypting to each other
after the first message, with no administrator in between (issue 16, 5).

tests/lab up-pair: example.com (A, DIR/a) and example.net (B, DIR/b), each
with its own Postfix, kmilter, KM pair, Redis and CA, each Postfix relaying
the other's domain to the other's smtpd (from 127.0.0.2, an outside client
there), each kmilter trusting the other's CA (policy.inbound.ca_file).
alice@example.com is enrolled at A, bob@example.net at B (enroll and
signing-enroll); neither KM knows the other's user, and no `kmctl import`
runs anywhere.

1. alice writes to bob: A signs only (no certificate for bob: downgraded),
   B verifies alice's signature and harvests her published encryption
   certificate into B's KM.
2. bob replies: B signs and encrypts to alice's harvested certificate, A
   decrypts and verifies, and harvests bob's certificate.
3. alice writes again: A encrypts to bob's harvested certificate, B decrypts.
Each hop: the sender's kmilter line, the sender's Postfix relaying to the
peer's smtpd (the peer's queue id from the maillog), the receiver's kmilter
line for that queue id and the delivered message (plaintext body marker,
Authentication-Results smime=pass for the signer).  Steps 2 and 3 need
part A (publish) and part B (harvest) of issue 16.
Prints FIGURE lines: the pair's start-up time, each hop's delivery time.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq, need, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
ALICE = "alice@example.com"
BOB = "bob@example.net"
figures = []


def kmctl(env, *args):
    """kmctl of that organization's gateway: (rc, output)."""
    r = subprocess.run(shlex.split(env["LAB_KMCTL"]) + list(args),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def certs(env, addr):
    """kmctl show addr at that organization: one dict per generation
    (generation, key, source, sha256); [] when the KM knows nothing."""
    rc, out = kmctl(env, "show", addr)
    if rc != 0:
        return []
    gens = []
    for ln in out.splitlines():
        m = re.match(r"\S+ generation (\d+) state (\S+) key (\S+)", ln)
        if m:
            gens.append({"generation": m.group(1), "state": m.group(2), "key": m.group(3)})
        elif gens and re.match(r"  (source|sha256) ", ln):
            k, _, v = ln.strip().partition(" ")
            gens[-1][k] = v
    return gens


def has_cert(env, addr):
    """Does that organization's KM hold a certificate for addr."""
    return bool(certs(env, addr))


def check_harvest(src, dst, addr, qid):
    """dst's KM holds addr's encryption certificate, harvested from the
    message dst queued as qid: the one src's KM holds with its key (not the
    signing certificate), and dst's kmilter logged it for that message."""
    wait_for(lambda: has_cert(dst, addr), 10, "%s's KM has a certificate for %s" % (dst["LAB_ORG"], addr))
    own = [g for g in certs(src, addr) if g["key"] == "escrowed"]
    check_eq(len(own), 1, "%s's own generations of %s" % (src["LAB_ORG"], addr))
    got = certs(dst, addr)
    check_eq([(g.get("sha256"), g.get("source", "").split(" ")[0]) for g in got],
             [(own[0]["sha256"], "harvested")], "%s's certificates of %s (sha256, source)" % (
                 dst["LAB_ORG"], addr))
    fp = own[0]["sha256"]

    def logged():
        with open(dst["LAB_LOG"], "rb") as f:
            for ln in f:
                if re.search(rb"\b" + qid.encode() + rb": harvest: .*" + re.escape(addr.encode()), ln):
                    return ln.decode("utf-8", "replace")
        return None
    ln = wait_for(logged, 5, "%s's harvest line for %s" % (dst["LAB_ORG"], qid))
    check(fp.replace(":", "").lower() in ln.replace(":", "").lower(),
          "the harvest line does not name %s: %s" % (fp, ln))


def header(msg, name):
    head, _ = labsmtp.split_message(msg)
    m = re.search(rb"(?im)^" + name.encode() + rb":[ \t]*(.*(?:\n[ \t].*)*)", head)
    return m.group(1).decode("latin-1") if m else None


def fields(line):
    return labsmtp.parse_log_line(line) if line else {}


def hop(src, dst, sender, rcpt, subject, want_out, want_in):
    """One message from src's user to dst's: submitted at src as an
    internal client, relayed to dst, delivered there.  Checks the log line
    of each gateway (direction, action, result) and returns
    (dst message, src fields, dst fields)."""
    token = "twoorg-%s-%d" % (subject.replace(" ", "-"), os.getpid())
    raw = labsmtp.make_message(sender, [rcpt], subject,
                               "BODY-%s\r\nfrom %s to %s\r\n" % (token, sender, rcpt))
    t0 = time.time()
    qid = labsmtp.submit(src, sender, [rcpt], raw)
    line = labsmtp.wait_log_line(src, qid)
    check(line, "no kmilter line at %s for %s" % (src["LAB_ORG"], qid))
    f = fields(line)
    for k, v in want_out.items():
        check_eq(f.get(k), v, "%s at %s (%s)" % (k, src["LAB_ORG"], line))
    qid2 = labsmtp.wait_relayed(src, qid)
    path = labsmtp.wait_delivered(dst, qid2)
    took = time.time() - t0
    line2 = labsmtp.wait_log_line(dst, qid2)
    check(line2, "no kmilter line at %s for %s" % (dst["LAB_ORG"], qid2))
    f2 = fields(line2)
    for k, v in want_in.items():
        check_eq(f2.get(k), v, "%s at %s (%s)" % (k, dst["LAB_ORG"], line2))
    _, msg = labsmtp.read_delivered(path)
    check(("BODY-" + token).encode() in msg,
          "the body marker is not in the plaintext delivered at %s" % dst["LAB_ORG"])
    check(b"application/pkcs7-mime" not in msg and b"application/x-pkcs7-mime" not in msg,
          "an enveloped part was delivered at %s" % dst["LAB_ORG"])
    ar = header(msg, "Authentication-Results") or ""
    check(re.search(r"smime=pass\b.*" + re.escape(sender), ar),
          "%s's signature not reported as passing at %s: %r" % (sender, dst["LAB_ORG"], ar))
    figures.append("%s -> %s (%s): delivered in %.2f s" % (sender, rcpt, subject, took))
    return msg, qid2


def main():
    suite = Suite()
    state = {}
    base = tempfile.mkdtemp(prefix="t-twoorg.", dir="/tmp")
    os.chmod(base, 0o755)
    d = os.path.join(base, "pair")

    def cleanup():
        subprocess.run([LAB, "down", d], capture_output=True, timeout=120)
        if not os.environ.get("T_TWOORG_KEEP"):
            shutil.rmtree(base, ignore_errors=True)
    suite.cleanups.append(cleanup)

    @suite.case("pair up: example.com and example.net, each relaying to the other")
    def _():
        check(os.access(os.path.join(BUILD, "kmilter"), os.X_OK), "kmilter is not built")
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("LAB_") and not k.startswith("KMILTER_CONF")}
        e["KM_BUILD"] = BUILD
        t0 = time.time()
        r = subprocess.run([LAB, "up-pair", d], capture_output=True, text=True, env=e, timeout=180)
        took = time.time() - t0
        check(r.returncode == 0, "up-pair: rc %d: %s" % (r.returncode, r.stderr[-800:]))
        check(re.search(r"^lab: pair up in [0-9.]+s", r.stdout, re.M), "no timing line: %r" % r.stdout)
        a = labsmtp.load_env(os.path.join(d, "a"))
        b = labsmtp.load_env(os.path.join(d, "b"))
        check_eq((a["LAB_ORG"], b["LAB_ORG"]), ("example.com", "example.net"), "organizations")
        check_eq(a["LAB_PEER_SMTP_PORT"], b["LAB_SMTP_PORT"], "A's route to B")
        check_eq(b["LAB_PEER_SMTP_PORT"], a["LAB_SMTP_PORT"], "B's route to A")
        check(a["LAB_CA_CERT"] != b["LAB_CA_CERT"], "one CA for both")
        figures.append("two-organization lab up in %.2f s (tests/lab up-pair)" % took)
        state["a"], state["b"] = a, b

    @suite.case("users enrolled in their own organization only")
    def _():
        need(state, "a", "b")
        a, b = state["a"], state["b"]
        for env, user in ((a, ALICE), (b, BOB)):
            for cmd in ("enroll", "signing-enroll"):
                rc, out = kmctl(env, cmd, user)
                check(rc == 0, "kmctl %s %s at %s: %s" % (cmd, user, env["LAB_ORG"], out[-300:]))
        # Neither KM knows the other organization's user: whatever
        # certificate arrives later was harvested from the mail.
        check(not has_cert(a, BOB), "A's KM knows bob before any mail")
        check(not has_cert(b, ALICE), "B's KM knows alice before any mail")
        state["enrolled"] = True

    @suite.case("1: alice -> bob: signed only (no certificate yet), verified at B")
    def _():
        need(state, "enrolled")
        a, b = state["a"], state["b"]
        _, state["hop1"] = hop(a, b, ALICE, BOB, "first contact",
                       {"direction": "outbound", "action": "sign", "result": "downgraded"},
                       {"direction": "inbound", "action": "verify", "result": "ok"})

    @suite.case("1: B harvested alice's encryption certificate into its KM")
    def _():
        need(state, "hop1")
        check_harvest(state["a"], state["b"], ALICE, state["hop1"])

    @suite.case("2: bob -> alice: encrypted at B to alice's published certificate, decrypted at A")
    def _():
        need(state, "hop1")
        a, b = state["a"], state["b"]
        msg, qid = hop(b, a, BOB, ALICE, "reply",
                        {"direction": "outbound", "action": "sign+encrypt", "result": "ok"},
                        {"direction": "inbound", "action": "decrypt+verify", "result": "ok"})
        check(header(msg, "X-Kmilter-Decrypted"), "no X-Kmilter-Decrypted header at A")
        state["hop2"] = qid

    @suite.case("2: A harvested bob's encryption certificate into its KM")
    def _():
        need(state, "hop2")
        check_harvest(state["b"], state["a"], BOB, state["hop2"])

    @suite.case("3: alice -> bob again: encrypted at A to bob's harvested certificate, decrypted at B")
    def _():
        need(state, "hop2")
        a, b = state["a"], state["b"]
        msg, _ = hop(a, b, ALICE, BOB, "second",
                        {"direction": "outbound", "action": "sign+encrypt", "result": "ok"},
                        {"direction": "inbound", "action": "decrypt+verify", "result": "ok"})
        check(header(msg, "X-Kmilter-Decrypted"), "no X-Kmilter-Decrypted header at B")

    @suite.case("no error lines in either kmilter log")
    def _():
        need(state, "a", "b")
        for env in (state["a"], state["b"]):
            with open(env["LAB_LOG"], "rb") as fp:
                log = fp.read().decode("utf-8", "replace")
            bad = [ln for ln in log.splitlines()
                   if re.search(r"\b(error|crit|fatal|panic)\b", ln, re.I)]
            check_eq(bad, [], "error lines in %s's kmilter log" % env["LAB_ORG"])

    rc = suite.run()
    for f in figures:
        print("FIGURE " + f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
