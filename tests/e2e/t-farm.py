#!/usr/bin/python3
"""t-farm - two gateways of one organization on one KM pair and one Redis.

tests/lab up-farm (LAB_FARM_N=2, LAB_SENTINEL=1): g1 and g2, each its own
Postfix and kmilter, sharing g1's KM pair, Redis (found through Sentinels)
and seal key; cache.memory_ttl is 600 s, so an in-process entry leaves only
when an invalidation reaches it.  Every stream is accounted for per gateway
(each accepted message delivered once by that gateway, outbound never in
clear, inbound decrypted, never a 5xx).

Cases: mail spread over both gateways (figures: msgs/s and kmilter CPU per
message for one gateway alone and for two at once); `kmctl revoke` through
g1 reaches g2's in-process cache within a second (g2 logs the invalidation;
figures: median and max delay over several users) and g2 then never
decrypts with the revoked key; a certificate enrolled through g1 is used by
g2 at once (g2 had cached "no key" for that user); the Redis master
SIGKILLed under load on both: both gateways work on the new master
(figure: time from the kill to each gateway's pool having commands there,
seen with CLIENT LIST and ss -p), no 4xx, nothing lost; g1's kmilter SIGKILLed
mid-stream: g2 carries on (all its mail accepted at the first try), and what
g1 refused is sent again through g2 (a client with two MX hosts).
Env: T_FARM_N (messages per gateway per stream, default 60).
"""
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
import labsmtp  # noqa: E402
from ktest import Failure, Suite, check, skip  # noqa: E402

N = int(os.environ.get("T_FARM_N", "60"))
USERS = ["fmuser%d@example.com" % i for i in range(4)]
REVOKED = ["fmrev%d@example.com" % i for i in range(5)]
LATE = "fmlate@example.com"
CORR = ["fmcorr%d@partner.example" % i for i in range(3)]
suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


class Gateway(L.Lab):
    """One gateway of the farm: a Lab whose directory up-farm made."""
    def __init__(self, gdir, work):
        self.dir, self.work, self.top = gdir, work, None
        self.env = labsmtp.load_env(gdir)


def gw(k):
    need("farm_ok")
    return S["gw"][k]


def cpu_ticks(lb):
    """kmilter's user+system CPU time in clock ticks."""
    with open("/proc/%d/stat" % lb.milter_pid()) as fp:
        f = fp.read().rpartition(")")[2].split()
    return int(f[11]) + int(f[12])


def log_times(lb, pattern):
    """Wall-clock times (s) of kmilter's log lines matching pattern."""
    out = []
    for m in re.finditer(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) kmilter: .*" + pattern,
                         lb.log_text(), re.M):
        t = datetime.datetime.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S.%f")
        out.append(t.replace(tzinfo=datetime.timezone.utc).timestamp())
    return out


def stream(n, seed):
    msgs = []
    for i in range(n):
        k = (i + seed) % 3
        u = USERS[(i + seed) % len(USERS)]
        c = CORR[(i * 5 + seed) % len(CORR)]
        if k == 0:
            msgs.append(L.plain_msg(u, c, 3000, "outbound"))
        elif k == 1:
            msgs.append(L.inbound_msg(c, u, *S["blobs"][u]))
        else:
            msgs.append(L.plain_msg("x%d@elsewhere.example" % i, c, 2000, "pass"))
    return msgs


def settle(lb, msgs, what):
    """Retry the 4xx ones through lb, flush, account on lb: FAIL on loss,
    duplicate, wrong delivery or 5xx.  Returns the first-try statuses."""
    first = {}
    for m in msgs:
        first[m.status] = first.get(m.status, 0) + 1
    rej = [m for m in msgs if m.status == "rejected"]
    check(not rej, "%s: %d messages got a 5xx: %s" % (what, len(rej), rej[0].reply if rej else ""))
    L.resend_unaccepted(lb.env, msgs)
    lb.flush()
    a = L.account(lb, msgs, queue_wait=60)
    print("INFO %s: first try %s; %s" % (what, first, a.summary()), flush=True)
    probs = a.problems()
    check(not probs, "%s: %s" % (what, "; ".join(probs)))
    check(not a.unaccepted, "%s: %d never accepted" % (what, len(a.unaccepted)))
    return first


def send(lb, msgs, sessions=3):
    return L.send_all(lb.env, msgs, sessions=sessions)


# ------------------------------------------------------------- setup

