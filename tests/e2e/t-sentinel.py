#!/usr/bin/python3
"""t-sentinel - kmilter on a Redis set run by Sentinels: failover, lies.

One lab with LAB_SENTINEL=1 (tests/lablib/sentinel.sh: the lab's Redis is
the master, a replica and three redis-sentinel processes, down-after 1 s).
kmilter's cache.redis.sentinels lists a fake Sentinel first (served by this
test; what it names is set per case), then the three real ones; memory_ttl
is 1 s so warm entries come from Redis.  Every stream of mail is accounted
for as in t-faults (each accepted message delivered once, outbound never in
clear, inbound decrypted, never a 5xx; a 4xx is sent again, as a client
does).

Bad input, each on a freshly started kmilter (so that it asks the fake
first): the fake names the replica (kmilter checks ROLE and goes on to the
next Sentinel; the replica gets no command from kmilter); it names an
address where nothing listens; it names a fake Redis that says ROLE master
but answers every write READONLY (kmilter asks again and ends on the real
master, and does not go back to the fake within the stream).
SENTINEL FAILOVER with no mail flowing: the old master stays up, so only
the +switch-master event can move kmilter, which it does, and writes go to
the new master.
Failover: the master SIGKILLed mid-stream (the replica is promoted; kmilter
logs the move and writes to the new master; figures: time from the kill to
kmilter's move line and to its first write there); the old master restarted
comes back as a replica and gets no command from kmilter; SIGSTOP of the
master (a partition): the Sentinels promote the other, kmilter follows,
SIGCONT and it is a replica again.
Env: T_SENTINEL_N (messages per stream, default 60).
"""
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import Suite, check, skip  # noqa: E402

N = int(os.environ.get("T_SENTINEL_N", "60"))
FOLLOW_BOUND = 10.0        # s from the kill to kmilter on the new master
USERS = ["suser%d@example.com" % i for i in range(3)]
CORR = ["scorr%d@partner.example" % i for i in range(3)]
WRITES = ("set", "setex", "del", "publish")
suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


# ------------------------------------------------- a fake Sentinel and Redis

def resp(v):
    """RESP encoding of None (nil), str (bulk), int, list, or an error/status
    given as bytes starting with - or +."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, bytes):
        return v + b"\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, list):
        return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)
    b = v.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def read_cmd(f):
    """One command (an array of bulk strings) from a client, or None."""
    line = f.readline()
    if not line.startswith(b"*"):
        return None
    args = []
    for _ in range(int(line[1:])):
        n = int(f.readline()[1:])
        args.append(f.read(n + 2)[:-2].decode("latin-1"))
    return args


class Fake:
    """What the fake Sentinel names (None: it does not know the master),
    and the fake Redis's counts of writes."""
    names = None
    writes = 0


class FakeSentinel(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            a = read_cmd(self.rfile)
            if a is None:
                return
            c = a[0].lower()
            if c == "auth":
                out = b"+OK"
            elif c == "sentinel" and len(a) == 3 and a[1].lower() == "get-master-addr-by-name":
                out = None if Fake.names is None else ["127.0.0.1", str(Fake.names)]
            elif c == "subscribe" and Fake.names is None:
                out = b"-ERR this fake takes no subscriptions now"
            elif c == "subscribe":
                out = ["subscribe", a[1], 1]
            elif c == "ping":
                out = b"+PONG"
            else:
                out = b"-ERR unknown command"
            self.wfile.write(resp(out))


class FakeRedis(socketserver.StreamRequestHandler):
    """Says it is a master, answers reads nil and writes READONLY."""
    def handle(self):
        while True:
            a = read_cmd(self.rfile)
            if a is None:
                return
            c = a[0].lower()
            if c in ("auth", "select", "ping"):
                out = b"+OK"
            elif c == "role":
                out = ["master", 0, []]
            elif c == "get":
                out = None
            elif c in WRITES:
                Fake.writes += 1
                out = b"-READONLY You can't write against a read only replica."
            else:
                out = b"-ERR unknown command"
            self.wfile.write(resp(out))


def serve(handler):
    class Srv(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
    srv = Srv(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ------------------------------------------------------------- helpers

def lab():
    need("lab_ok")
    return S["lab"]


def rcli(port, *args):
    """redis-cli to the Redis (or Sentinel, sentinel=True) on port."""
    with open(S["env"]["LAB_REDIS_PASSWORD_FILE"]) as fp:
        pw = fp.read().strip()
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + list(args),
                       capture_output=True, env=dict(os.environ, REDISCLI_AUTH=pw), timeout=10)
    return r.stdout.decode("latin-1")


def scli(*args):
    """redis-cli to the first real Sentinel."""
    with open(S["env"]["LAB_SENTINEL_PASSWORD_FILE"]) as fp:
        pw = fp.read().strip()
    port = S["env"]["LAB_SENTINEL_PORTS"].split()[0]
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port] + list(args),
                       capture_output=True, env=dict(os.environ, REDISCLI_AUTH=pw), timeout=10)
    return r.stdout.decode("latin-1")


