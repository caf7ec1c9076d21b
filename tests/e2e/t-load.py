#!/usr/bin/python3
"""t-load - under load, nothing lost: one lab (Postfix, kmilter, Redis, two
PyKMIP servers), ~20 enrolled internal users (kmctl enroll + signing-enroll,
RSA-2048 and EC P-256 mixed), ~10 outside correspondents whose certificates
(openssl-made, the test keeps the keys) are imported with kmctl, then
T_LOAD_N messages (default 1200) over T_LOAD_SESSIONS (default 16)
concurrent SMTP sessions, mixed:
  outbound  internal -> outside: must arrive as enveloped-data, the body
            marker never in clear (a sample is decrypted with openssl);
  inbound   outside -> internal, encrypted with openssl to the user's
            exported certificate: must arrive decrypted;
  pass      outside -> outside: body unchanged;
sizes 1 KB .. 200 KB.  Every message accepted by Postfix (queue id from the
250 reply) must be delivered exactly once in LAB_OUT (matched by a token in
Subject and Message-ID) or still be in Postfix's queue; kmilter's log line
for each says the expected direction and result=ok.  Prints FIGURE lines:
messages/s and kmilter's peak RSS (VmHWM), which must stay under
T_LOAD_RSS_MB (default 40).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import Suite, check, check_eq, skip  # noqa: E402

N = int(os.environ.get("T_LOAD_N", "1500"))
SESSIONS = int(os.environ.get("T_LOAD_SESSIONS", "16"))
NUSERS = int(os.environ.get("T_LOAD_USERS", "20"))
NOUT = int(os.environ.get("T_LOAD_OUTSIDE", "10"))
RSS_MB = int(os.environ.get("T_LOAD_RSS_MB", "40"))
SIZES = [(1024, 35), (8 * 1024, 30), (40 * 1024, 20), (200 * 1024, 15)]
MIX = [("outbound", 40), ("inbound", 35), ("pass", 25)]

suite = Suite()
S = {}


def pick(weighted, rnd):
    total = sum(w for _, w in weighted)
    x = rnd.uniform(0, total)
    for v, w in weighted:
        x -= w
        if x <= 0:
            return v
    return weighted[-1][0]


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


@suite.case("lab_up")
def _():
    lab = L.Lab("t-load", policy='inbound: { authserv_id = "mx.example.com"; };')
    S["lab"] = lab
    lab.up()
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)
    S["env"] = lab.env


@suite.case("enroll_users_and_import_correspondents")
def _():
    need("env")
    lab = S["lab"]
    t0 = time.time()
    users = ["user%02d@example.com" % i for i in range(NUSERS)]

    def one(u):
        key = "ec-p256" if int(u[4:6]) % 2 else "rsa2048"
        lab.kmctl("enroll", u, "--key", key)
        lab.kmctl("signing-enroll", u)
        p = lab.wpath(u.replace("@", "_at_") + ".crt")
        with open(p, "wb") as fp:
            fp.write(lab.kmctl("export-cert", u).stdout)
        return p
    certs = dict(zip(users, L.parallel(one, users, workers=6)))
    pki = L.OutsidePKI(lab)
    outs = ["corr%02d@partner.example" % i for i in range(NOUT)]
    corr = L.import_certs(lab, pki, outs, workers=6)
    S.update(users=users, certs=certs, outs=outs, corr=corr)
    print("INFO enrolled %d users, imported %d certificates in %.1fs" %
          (len(users), len(outs), time.time() - t0), flush=True)


@suite.case("build_messages")
def _():
    need("users")
    lab = S["lab"]
    rnd = random.Random(int(os.environ.get("T_LOAD_SEED", "1")))
    t0 = time.time()
    # Inbound bodies: one encrypted entity per (user, size), reused under
    # different outer headers (the token is in the header).
    blob_jobs = [(u, sz) for u in S["users"] for sz, _ in SIZES]

    def mkblob(job):
        u, sz = job
        return L.inbound_blob(lab, S["certs"][u], sz, "%s-%d" % (u.split("@")[0], sz))
    blobs = dict(zip(blob_jobs, L.parallel(mkblob, blob_jobs, workers=4)))
    msgs = []
    for _ in range(N):
        kind = pick(MIX, rnd)
        size = pick(SIZES, rnd)
        if kind == "outbound":
            msgs.append(L.plain_msg(rnd.choice(S["users"]), rnd.choice(S["outs"]), size, kind))
        elif kind == "inbound":
            u = rnd.choice(S["users"])
            blob, marker = blobs[(u, size)]
            msgs.append(L.inbound_msg(rnd.choice(S["outs"]), u, blob, marker))
        else:
            msgs.append(L.plain_msg("someone%d@elsewhere.example" % rnd.randrange(50),
                                    rnd.choice(S["outs"]), size, kind))
    S["msgs"] = msgs
    counts = {k: sum(1 for m in msgs if m.kind == k) for k, _ in MIX}
    print("INFO %d messages (%s), %.1f MB, built in %.1fs" % (
        len(msgs), ", ".join("%s=%d" % kv for kv in counts.items()),
        sum(m.size for m in msgs) / 1e6, time.time() - t0), flush=True)


@suite.case("send_under_load")
def _():
    need("msgs")
    lab, msgs = S["lab"], S["msgs"]
    before = lab.stats()
    secs = L.send_all(lab.env, msgs, sessions=SESSIONS)
    S["send_secs"] = secs
    st = {}
    for m in msgs:
        st[m.status] = st.get(m.status, 0) + 1
    print("INFO sent %d messages over %d sessions in %.1fs: %s" % (
        len(msgs), SESSIONS, secs, st), flush=True)
    print("FIGURE t-load submit rate: %.1f messages/s (%d messages, %d sessions, %.1f MB)" % (
        len(msgs) / secs, len(msgs), SESSIONS, sum(m.size for m in msgs) / 1e6), flush=True)
    S["before"] = before
    bad = [m for m in msgs if m.status != "accepted"]
    check(not bad, "%d messages not accepted, e.g. %s: %s" % (
        len(bad), bad[0].token if bad else "", bad[0].reply if bad else ""))


@suite.case("every_message_accounted_for")
def _():
    need("send_secs")
    lab, msgs = S["lab"], S["msgs"]
    t0 = time.time()
    a = L.account(lab, msgs, queue_wait=180)
    drain = time.time() - t0
    S["account"] = a
    total = S["send_secs"] + drain
    print("INFO %s (queue drained %.1fs after the last submission)" % (a.summary(), drain))
    print("FIGURE t-load end-to-end rate: %.1f messages/s (%d delivered in %.1fs)" % (
        a.delivered / total, a.delivered, total), flush=True)
    probs = a.problems()
    check(not probs, "; ".join(probs))
    check_eq(a.accepted, a.delivered + a.queued, "accepted vs delivered+queued")


@suite.case("outbound_never_plaintext_inbound_decrypted_pass_unchanged")
def _():
    need("account")
    a = S["account"]
    # check_delivery did the per-message work; here the totals per kind
    for kind in ("outbound", "inbound", "pass"):
        check(a.by_kind.get(kind, 0) > 0, "no %s message was accepted" % kind)
    check(not a.bad, "; ".join(a.bad[:5]))


@suite.case("sample_of_outbound_decrypts_for_the_recipient")
def _():
    need("account")
    lab = S["lab"]
    found = L.scan_out(lab.env)
    sample = [m for m in S["msgs"] if m.kind == "outbound" and m.token in found][:6]
    check(sample, "no outbound delivery to sample")
    for m in sample:
        _, msg = L.labsmtp.read_delivered(found[m.token][0])
        f = lab.wpath("sample.eml")
        with open(f, "wb") as fp:
            fp.write(msg)
        crt, key = S["corr"][m.rcpts[0]]
        r = L.run(["openssl", "cms", "-decrypt", "-recip", crt, "-inkey", key, "-in", f], ok=False)
        check(r.returncode == 0, "%s: %s cannot decrypt: %s" % (
            m.token, m.rcpts[0], r.stderr[-200:].decode("utf-8", "replace")))
        check(m.marker.encode() in r.stdout, "%s: decrypted content lacks the body marker" % m.token)


@suite.case("kmilter_log_line_per_message")
def _():
    need("account")
    lab = S["lab"]
    acc = [m for m in S["msgs"] if m.status == "accepted"]
    lines = L.log_lines_for(lab, [m.qid for m in acc])
    missing = [m for m in acc if m.qid not in lines]
    check(not missing, "%d accepted messages have no kmilter log line, e.g. %s" % (
        len(missing), missing[0].qid if missing else ""))
    wrong = []
    for m in acc:
        f = lines[m.qid]
        want = "inbound" if m.kind.startswith("inbound") else m.kind
        if f.get("direction") != want or f.get("result") != "ok":
            wrong.append("%s %s: %s" % (m.qid, m.kind, f))
    check(not wrong, "%d log lines disagree: %s" % (len(wrong), "; ".join(wrong[:3])))
    ms = sorted(int(lines[m.qid].get("ms", 0)) for m in acc)
    print("FIGURE t-load kmilter time per message: p50 %d ms, p90 %d ms, p99 %d ms" % (
        ms[len(ms) // 2], ms[len(ms) * 9 // 10], ms[min(len(ms) - 1, len(ms) * 99 // 100)]))
    st = lab.stats()
    b = S["before"]
    for k in ("outbound", "inbound", "pass"):
        got = st.get(k, 0) - b.get(k, 0)
        want = S["account"].by_kind.get(k, 0)
        check(got >= want, "kmctl stats %s grew by %d, want >= %d" % (k, got, want))
    print("INFO kmctl stats: %s" % " ".join("%s=%d" % kv for kv in sorted(st.items())))


@suite.case("kmctl_stats_answers_every_time")
def _():
    """kmctl stats is how ops read the counters: it must answer every time."""
    need("env")
    lab = S["lab"]
    fails = []
    for _ in range(30):
        r = lab.kmctl("stats", ok=False)
        if r.returncode != 0 or b"outbound=" not in r.stdout:
            fails.append("rc %d %s" % (r.returncode, r.stderr.decode("utf-8", "replace").strip()))
    check(not fails, "%d of 30 'kmctl stats' failed, e.g. %s" % (len(fails), fails[0] if fails else ""))


@suite.case("kmilter_alive_and_peak_rss")
def _():
    need("env")
    lab = S["lab"]
    pid = lab.milter_pid()
    check(pid and L.pid_alive(pid), "kmilter (pid %s) is not running" % pid)
    hwm = L.peak_rss_kb(lab)
    rss = L.proc_status(pid, "VmRSS")
    check(hwm is not None, "no VmHWM for kmilter (pid %s): peak RSS unknown" % pid)
    print("FIGURE t-load kmilter peak RSS (VmHWM): %.1f MB (VmRSS now %.1f MB)" % (
        hwm / 1024.0, (rss or 0) / 1024.0))
    # Measured 21.2 and 21.9 MB with the defaults (1500 messages, 16
    # sessions, 1-200 KB each).  The bound, 40 MB (T_LOAD_RSS_MB), leaves
    # room for all 16 sessions holding a 200 KB body at once in several
    # copies (spool, signed, encrypted, base64: 16 x 200 KB x 4 = 13 MB)
    # plus allocator slack, and still fails on a leak of about 12 KB a
    # message (18 MB over 1500) or on bodies kept past their message.
    check(hwm < RSS_MB * 1024, "kmilter peak RSS %.1f MB >= bound %d MB" % (hwm / 1024.0, RSS_MB))


def main():
    try:
        return suite.run()
    finally:
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