@suite.case("farm_up")
def _():
    top = tempfile.mkdtemp(prefix="kmilter-t-farm.", dir="/tmp")
    os.chmod(top, 0o755)
    S["top"] = top
    work = os.path.join(top, "work")
    os.mkdir(work)
    os.chmod(work, 0o755)
    e = {k: v for k, v in os.environ.items()
         if not (k.startswith("LAB_") or k.startswith("KMILTER_CONF"))}
    e.update(KM_BUILD=L.BUILD, LAB_FARM_N="2", LAB_SENTINEL="1", KMILTER_VERBOSE="2",
             LAB_FARM_CACHE="memory_ttl = 600;")
    t0 = time.time()
    r = subprocess.run([L.LAB, "up-farm", os.path.join(top, "farm")], capture_output=True,
                       env=e, timeout=300)
    S["farm_dir"] = os.path.join(top, "farm")
    if r.returncode != 0:
        raise Failure("up-farm: rc %d: %s" % (r.returncode, r.stderr.decode()[-800:]))
    fe = {}
    with open(os.path.join(S["farm_dir"], "env")) as fp:
        for line in fp:
            k, sep, v = line.strip().partition("=")
            if sep and not k.startswith("#"):
                fe[k] = v.strip("'")
    S["gw"] = {k: Gateway(fe["LAB_GW%d_DIR" % k], work) for k in (1, 2)}
    print("INFO farm up in %.1fs: g1 smtp %s, g2 smtp %s" % (
        time.time() - t0, fe["LAB_GW1_SMTP_PORT"], fe["LAB_GW2_SMTP_PORT"]), flush=True)
    S["farm_ok"] = True


@suite.case("setup_users")
def _():
    g1 = gw(1)

    def one(u):
        g1.kmctl("enroll", u, "--key", "ec-p256")
        g1.kmctl("signing-enroll", u)
        p = g1.wpath(u.replace("@", "_at_") + ".crt")
        with open(p, "wb") as fp:
            fp.write(g1.kmctl("export-cert", u).stdout)
        return p
    allu = USERS + REVOKED
    certs = dict(zip(allu, L.parallel(one, allu, workers=4)))
    # Signing keys are each gateway's own (signstore, never in Redis):
    # g2 needs its own for the users who send through it.
    L.parallel(lambda u: gw(2).kmctl("signing-enroll", u), USERS, workers=4)
    pki = L.OutsidePKI(g1)
    L.import_certs(g1, pki, CORR, workers=3)
    S["certs"] = certs
    S["blobs"] = {u: L.inbound_blob(g1, certs[u], 3000, u.split("@")[0]) for u in allu}
    for k in (1, 2):
        warm = stream(9, seed=k)
        send(gw(k), warm)
        settle(gw(k), warm, "warm-up g%d" % k)
    S["setup_ok"] = True


# ------------------------------------------------------------- cases

def run_load(gws, seed):
    """N messages per gateway in gws at once; returns {k: (msgs, secs,
    cpu ticks)}."""
    out, th = {}, []
    for k in gws:
        msgs = stream(N, seed=seed + k)
        out[k] = [msgs, 0.0, cpu_ticks(gw(k))]

        def run(k=k, msgs=msgs):
            out[k][1] = send(gw(k), msgs, sessions=4)
        th.append(threading.Thread(target=run))
    for t in th:
        t.start()
    for t in th:
        t.join(300)
    for k in gws:
        out[k][2] = cpu_ticks(gw(k)) - out[k][2]
    return out


@suite.case("mail_spread_over_two_gateways")
def _():
    need("setup_ok")
    hz = os.sysconf("SC_CLK_TCK")
    for k, (msgs, _, _) in run_load([1, 2], seed=5).items():   # warm, not measured
        settle(gw(k), msgs, "spread warm g%d" % k)
    one = run_load([1], seed=10)
    two = run_load([1, 2], seed=20)
    for k, (msgs, secs, ticks) in one.items():
        settle(gw(k), msgs, "spread g%d alone" % k)
    for k, (msgs, secs, ticks) in two.items():
        settle(gw(k), msgs, "spread g%d with g%d" % (k, 3 - k))
    m1, s1, c1 = one[1]
    print("INFO one gateway: %d msgs in %.2fs = %.1f msgs/s; kmilter CPU %.1f ms/msg" % (
        len(m1), s1, len(m1) / s1, 1000.0 * c1 / hz / len(m1)), flush=True)
    for k in (1, 2):
        m, s_, c = two[k]
        print("INFO two gateways, g%d: %d msgs in %.2fs = %.1f msgs/s; kmilter CPU %.1f ms/msg" % (
            k, len(m), s_, len(m) / s_, 1000.0 * c / hz / len(m)), flush=True)
    total = sum(len(v[0]) for v in two.values()) / max(v[1] for v in two.values())
    print("INFO two gateways together: %.1f msgs/s" % total, flush=True)