def sentinel_master_port():
    out = scli("sentinel", "get-master-addr-by-name", "kmilter").split()
    return int(out[1]) if len(out) == 2 else None


def role(port):
    out = rcli(port, "role").split()
    return out[0] if out else None


def kmilter_clients(port):
    """Clients of the Redis on port whose last command is one kmilter's
    pool or subscriber sends; the Sentinels' own connections (named
    sentinel-...) subscribe and publish too, and a replica's link to its
    master (flags M or S) runs SET: they are not counted."""
    n = 0
    for line in rcli(port, "client", "list").splitlines():
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if f.get("name", "").startswith("sentinel") or \
                set(f.get("flags", "")) & set("MS"):
            continue        # a Sentinel's, or the replication link
        if f.get("cmd", "") in ("get", "set", "setex", "del", "subscribe", "publish"):
            n += 1
    return n


def set_calls(port):
    m = re.search(r"cmdstat_set:calls=(\d+)", rcli(port, "info", "commandstats"))
    return int(m.group(1)) if m else 0


def count_log(pattern):
    return len(re.findall(pattern, S["lab"].log_text()))


def log_since(mark):
    return S["lab"].log_text()[mark:]


def stream(n, seed):
    """n mixed messages: outbound, inbound, pass, and sign-only mail to
    addresses never seen (each a Redis write: a "no certificate" entry)."""
    msgs = []
    for i in range(n):
        k = (i + seed) % 4
        u = USERS[(i + seed) % len(USERS)]
        c = CORR[(i * 7 + seed) % len(CORR)]
        if k == 0:
            msgs.append(L.plain_msg(u, c, 2000, "outbound"))
        elif k == 1:
            msgs.append(L.inbound_msg(c, u, *S["blobs"][u]))
        elif k == 2:
            msgs.append(L.plain_msg("x%d@elsewhere.example" % i, c, 1500, "pass"))
        else:
            msgs.append(L.plain_msg(u, "new%d-%d-%s@nocert.example" % (seed, i, L.new_token()[:6]),
                                    1500, "signonly"))
    return msgs


def settle(msgs, what):
    """Retry the 4xx ones, flush, account: FAIL on any loss, duplicate,
    wrong delivery (outbound in clear, inbound not decrypted) or 5xx."""
    first = {}
    for m in msgs:
        first[m.status] = first.get(m.status, 0) + 1
    rej = [m for m in msgs if m.status == "rejected"]
    check(not rej, "%s: %d messages got a 5xx: %s" % (what, len(rej), rej[0].reply if rej else ""))
    retried = L.resend_unaccepted(S["env"], msgs)
    S["lab"].flush()
    a = L.account(S["lab"], msgs, queue_wait=60)
    print("INFO %s: first try %s; retried %d; %s" % (what, first, retried, a.summary()), flush=True)
    probs = a.problems()
    check(not probs, "%s: %s" % (what, "; ".join(probs)))
    check(not a.unaccepted, "%s: %d never accepted: %s" % (
        what, len(a.unaccepted), a.unaccepted[0].reply if a.unaccepted else ""))
    return first


def restart_fresh(names):
    """kmilter restarted with the fake Sentinel naming `names`: it asks the
    fake first.  Returns the log offset of the restart."""
    Fake.names = names
    mark = len(S["lab"].log_text())
    S["lab"].restart_milter()
    return mark


# ------------------------------------------------------------- setup

