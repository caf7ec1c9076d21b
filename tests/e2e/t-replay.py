#!/usr/bin/python3
"""t-replay - a Redis entry saved before kmctl revoke and written back
afterwards is refused (issue 12, item 9).

The attacker has Redis access: it saves the sealed entries while alice's
keys and the outside correspondent dave's certificate are cached, lets the
administrator run `kmctl revoke` on both, and writes the saved entries back
under their names (DUMP, then RESTORE ... REPLACE with the TTL they had
left).  The seal still opens them (same names, same gateway key); only the
revocation counter inside them is out of date.  Then, through the real lab
(Postfix, kmilter, Redis, two PyKMIP servers):
  - inbound mail encrypted to alice's revoked key is NOT decrypted: it is
    delivered as sent, and the log names the stale/replayed key entry;
  - outbound mail from bob to dave is NOT encrypted to dave's revoked
    certificate (sent signed only, as policy.outbound.missing_cert says for
    a certificate the KM no longer has); the log names the stale
    certificate entry.
kmilter is restarted after the revocation so that its in-process cache
(dropped by the invalidation message anyway, see t-keystore) cannot answer:
every lookup goes through the replayed Redis entries.
"""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
import labsmtp  # noqa: E402
from ktest import Failure, Suite, check, check_eq, skip  # noqa: E402

ALICE, BOB, DAVE = "alice@example.com", "bob@example.com", "dave@partner.example"

suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


class Redis:
    """A minimal binary-safe RESP client over the lab's unix socket."""

    def __init__(self, env):
        with open(env["LAB_REDIS_PASSWORD_FILE"]) as fp:
            pw = fp.read().strip()
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(env["LAB_REDIS"])
        self.f = self.s.makefile("rb")
        self.cmd("AUTH", pw)

    def close(self):
        self.f.close()
        self.s.close()

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self._reply()

    def _reply(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise Failure("redis: short reply %r" % line)
        t, v = line[:1], line[1:-2]
        if t == b"+":
            return v
        if t == b"-":
            raise Failure("redis: %s" % v.decode("latin-1"))
        if t == b":":
            return int(v)
        if t == b"$":
            n = int(v)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            return [self._reply() for _ in range(int(v))]
        raise Failure("redis: bad reply %r" % line)


def deliver(sender, rcpts, raw):
    env = S["env"]
    qid = labsmtp.submit(env, sender, list(rcpts), raw)
    p = labsmtp.wait_delivered(env, qid, timeout=30)
    _, msg = labsmtp.read_delivered(p)
    return qid, msg, labsmtp.wait_log_line(env, qid, timeout=10) or ""


def inbound(tag):
    lab = S["lab"]
    ent = ("Content-Type: text/plain; charset=us-ascii\r\n\r\nINNER-%s\r\n" % tag).encode()
    blob = L.encrypt_entity(lab, ent, [S["alice_crt"]], "in-" + tag)
    hdr = ("From: <%s>\r\nTo: <%s>\r\nSubject: replay %s\r\n"
           "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s.%s@outside.example>\r\n"
           % (DAVE, ALICE, tag, tag, os.getpid()))
    return hdr.encode() + blob, "INNER-%s" % tag


def outbound(tag):
    return labsmtp.make_message(BOB, [DAVE], "replay %s" % tag, "BODY-%s\r\n" % tag)


def dave_can_decrypt(msg):
    """Does dave's (revoked) key open this enveloped message?"""
    lab = S["lab"]
    p = lab.wpath("out.eml")
    with open(p, "wb") as fp:
        fp.write(msg)
    crt, key = S["dave"]
    r = L.run(["openssl", "cms", "-decrypt", "-in", p, "-recip", crt, "-inkey", key],
              ok=False)
    return r.returncode == 0


def log_since(n0):
    return S["lab"].log_text()[n0:].decode("utf-8", "replace")


@suite.case("lab_up")
def _():
    lab = L.Lab("t-replay")
    S["lab"] = lab
    lab.up()
    S["env"] = lab.env
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)