@suite.case("revoke_through_g1_reaches_g2_within_a_second")
def _():
    need("setup_ok")
    g1, g2 = gw(1), gw(2)
    # g2 holds each user's keys in its in-process cache (memory_ttl 600 s)
    warm = [L.inbound_msg(CORR[0], u, *S["blobs"][u]) for u in REVOKED]
    send(g2, warm)
    settle(g2, warm, "warm g2")
    delays, cross = [], []
    for u in REVOKED:
        before1 = len(log_times(g1, rb"keystore: invalidated "))
        before = len(log_times(g2, rb"keystore: invalidated "))
        t_start = time.time()
        g1.kmctl("revoke", u)
        t_done = time.time()
        L.wait_for(lambda: len(log_times(g2, rb"keystore: invalidated ")) > before, 5,
                   "g2's invalidation line for %s" % u)
        t_g2 = log_times(g2, rb"keystore: invalidated ")[before]
        L.wait_for(lambda: len(log_times(g1, rb"keystore: invalidated ")) > before1, 5,
                   "g1's own invalidation line for %s" % u)
        t_g1 = log_times(g1, rb"keystore: invalidated ")[before1]
        delays.append(t_g2 - t_start)
        cross.append(t_g2 - t_g1)
        check(t_g2 - t_start < 1.0 + (t_done - t_start),
              "%s: g2 dropped its entry %.2fs after kmctl revoke returned" % (u, t_g2 - t_done))
    print("INFO revocation through g1 -> g2's in-process cache dropped: from the start of "
          "kmctl revoke median %.0f ms, max %.0f ms; g2's line after g1's own: median %.0f ms, "
          "max %.0f ms (%d users, log times in ms)" % (
              1000 * statistics.median(delays), 1000 * max(delays),
              1000 * statistics.median(cross), 1000 * max(cross), len(delays)), flush=True)
    # and g2 no longer decrypts with the revoked keys
    after = [L.inbound_msg(CORR[1], u, *S["blobs"][u], kind="inbound-locked") for u in REVOKED]
    send(g2, after)
    L.resend_unaccepted(g2.env, after, rounds=1)
    g2.flush()
    a = L.account(g2, [m for m in after if m.status == "accepted"], queue_wait=60)
    print("INFO after revocation, inbound to revoked users via g2: %s" % a.summary(), flush=True)
    check(not a.problems(), "; ".join(a.problems()))


@suite.case("cert_enrolled_through_g1_used_by_g2_at_once")
def _():
    need("setup_ok")
    g1, g2 = gw(1), gw(2)
    # g2 looks LATE up first and caches that there is no key
    pre = [L.inbound_msg(CORR[2], LATE, *S["blobs"][USERS[0]], kind="inbound-locked")]
    send(g2, pre, sessions=1)
    p = g1.wpath("late.crt")
    g1.kmctl("enroll", LATE, "--key", "ec-p256")
    with open(p, "wb") as fp:
        fp.write(g1.kmctl("export-cert", LATE).stdout)
    blob = L.inbound_blob(g1, p, 2000, "late")
    msgs = [L.inbound_msg(CORR[2], LATE, *blob)]
    send(g2, msgs, sessions=1)
    check(msgs[0].status == "accepted", "g2 refused mail for the new user: %s" % msgs[0].reply)
    g2.flush()
    a = L.account(g2, msgs, queue_wait=60)
    check(not a.problems(), "g2 did not decrypt with the key enrolled through g1: %s" %
          "; ".join(a.problems()))
    a = L.account(g2, [m for m in pre if m.status == "accepted"], queue_wait=30)
    check(not a.problems(), "mail for the user before enrollment: %s" % "; ".join(a.problems()))


def redis_clients_by_pid(port):
    """{pid: set of last commands} of the clients of the Redis on port, by
    the process holding each connection (ss -p)."""
    with open(gw(1).env["LAB_REDIS_PASSWORD_FILE"]) as fp:
        pw = fp.read().strip()
    cl = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "client", "list"],
                        capture_output=True, env=dict(os.environ, REDISCLI_AUTH=pw),
                        timeout=10).stdout.decode("latin-1")
    ss = subprocess.run(["ss", "-Htnp", "state", "established", "dport", "=", ":%d" % port],
                        capture_output=True, timeout=10).stdout.decode("latin-1")
    src = {}
    for m in re.finditer(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:%d\s+users:\(\(\"[^\"]*\",pid=(\d+)"
                         % port, ss):
        src[m.group(1)] = int(m.group(2))
    out = {}
    for line in cl.splitlines():
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        pid = src.get(f.get("addr", "").rpartition(":")[2])
        if pid:
            out.setdefault(pid, set()).add(f.get("cmd", ""))
    return out


def sentinel_master_port():
    e = gw(1).env
    with open(e["LAB_SENTINEL_PASSWORD_FILE"]) as fp:
        pw = fp.read().strip()
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", e["LAB_SENTINEL_PORTS"].split()[0],
                          "sentinel", "get-master-addr-by-name", e["LAB_SENTINEL_MASTER"]],
                         capture_output=True, env=dict(os.environ, REDISCLI_AUTH=pw),
                         timeout=10).stdout.split()
    return int(out[1]) if len(out) == 2 else None