@suite.case("lab_up")
def _():
    fs = serve(FakeSentinel)
    fr = serve(FakeRedis)
    S["fake_sentinel"] = fs.server_address[1]
    S["fake_redis"] = fr.server_address[1]
    lb = L.Lab("t-sentinel")
    S["lab"] = lb
    lb.extra = (
        'cache: { memory_ttl = 1; redis: {\n'
        '  sentinels = [ "127.0.0.1:%d", @LAB_SENTINELS@ ];\n'
        '  sentinel_master = "@LAB_SENTINEL_MASTER@";\n'
        '  sentinel_password_file = "@LAB_SENTINEL_PASSWORD_FILE@";\n'
        '  password_file = "@LAB_REDIS_PASSWORD_FILE@"; }; };' % S["fake_sentinel"])
    lb.env_extra = {"LAB_CACHE": "0", "LAB_SENTINEL": "1"}
    lb.up()
    S["env"] = lb.env
    S["master"] = int(lb.env["LAB_REDIS_PORT"])
    S["replica"] = int(lb.env["LAB_REDIS_REPLICA_PORT"])
    check(sentinel_master_port() == S["master"], "the Sentinels do not name the lab's Redis")
    print("INFO lab up in %.1fs: %s; master %d, replica %d, Sentinels %s, fake %d" % (
        lb.up_secs, lb.dir, S["master"], S["replica"], lb.env["LAB_SENTINEL_PORTS"],
        S["fake_sentinel"]), flush=True)
    S["lab_ok"] = True


@suite.case("setup_users_and_warm")
def _():
    lb = lab()

    def one(u):
        lb.kmctl("enroll", u, "--key", "ec-p256")
        lb.kmctl("signing-enroll", u)
        p = lb.wpath(u.replace("@", "_at_") + ".crt")
        with open(p, "wb") as fp:
            fp.write(lb.kmctl("export-cert", u).stdout)
        return p
    certs = dict(zip(USERS, L.parallel(one, USERS, workers=3)))
    pki = L.OutsidePKI(lb)
    L.import_certs(lb, pki, CORR, workers=3)
    S["blobs"] = {u: L.inbound_blob(lb, certs[u], 3000, u.split("@")[0]) for u in USERS}
    warm = stream(12, seed=0)
    L.send_all(S["env"], warm, sessions=3)
    settle(warm, "warm-up")
    L.wait_for(lambda: count_log(rb"sentinel: master kmilter is (now )?at 127\.0\.0\.1:%d "
                                 % S["master"]), 5, "kmilter's line naming the master")
    check(set_calls(S["master"]) > 0, "kmilter wrote nothing to the master")
    S["setup_ok"] = True


# ------------------------------------------------------------- bad input