@suite.case("enroll_and_warm_the_cache")
def _():
    need("env")
    lab = S["lab"]
    lab.kmctl("enroll", ALICE)
    lab.kmctl("enroll", BOB)
    lab.kmctl("signing-enroll", BOB)
    pki = L.OutsidePKI(lab)
    S["dave"] = pki.make(DAVE)
    lab.kmctl("import", DAVE, S["dave"][0])
    S["alice_crt"] = lab.wpath("alice.crt")
    with open(S["alice_crt"], "wb") as fp:
        fp.write(lab.kmctl("export-cert", ALICE).stdout)
    # inbound to alice is decrypted, outbound to dave encrypted to him
    raw, marker = inbound("warm")
    qid, msg, line = deliver(DAVE, [ALICE], raw)
    check(marker.encode() in msg and not L.is_enveloped(msg),
          "warm-up inbound to alice not decrypted: %s" % line)
    qid, msg, line = deliver(BOB, [DAVE], outbound("warm"))
    check(L.is_enveloped(msg) and dave_can_decrypt(msg),
          "warm-up outbound to dave not encrypted to him: %s" % line)
    S["warm"] = True


@suite.case("save_entries_revoke_and_replay")
def _():
    need("warm")
    lab = S["lab"]
    r = Redis(S["env"])
    try:
        keys = [k for k in r.cmd("KEYS", "km:*")]
        check(len(keys) >= 2, "Redis holds %d km: entries after the warm-up" % len(keys))
        saved = {}
        for k in keys:
            pttl = r.cmd("PTTL", k)
            if pttl > 0:
                saved[k] = (r.cmd("DUMP", k), pttl)
        out = lab.kmctl("revoke", ALICE).stdout.decode()
        check("revoked" in out, "kmctl revoke %s: %s" % (ALICE, out))
        out = lab.kmctl("revoke", DAVE).stdout.decode()
        check("revoked" in out, "kmctl revoke %s: %s" % (DAVE, out))
        gone = [k for k in saved if r.cmd("EXISTS", k) == 0]
        check(gone, "kmctl revoke deleted none of the saved entries")
        # a fresh kmilter: nothing in its memory, so only Redis can answer
        lab.restart_milter()
        for k, (dump, pttl) in saved.items():
            check_eq(r.cmd("RESTORE", k, pttl, dump, "REPLACE"), b"OK", "RESTORE")
        S["replayed"] = set(k.decode() for k in saved)
        print("INFO saved %d entries, %d deleted by kmctl revoke, all %d written back"
              % (len(saved), len(gone), len(saved)), flush=True)
    finally:
        r.close()


@suite.case("inbound_to_revoked_key_not_decrypted")
def _():
    need("replayed")
    n0 = len(S["lab"].log_text())
    raw, marker = inbound("after")
    qid, msg, line = deliver(DAVE, [ALICE], raw)
    log = log_since(n0)
    check(marker.encode() not in msg, "decrypted with alice's revoked key from a replayed "
          "Redis entry: %s" % line)
    check(L.is_enveloped(msg), "not delivered as sent (still encrypted): %s" % line)
    _, body = labsmtp.split_message(msg)
    _, sent = labsmtp.split_message(raw)
    check(labsmtp.lf(body).strip() == labsmtp.lf(sent).strip(), "body changed")
    check(re.search(r"\breason=", line), "the message's log line does not say why: %s" % line)
    m = re.search(r"stale or replayed enckey entry (km:[0-9a-f]{64})", log)
    check(m, "no log line names the stale/replayed key entry: %s" % log[-1500:])
    check(m.group(1) in S["replayed"], "logged entry %s is not one written back" % m.group(1))


@suite.case("outbound_to_revoked_cert_not_encrypted_to_it")
def _():
    need("replayed")
    n0 = len(S["lab"].log_text())
    qid, msg, line = deliver(BOB, [DAVE], outbound("after"))
    log = log_since(n0)
    check(not (L.is_enveloped(msg) and dave_can_decrypt(msg)),
          "encrypted to dave's revoked certificate from a replayed Redis entry: %s" % line)
    check(not L.is_enveloped(msg), "outbound to dave is encrypted (to whom?): %s" % line)
    # what a certificate the KM no longer has gives (missing_cert sign-only)
    check_eq(labsmtp.parse_log_line(line).get("action"), "sign", "action (%s)" % line)
    m = re.search(r"stale or replayed cert entry (km:[0-9a-f]{64})", log)
    check(m, "no log line names the stale/replayed certificate entry: %s" % log[-1500:])
    check(m.group(1) in S["replayed"], "logged entry %s is not one written back" % m.group(1))


def main():
    try:
        return suite.run()
    finally:
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