@suite.case("redis_master_killed_both_gateways_follow")
def _():
    need("setup_ok")
    g1, g2 = gw(1), gw(2)
    e = g1.env
    old = sentinel_master_port()
    check(old, "the Sentinels name no master")
    new = int(e["LAB_REDIS_REPLICA_PORT"]) if old == int(e["LAB_REDIS_PORT"]) \
        else int(e["LAB_REDIS_PORT"])
    rpid = g1.recorded_pid("redis" if old == int(e["LAB_REDIS_PORT"]) else "redis-replica")
    pids = {1: g1.milter_pid(), 2: g2.milter_pid()}
    loads = {k: stream(N, seed=50 + k) for k in (1, 2)}
    stop = threading.Event()
    extra = {1: [], 2: []}

    def trickle(k):
        i = 0
        while not stop.is_set():
            m = L.plain_msg(USERS[i % len(USERS)], "t%d-%d-%s@nocert.example" % (
                k, i, L.new_token()[:6]), 1200, "signonly")
            extra[k].append(m)
            send(gw(k), [m], sessions=1)
            i += 1
    th = [threading.Thread(target=send, args=(gw(k), loads[k]), daemon=True) for k in (1, 2)]
    th += [threading.Thread(target=trickle, args=(k,), daemon=True) for k in (1, 2)]
    for t in th:
        t.start()
    L.wait_for(lambda: sum(1 for m in loads[1] if m.status) >= N // 4, 60, "the load to start")
    t0 = time.monotonic()
    os.kill(rpid, signal.SIGKILL)
    seen = {}
    pool_cmds = {"get", "set", "setex", "del", "publish"}

    def both():
        by = redis_clients_by_pid(new)
        for k, pid in pids.items():
            if k not in seen and by.get(pid, set()) & pool_cmds:
                seen[k] = time.monotonic() - t0
        return len(seen) == 2
    try:
        L.wait_for(both, 30, lambda: "both gateways on the new master %d (seen: %s)"
                   % (new, seen), step=0.02)
    finally:
        stop.set()
        for t in th:
            t.join(300)
    print("INFO Redis master %d SIGKILLed: g1 working on the new master %d after %.2fs, g2 "
          "after %.2fs" % (old, new, seen[1], seen[2]), flush=True)
    for k in (1, 2):
        first = settle(gw(k), loads[k] + extra[k], "failover g%d" % k)
        check(first.get("tempfail", 0) == 0, "g%d: %d messages got a 4xx while the master was "
              "gone" % (k, first.get("tempfail", 0)))


@suite.case("g1_killed_g2_carries_on")
def _():
    need("setup_ok")
    g1, g2 = gw(1), gw(2)
    m1, m2 = stream(N, seed=40), stream(N, seed=41)
    t1 = threading.Thread(target=send, args=(g1, m1), daemon=True)
    t2 = threading.Thread(target=send, args=(g2, m2), daemon=True)
    t1.start()
    t2.start()
    L.wait_for(lambda: sum(1 for m in m1 if m.status) >= N // 4, 60, "g1's stream to start")
    os.kill(g1.milter_pid(), signal.SIGKILL)
    t1.join(300)
    t2.join(300)
    first2 = settle(g2, m2, "g2 while g1 died")
    check(first2.get("accepted", 0) == N, "g2 did not accept all its mail at the first try: %s"
          % first2)
    refused = [m for m in m1 if m.status != "accepted"]
    accepted1 = [m for m in m1 if m.status == "accepted"]
    check(refused, "g1 refused nothing after its kmilter was killed")
    rej = [m for m in refused if m.status == "rejected"]
    check(not rej, "g1 answered 5xx: %s" % (rej[0].reply if rej else ""))
    send(g2, refused)
    settle(g2, refused, "g1's refused mail sent again through g2")
    g1.flush()
    a = L.account(g1, accepted1, queue_wait=60)
    print("INFO g1 killed after %d of %d; %d sent again through g2; g1's accepted: %s" % (
        N - len(refused), N, len(refused), a.summary()), flush=True)
    check(not a.problems(), "g1's accepted mail: %s" % "; ".join(a.problems()))


def main():
    try:
        return suite.run()
    finally:
        if "farm_dir" in S:
            subprocess.run([L.LAB, "down", S["farm_dir"]], capture_output=True, timeout=180)
        if "top" in S and not os.environ.get("T_LOAD_KEEP"):
            subprocess.run(["rm", "-rf", S["top"]])


if __name__ == "__main__":
    sys.exit(main())