def lying_case(port, what, reason):
    mark = restart_fresh(port)
    msgs = stream(N // 2, seed=port % 97)
    L.send_all(S["env"], msgs, sessions=3)
    first = settle(msgs, what)
    text = log_since(mark)
    pat = (r"sentinel: 127\.0\.0\.1:%d is not usable as master kmilter \(%s" % (
        port, reason)).encode()
    check(re.search(pat, text), "%s: no line saying %d is not usable (%s)" % (what, port, reason))
    check(re.search(rb"sentinel: master kmilter is (now )?at 127\.0\.0\.1:%d " % S["master"], text),
          "%s: kmilter did not go on to the real master" % what)
    check(first.get("tempfail", 0) == 0, "%s: %d messages got a 4xx" % (what, first.get("tempfail", 0)))
    print("INFO %s: %s" % (what, [x.decode() for x in text.splitlines() if b"sentinel" in x][:3]))


@suite.case("lying_sentinel_names_the_replica")
def _():
    need("setup_ok")
    base = set_calls(S["master"])
    lying_case(S["replica"], "replica-lie", "ROLE says slave")
    check(kmilter_clients(S["replica"]) == 0, "kmilter sent commands to the replica: %s" %
          rcli(S["replica"], "client", "list"))
    check(set_calls(S["master"]) > base, "no write reached the master")


@suite.case("lying_sentinel_names_a_dead_address")
def _():
    need("setup_ok")
    dead = free_port()
    base = set_calls(S["master"])
    lying_case(dead, "dead-lie", "connect")
    check(set_calls(S["master"]) > base, "no write reached the master")


@suite.case("master_that_answers_readonly")
def _():
    need("setup_ok")
    Fake.writes = 0
    base = set_calls(S["master"])
    mark = restart_fresh(S["fake_redis"])
    msgs = stream(N // 2, seed=5)
    L.send_all(S["env"], msgs, sessions=3)
    settle(msgs, "readonly")
    text = log_since(mark)
    check(Fake.writes >= 1, "kmilter never wrote to the READONLY Redis (the case did not happen)")
    check(re.search(rb"sentinel: 127\.0\.0\.1:%d is not usable as master kmilter \(it answered "
                    rb"READONLY" % S["fake_redis"], text), "no line for the READONLY answer")
    check(set_calls(S["master"]) > base, "no write reached the real master after READONLY")
    check(Fake.writes <= 2, "kmilter went back to the READONLY Redis: %d writes" % Fake.writes)
    Fake.names = None


# ------------------------------------------------------------- failover

@suite.case("switch_master_event_followed_without_traffic")
def _():
    # SENTINEL FAILOVER with no mail: the old master stays up (a replica
    # now), so only the +switch-master event can tell kmilter.
    need("setup_ok")
    lb = lab()
    mark = restart_fresh(None)      # the fake refuses subscriptions
    ports = "|".join(lb.env["LAB_SENTINEL_PORTS"].split()).encode()
    L.wait_for(lambda: re.search(rb"sentinel: watching \+switch-master on 127\.0\.0\.1:(%s)$"
                                 % ports, log_since(mark), re.M), 10,
               "kmilter watching a real Sentinel")
    L.wait_for(lambda: re.search(rb"master kmilter is at ", log_since(mark)), 10,
               "kmilter knowing the master")
    old = sentinel_master_port()
    new = S["replica"] if old == S["master"] else S["master"]
    t0 = time.monotonic()
    out = scli("sentinel", "failover", "kmilter")
    check(out.strip() == "OK", "SENTINEL FAILOVER: %r" % out)
    pat = rb"master kmilter is now at 127\.0\.0\.1:%d \(was 127\.0\.0\.1:%d; \+switch-master\)" % (
        new, old)
    L.wait_for(lambda: re.search(pat, log_since(mark)), 20,
               "kmilter following +switch-master to %d" % new)
    print("INFO SENTINEL FAILOVER %d -> %d: kmilter followed the event after %.2fs" % (
        old, new, time.monotonic() - t0), flush=True)
    L.wait_for(lambda: role(old) == "slave", 30, "the old master %d turned replica" % old)
    base = set_calls(new)
    msgs = stream(N // 3, seed=31)
    L.send_all(S["env"], msgs, sessions=3)
    first = settle(msgs, "after SENTINEL FAILOVER")
    check(first.get("tempfail", 0) == 0, "%d messages got a 4xx" % first.get("tempfail", 0))
    # a cache write is best effort: one lost in the switch (seen once in a
    # full run) is not a failure to follow; a kmilter that never follows
    # writes nothing to the new master however many batches it gets
    for attempt in range(1, 3):
        if set_calls(new) > base:
            break
        print("INFO no write on the new master after batch %d: one more batch" % attempt,
              flush=True)
        more = stream(8, seed=40 + attempt)
        L.send_all(S["env"], more, sessions=1)
        settle(more, "after SENTINEL FAILOVER, batch %d" % (attempt + 1))
    check(set_calls(new) > base, "no write reached the new master %d" % new)
    check(kmilter_clients(old) == 0, "kmilter still talks to the old master %d" % old)


def trickle(seed, stop):
    """Sign-only messages to new addresses (each a Redis write), one at a
    time until stop is set; returns the list, filled as they go."""
    out = []

    def run():
        i = 0
        while not stop.is_set():
            m = L.plain_msg(USERS[i % len(USERS)], "t%d-%d-%s@nocert.example" % (
                seed, i, L.new_token()[:6]), 1200, "signonly")
            out.append(m)
            L.send_all(S["env"], [m], sessions=1)
            i += 1
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return out, th


def failover(stop_master, what):
    """Stop the current master with stop_master(pid) mid-stream (and a
    trickle of Redis writes); returns (old port, new port, seconds to
    kmilter's move line, to its first write there, messages, the stopped
    one's name and pid)."""
    lb = lab()
    old = sentinel_master_port()
    new = S["replica"] if old == S["master"] else S["master"]
    name = "redis" if old == S["master"] else "redis-replica"
    pid = lb.recorded_pid(name)
    check(pid and L.pid_alive(pid), "no running %s recorded" % name)
    msgs = stream(N, seed=11 + len(what))
    t = threading.Thread(target=L.send_all, args=(S["env"], msgs), kwargs={"sessions": 3},
                         daemon=True)
    t.start()
    stop = threading.Event()
    extra, th = trickle(len(what), stop)
    L.wait_for(lambda: sum(1 for m in msgs if m.status) >= N // 4, 60, "the stream to start")
    mark = len(lb.log_text())
    t0 = time.monotonic()
    stop_master(pid)
    base = set_calls(new)
    pat = rb"sentinel: master kmilter is now at 127\.0\.0\.1:%d " % new
    L.wait_for(lambda: re.search(pat, log_since(mark)), 30, "kmilter's move to %d" % new)
    t_move = time.monotonic() - t0
    S["mark"] = mark
    try:
        L.wait_for(lambda: set_calls(new) > base, 30,
                   "a write of kmilter on the new master %d" % new)
        t_write = time.monotonic() - t0
    finally:
        stop.set()
        th.join(120)
        t.join(300)
    return old, new, t_move, t_write, msgs + extra, name, pid


def outage_logged_once(what):
    """While no master was known kmilter said so once per connection user
    (the pool, the subscriber), and said when it was back."""
    text = log_since(S["mark"])
    down = len(re.findall(rb"cache: redis master kmilter \(Sentinels\) unavailable", text))
    back = len(re.findall(rb"cache: redis master kmilter \(Sentinels\) is back after", text))
    print("INFO %s: %d outage lines, %d end-of-outage lines" % (what, down, back), flush=True)
    check(down <= 2, "%s: %d outage lines (once for the pool and once for the subscriber)"
          % (what, down))
    check(back >= down, "%s: %d outages logged but %d ends" % (what, down, back))


@suite.case("failover_master_sigkilled_mid_stream")
def _():
    need("setup_ok")
    restart_fresh(None)     # the fake refuses subscriptions: a real one is watched
    old, new, t_move, t_write, msgs, name, pid = failover(
        lambda p: os.kill(p, signal.SIGKILL), "kill")
    print("INFO master %d SIGKILLed: kmilter moved to %d after %.2fs, first write there after "
          "%.2fs" % (old, new, t_move, t_write), flush=True)
    first = settle(msgs, "failover")
    check(first.get("tempfail", 0) == 0, "%d messages got a 4xx while the master was gone "
          "(mail must flow from L1 and the KM)" % first.get("tempfail", 0))
    outage_logged_once("failover")
    check(t_write <= FOLLOW_BOUND, "kmilter took %.1fs to write to the new master" % t_write)
    check_role = role(new)
    check(check_role == "master", "the new master says %r" % check_role)
    S["killed"] = name


@suite.case("old_master_comes_back_as_replica")
def _():
    need("setup_ok", "killed")
    lb = lab()
    old = S["master"] if S["killed"] == "redis" else S["replica"]
    r = subprocess.run([L.LAB, "start-redis", lb.dir, S["killed"]], capture_output=True,
                       timeout=60)
    check(r.returncode == 0, "start-redis: %s" % r.stderr.decode()[-300:])
    L.wait_for(lambda: role(old) == "slave", 30, "the old master %d turned replica" % old)
    mark = len(lb.log_text())
    msgs = stream(N // 2, seed=23)
    L.send_all(S["env"], msgs, sessions=3)
    first = settle(msgs, "old-master-back")
    check(first.get("tempfail", 0) == 0, "%d messages got a 4xx" % first.get("tempfail", 0))
    check(kmilter_clients(old) == 0, "kmilter sent commands to the old master (a replica now)")
    check(not re.search(rb"is now at 127\.0\.0\.1:%d " % old, log_since(mark)),
          "kmilter moved back to the old master")


@suite.case("partition_master_sigstopped")
def _():
    need("setup_ok", "killed")
    stopped = []

    def stop(pid):
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
    try:
        old, new, t_move, t_write, msgs, name, pid = failover(stop, "partition")
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
    print("INFO master %d SIGSTOPped: kmilter moved to %d after %.2fs, first write there after "
          "%.2fs" % (old, new, t_move, t_write), flush=True)
    first = settle(msgs, "partition")
    check(first.get("tempfail", 0) == 0, "%d messages got a 4xx during the partition"
          % first.get("tempfail", 0))
    outage_logged_once("partition")
    check(t_write <= FOLLOW_BOUND, "kmilter took %.1fs to write to the new master" % t_write)
    L.wait_for(lambda: role(old) == "slave", 30, "the stopped master %d turned replica" % old)
    check(kmilter_clients(old) == 0, "kmilter still talks to the old master")


def main():
    try:
        return suite.run()
    finally:
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
