#!/usr/bin/python3
"""t-faults - faults during a stream of messages; nothing lost.

One lab (Postfix with milter_default_action=tempfail, kmilter, Redis, two
PyKMIP servers; cache.memory_ttl = 2 s so that warm entries come from
Redis, and an admin hook that hangs).  For every fault a stream of mixed
messages (outbound, inbound, pass) runs over several SMTP sessions while
the fault happens; then the fault is repaired, what the client got a 4xx
for is sent again (what an SMTP client does), Postfix's queue is flushed
(postqueue -f), and every message is accounted for: accepted -> delivered
exactly once (nothing left in the queue), outbound never in plaintext, inbound
decrypted, pass unchanged, never a 5xx.

Faults: kmilter SIGKILLed mid-stream and restarted (tests/lab
restart-milter); 20 SIGHUPs while sending (one "reloaded configuration"
line each) and a broken file on SIGHUP (kept, then restored); the spool
directory unwritable with a message bigger than spool_memory_max; an admin
hook that hangs (timeout_ms 500) for a user with an enhanced (password-
protected) key; one KM server stopped; both KM servers stopped (warm
traffic that needs a Redis entry tempfails then: a Redis entry is used only
once the user's revocation counter is read from the KM, docs/keystore.md);
Redis SIGKILLed mid-stream.
Env: T_FAULTS_N (messages per stream, default 160), T_FAULTS_SESSIONS (4).
"""
import os
import re
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import Failure, Suite, check, check_eq, skip  # noqa: E402

N = int(os.environ.get("T_FAULTS_N", "160"))
# A message whose key waits on a hung hook (timeout_ms 500) is held this
# long at most; see admin_hook_hangs_enhanced_key_kept_encrypted.
HOOK_TIMEOUT_MS = 500
HOOK_BOUND_MS = 1200
MEMORY_TTL = 2             # cache.memory_ttl (s): warm entries then come from Redis
SESSIONS = int(os.environ.get("T_FAULTS_SESSIONS", "4"))
USERS = ["fuser%d@example.com" % i for i in range(6)]
CORR = ["fcorr%d@partner.example" % i for i in range(4)]
# never looked up before their test: nothing of them is cached anywhere
FRESH_USERS = {"one": "cold1@example.com", "both": "cold2@example.com",
               "redis": "cold3@example.com"}
FRESH_CORR = {"one": "newc1@partner.example", "both": "newc2@partner.example",
              "redis": "newc3@partner.example"}
ENHANCED = "locked@example.com"
BIG = 1536 * 1024          # > milter.spool_memory_max (1 MiB by default)

suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


def lab():
    need("lab_ok")
    return S["lab"]


def stream(n=N, seed=0, extra=()):
    """n mixed messages between warm users and correspondents, plus extra."""
    msgs = []
    for i in range(n):
        k = (i + seed) % 3
        u = USERS[(i + seed) % len(USERS)]
        c = CORR[(i * 7 + seed) % len(CORR)]
        size = (1500, 6000, 30000)[(i // 3) % 3]
        if k == 0:
            msgs.append(L.plain_msg(u, c, size, "outbound"))
        elif k == 1:
            blob, marker = S["blobs"][u]
            msgs.append(L.inbound_msg(c, u, blob, marker))
        else:
            msgs.append(L.plain_msg("x%d@elsewhere.example" % i, c, size, "pass"))
    msgs[n // 2:n // 2] = list(extra)
    return msgs


def send_bg(msgs, sessions=SESSIONS):
    """Start sending msgs in a thread; returns the thread."""
    t = threading.Thread(target=L.send_all, args=(S["env"], msgs),
                         kwargs={"sessions": sessions}, daemon=True)
    t.start()
    return t


def progress(msgs):
    """How many of msgs have had their reply."""
    return sum(1 for m in msgs if m.status is not None)


def wait_progress(msgs, count, secs=30):
    return L.wait_for(lambda: progress(msgs) >= count, secs, step=0.02) is not None


def statuses(msgs):
    st = {}
    for m in msgs:
        st[m.status] = st.get(m.status, 0) + 1
    return st


def settle(msgs, what, allow_unaccepted=(), downgraded=()):
    """Retry the 4xx ones, flush, account; FAIL on any loss, duplicate,
    wrong delivery or 5xx; every accepted message logs result=ok, except
    those in downgraded, which must log result=downgraded; returns the Account."""
    lb = S["lab"]
    first = statuses(msgs)
    rejected = [m for m in msgs if m.status == "rejected"]
    check(not rejected, "%s: %d messages got a 5xx: %s" % (what, len(rejected),
                                                          rejected[0].reply if rejected else ""))
    retried = L.resend_unaccepted(S["env"], [m for m in msgs if m not in allow_unaccepted])
    lb.flush()
    a = L.account(lb, msgs, queue_wait=60)
    print("INFO %s: first try %s; retried %d; %s" % (what, first, retried, a.summary()), flush=True)
    probs = a.problems()
    check(not probs, "%s: %s" % (what, "; ".join(probs)))
    left = [m for m in a.unaccepted if m not in allow_unaccepted]
    check(not left, "%s: %d messages still not accepted after the retries: %s" % (
        what, len(left), left[0].reply if left else ""))
    check_eq(a.queued, 0, "%s: messages left in Postfix's queue" % what)
    # every accepted message went through kmilter
    lines = L.log_lines_for(lb, [m.qid for m in msgs if m.status == "accepted"])
    nolog = [m for m in msgs if m.status == "accepted" and m.qid not in lines]
    check(not nolog, "%s: %d accepted messages have no kmilter log line (qid %s)" % (
        what, len(nolog), nolog[0].qid if nolog else ""))
    # a message kept encrypted because the hook failed is a downgrade,
    # logged as one (never in silence); every other one is result=ok
    notok = [(m.qid, lines[m.qid]) for m in msgs if m.status == "accepted"
             and lines[m.qid].get("result") != ("downgraded" if m in downgraded else "ok")]
    check(not notok, "%s: accepted but logged %s" % (what, notok[:2]))
    return a


def count_log(pattern):
    return len(re.findall(pattern, S["lab"].log_text()))


def wait_log(pattern, count, secs=10):
    return L.wait_for(lambda: count_log(pattern) >= count, secs) is not None


def send_one(m):
    L.send_all(S["env"], [m], sessions=1)
    return m


# ------------------------------------------------------------------ setup

@suite.case("lab_up")
def _():
    top_lab = L.Lab("t-faults")
    S["lab"] = top_lab
    # The hanging hook: its pid goes to hookpids (kmilter runs it as kmilter).
    # The hook and its directory are root's and writable by no one else
    # (kmilter refuses any other); only the pids file is kmilter's.
    hookdir = top_lab.wpath("hook")
    os.mkdir(hookdir)
    os.chmod(hookdir, 0o755)
    with open(os.path.join(hookdir, "pids"), "w"):
        pass
    shutil.chown(os.path.join(hookdir, "pids"), "kmilter", "kmilter")
    hook = os.path.join(hookdir, "hang")
    with open(hook, "w") as fp:
        fp.write("#!/bin/sh\necho $$ >> %s/pids\n"
                 "while IFS= read -r l && [ -n \"$l\" ]; do :; done\n"
                 "exec sleep 120\n" % hookdir)
    os.chmod(hook, 0o755)
    S["hookdir"], S["hook"] = hookdir, hook
    top_lab.extra = (
        'cache: { memory_ttl = %d; redis: { socket = "@LAB_REDIS@"; '
        'password_file = "@LAB_REDIS_PASSWORD_FILE@"; }; };\n'
        'hook: { path = "%s"; timeout_ms = %d; on_failure = "keep-encrypted"; };' % (MEMORY_TTL, hook, HOOK_TIMEOUT_MS))
    top_lab.env_extra = {"LAB_CACHE": "0"}
    top_lab.up()
    S["env"] = top_lab.env
    print("INFO lab up in %.1fs: %s" % (top_lab.up_secs, top_lab.dir), flush=True)
    S["lab_ok"] = True


@suite.case("setup_users_and_warm_caches")
def _():
    lb = lab()
    t0 = time.time()

    def one(u):
        lb.kmctl("enroll", u, "--key", "ec-p256")
        lb.kmctl("signing-enroll", u)
        p = lb.wpath(u.replace("@", "_at_") + ".crt")
        with open(p, "wb") as fp:
            fp.write(lb.kmctl("export-cert", u).stdout)
        return p
    allu = USERS + list(FRESH_USERS.values())
    certs = dict(zip(allu, L.parallel(one, allu, workers=6)))
    pki = L.OutsidePKI(lb)
    corr = L.import_certs(lb, pki, CORR + list(FRESH_CORR.values()), workers=6)
    blobs = {}
    for u in allu:
        blobs[u] = L.inbound_blob(lb, certs[u], 3000, u.split("@")[0])
    S.update(certs=certs, corr=corr, blobs=blobs, pki=pki)
    # warm every cache for the ordinary users and correspondents
    warm = stream(len(USERS) * 3 + 3, seed=0)
    L.send_all(S["env"], warm, sessions=4)
    settle(warm, "warm-up")
    print("INFO %d users, %d correspondents, caches warm in %.1fs" % (
        len(allu), len(corr), time.time() - t0), flush=True)
    S["setup_ok"] = True


# ------------------------------------------------------------------ faults

@suite.case("kmilter_sigkill_mid_stream_then_restart")
def _():
    need("setup_ok")
    lb = S["lab"]
    msgs = stream(N, seed=1)
    t = send_bg(msgs)
    check(wait_progress(msgs, N // 4), "the stream did not start")
    pid = lb.milter_pid()
    os.kill(pid, signal.SIGKILL)
    killed_at = progress(msgs)
    # the event: Postfix met the dead milter (a 4xx, milter_default_action)
    L.wait_for(lambda: any(m.status == "tempfail" for m in msgs), 30,
               lambda: "a 4xx while kmilter is dead (killed at %d/%d; replies since: %s)"
               % (killed_at, N, statuses(msgs)))
    down_replies = statuses(msgs)
    lb.restart_milter()
    newpid = lb.milter_pid()
    check(newpid and newpid != pid and L.pid_alive(newpid), "kmilter did not restart")
    t.join(300)
    tf = [m for m in msgs if m.status == "tempfail"]
    print("INFO SIGKILL after %d of %d submissions; replies while down: %s; "
          "4xx example: %s" % (killed_at, N, down_replies, tf[0].reply if tf else "-"))
    a = settle(msgs, "sigkill")
    check(tf or any(m.status == "error" for m in msgs) or a.accepted == N,
          "neither a 4xx nor a delivery for the messages sent while kmilter was down")
    check(tf, "no message got a 4xx while kmilter was dead (killed mid-stream at %d/%d)"
          % (killed_at, N))
    check(all(r.startswith("4") for m in tf for s_, r in m.attempts if s_ == "tempfail"),
          "a tempfail reply was not 4xx")


@suite.case("sighup_20_reloads_while_sending")
def _():
    need("setup_ok")
    lb = S["lab"]
    pid = lb.milter_pid()
    pat = rb"kmilter: reloaded configuration from "
    base = count_log(pat)
    msgs = stream(N, seed=2)
    t = send_bg(msgs)
    check(wait_progress(msgs, 10), "the stream did not start")
    late = []
    for i in range(20):
        os.kill(pid, signal.SIGHUP)
        if not wait_log(pat, base + i + 1, 10):
            late.append(i + 1)
        # Pacing, not a wait for an event: the reloads come 0.1 s apart
        # (each after its "reloaded" line).  Pacing them by mail instead
        # (the next SIGHUP after a reply) made the hung-hook case below
        # slower: median 1120 ms instead of 800 for the slowest locked
        # message, over its 1200 ms bound in 3 of 8 runs (1 of 7 with
        # this pacing), same thread and fd count (issue 13 item 8).
        time.sleep(0.1)
    sent_during = progress(msgs)
    t.join(300)
    got = count_log(pat) - base
    print("INFO 20 SIGHUPs while %d messages were sent; %d reload lines" % (sent_during, got))
    check(L.pid_alive(pid) and lb.milter_pid() == pid, "kmilter died on SIGHUP")
    tf = [m for m in msgs if m.status != "accepted"]
    check_eq(got, 20, "'reloaded configuration' lines for 20 SIGHUPs")
    check(not late, "no reload line within 10s for HUP number(s) %s" % late)
    settle(msgs, "sighup")
    check(not tf, "%d messages refused during reloads (first: %s)" % (
        len(tf), tf[0].reply if tf else ""))


@suite.case("sighup_with_broken_config_keeps_running_one")
def _():
    need("setup_ok")
    lb = S["lab"]
    pid = lb.milter_pid()
    conf = lb.env["LAB_CONF"]
    with open(conf, "rb") as fp:
        good = fp.read()
    keep_pat = rb"keeping the running configuration"
    ok_pat = rb"kmilter: reloaded configuration from "
    k0, r0 = count_log(keep_pat), count_log(ok_pat)
    try:
        with open(conf, "wb") as fp:       # same file, same mode and group
            fp.write(good + b"\nmilter: { socket = ;\n")
        os.kill(pid, signal.SIGHUP)
        check(wait_log(keep_pat, k0 + 1, 10), "no 'keeping the running configuration' line "
              "after SIGHUP with a broken file")
        check_eq(count_log(ok_pat), r0, "reload lines after a broken file")
        check(L.pid_alive(pid), "kmilter died on a broken configuration")
        msgs = stream(12, seed=3)
        L.send_all(S["env"], msgs, sessions=3)
        settle(msgs, "broken-config")
        check(all(m.tries == 1 for m in msgs), "mail tempfailed with the broken file in place")
    finally:
        with open(conf, "wb") as fp:
            fp.write(good)
    os.kill(pid, signal.SIGHUP)
    check(wait_log(ok_pat, r0 + 1, 10), "no reload after restoring the file")
    line = [x for x in lb.log_text().splitlines() if b"reload" in x and b"kmilter" in x]
    print("INFO " + " | ".join(x.decode("utf-8", "replace") for x in line[-3:]))


@suite.case("spool_dir_unwritable_big_message_tempfails_then_delivered")
def _():
    need("setup_ok")
    lb = S["lab"]
    spool = os.path.join(lb.dir, "kmilter", "spool")
    mode = os.stat(spool).st_mode & 0o7777
    big_out = L.plain_msg(USERS[0], CORR[0], BIG, "outbound")
    big_pass = L.plain_msg("big@elsewhere.example", CORR[1], BIG, "pass")
    small = stream(9, seed=4)
    try:
        os.chmod(spool, 0)
        L.send_all(S["env"], [big_out, big_pass] + small, sessions=3)
        print("INFO spool 000: big outbound -> %s; big pass -> %s; small: %s" % (
            big_out.reply, big_pass.reply, statuses(small)))
        for m in (big_out, big_pass):
            check(m.status == "tempfail" and m.reply.startswith("4"),
                  "a %d-byte message with the spool unwritable: want 4xx, got %s" % (
                      m.size, m.reply))
        check(all(m.status == "accepted" for m in small),
              "small messages (memory spool) refused with the spool unwritable: %s" %
              statuses(small))
        line = [x for x in lb.log_text().splitlines()[-40:] if b"spool" in x.lower()]
        print("INFO log: %s" % (line[-1].decode("utf-8", "replace") if line else "(no spool line)"))
    finally:
        os.chmod(spool, mode)
    settle([big_out, big_pass] + small, "spool")
    check(big_out.tries >= 2 and big_out.status == "accepted", "big outbound not delivered")
    # ops must see what was tempfailed: the log line of the big outbound
    tf = [x.decode("utf-8", "replace") for x in lb.log_text().splitlines()
          if b"from=<%s>" % USERS[0].encode() in x and b"result=tempfail" in x]
    check(tf, "no result=tempfail log line for the big outbound message")
    check(" direction=outbound " in tf[-1], "the tempfailed outbound message (internal "
          "sender, outside recipient) is logged with the wrong direction: %s" % tf[-1])


@suite.case("admin_hook_hangs_enhanced_key_kept_encrypted")
def _():
    need("setup_ok")
    lb = S["lab"]
    pwf = lb.wpath("enhanced-pw")
    with open(pwf, "w") as fp:
        fp.write("hook-test pw 1\n")
    os.chmod(pwf, 0o644)        # kmctl runs as kmilter
    out = lb.kmctl("enroll", ENHANCED, "--protect", "--password-file", pwf).stdout.decode()
    check("protection enhanced" in out, "kmctl enroll --protect said %r" % out)
    crt = lb.wpath("locked.crt")
    with open(crt, "wb") as fp:
        fp.write(lb.kmctl("export-cert", ENHANCED).stdout)
    show = lb.kmctl("show", ENHANCED).stdout.decode()
    check("%s level enhanced" % ENHANCED in show, "kmctl show does not say enhanced: %s" % show)
    locked = []
    for i in range(3):
        blob, marker = L.inbound_blob(lb, crt, 2000, "locked%d" % i)
        locked.append(L.inbound_msg(CORR[0], ENHANCED, blob, marker, kind="inbound-locked"))
    msgs = stream(30, seed=5, extra=locked)
    t0 = time.time()
    L.send_all(S["env"], msgs, sessions=4)
    secs = time.time() - t0
    # A key the hook keeps locked leaves the message encrypted: a downgrade,
    # logged as such (result=downgraded), never result=ok.
    a = settle(msgs, "hook-hang", downgraded=locked)
    lines = L.log_lines_for(lb, [m.qid for m in locked])
    # A log line without ms= (or without a number there) is a failure, never 0.
    bad = [(m.qid, lines.get(m.qid)) for m in locked
           if not str(lines.get(m.qid, {}).get("ms", "")).isdigit()]
    check(not bad, "kmilter log line without ms= for a locked message: %s" % bad[:2])
    ms = [int(lines[m.qid]["ms"]) for m in locked]
    print("INFO hook hangs: %d messages incl. 3 for the enhanced user in %.1fs; their log "
          "lines: %s" % (len(msgs), secs, [lines[m.qid] .get("action") for m in locked]))
    print("INFO kmilter ms for the locked messages: %s" % ms)
    # The hook hangs, so each locked message waits the hook's timeout_ms
    # (500), then the kill and reap and the rest of the message: measured
    # 673-717 ms (two runs, 2-core machine shared with other test runs).
    # The bound, 1200 ms, is that plus ~500 ms for a loaded machine; a
    # kmilter that waits much longer than timeout_ms (a second full
    # timeout, or a timeout taken as seconds) fails it.  The lower bound
    # says the hook was really waited for: under 500 ms the message never
    # reached the hang and this case proves nothing about the timeout.
    print("FIGURE t-faults hung hook, timeout_ms %d: kmilter ms per locked message %s" % (
        HOOK_TIMEOUT_MS, ms))
    check(max(ms) < HOOK_BOUND_MS, "a message waited %d ms for a hook with timeout_ms %d "
          "(bound %d ms)" % (max(ms), HOOK_TIMEOUT_MS, HOOK_BOUND_MS))
    check(min(ms) >= HOOK_TIMEOUT_MS, "a locked message took %d ms, less than the hook's "
          "timeout_ms %d: the hook was not waited for" % (min(ms), HOOK_TIMEOUT_MS))
    # the hung hooks were killed: each pid gone within 1 s (the bound the
    # fixed 1 s pause here gave; kmilter kills and reaps a hook at its
    # timeout, and every locked message above has had its reply)
    try:
        with open(os.path.join(S["hookdir"], "pids")) as fp:
            pids = [int(x) for x in fp.read().split()]
    except OSError:
        pids = []
    check(pids, "the hook was never run (no pid recorded)")
    L.wait_for(lambda: not any(L.pid_alive(p) for p in pids), 1.0,
               lambda: "hook processes gone after their timeout (still running: %s)"
               % [p for p in pids if L.pid_alive(p)])
    print("INFO hook ran %d times, all killed" % len(pids))


def km_down_case(which, names):
    lb = S["lab"]
    user, newc = FRESH_USERS[which], FRESH_CORR[which]
    cold_in = L.inbound_msg(CORR[1], user, *S["blobs"][user])
    cold_out = L.plain_msg(USERS[1], newc, 2000, "outbound")
    warm = stream(30, seed=6)
    ports = {n: lb.km_port(n) for n in names}
    t_start = time.monotonic()
    try:
        for n in names:
            pid = lb.km_pid(n)
            r = lb.km_sh("km_stop", n)
            check(r.returncode == 0, "km_stop %s: %s" % (n, r.stderr[-200:]))
            if pid:
                L.wait_for(lambda: not L.pid_alive(pid), 10)
                check(not L.pid_alive(pid), "KM %s (pid %d) still runs" % (n, pid))
        # Time passing is the thing here: L1 (memory_ttl) must expire so that
        # warm entries come from Redis.  The last lookup was before this
        # case began (settle waits for every log line); the both-down case
        # asserts the expiry (Redis entries then need the KM's counter).
        left = t_start + MEMORY_TTL + 0.5 - time.monotonic()
        if left > 0:
            time.sleep(left)
        L.send_all(S["env"], [cold_in, cold_out] + warm, sessions=4)
        print("INFO %s down: inbound for an uncached user -> %s; outbound to an uncached "
              "correspondent -> %s; warm traffic %s" % (
                  "+".join(names), cold_in.reply, cold_out.reply, statuses(warm)))
        check(cold_in.status == "tempfail" and cold_in.reply.startswith("4"),
              "inbound for a user whose key is not cached, with %s down: want 4xx, got %s" % (
                  "+".join(names), cold_in.reply))
        if cold_out.status == "accepted":
            check(len(names) < 2, "outbound to an uncached correspondent accepted with both "
                  "KM servers down (must tempfail): %s" % cold_out.reply)
        else:
            check(cold_out.status == "tempfail", "outbound to an uncached correspondent: %s"
                  % cold_out.reply)
        if len(names) < 2:
            check(all(m.status == "accepted" for m in warm),
                  "warm (Redis-cached) traffic refused with %s down: %s; e.g. %s" % (
                      "+".join(names), statuses(warm),
                      [m.reply for m in warm if m.status != "accepted"][:1]))
        else:
            # no KM server to read the revocation counters from (and the
            # ones in memory expired with memory_ttl): Redis entries are not
            # used unchecked, so mail that needs a key or certificate gets a
            # 4xx and goes through on the client's retry (settle below)
            check(all(m.status in ("accepted", "tempfail") for m in warm),
                  "warm traffic with both KM servers down: %s" % statuses(warm))
            check(any(m.status == "tempfail" for m in warm),
                  "warm traffic all accepted with both KM servers down: Redis entries "
                  "used without their revocation counter being checked")
    finally:
        for n in names:
            r = lb.km_sh("km_start", n, ports[n])
            if r.returncode != 0:
                raise Failure("km_start %s: %s" % (n, r.stderr[-300:]))
    # the client's retries after the KM is back: decrypted / encrypted
    settle([cold_in, cold_out] + warm, "km-%s" % "+".join(names))


@suite.case("one_km_server_down")
def _():
    need("setup_ok")
    km_down_case("one", ["km-a"])


@suite.case("both_km_servers_down")
def _():
    need("setup_ok")
    km_down_case("both", ["km-a", "km-b"])


@suite.case("redis_sigkill_mid_stream_mail_flows_through_km")
def _():
    need("setup_ok")
    lb = S["lab"]
    user, newc = FRESH_USERS["redis"], FRESH_CORR["redis"]
    cold = [L.inbound_msg(CORR[2], user, *S["blobs"][user]),
            L.plain_msg(USERS[2], newc, 2000, "outbound")]
    msgs = stream(N, seed=7)
    msgs[-N // 4:-N // 4] = cold            # after the kill
    before = lb.stats()
    t = send_bg(msgs)
    check(wait_progress(msgs, N // 4), "the stream did not start")
    rpid = lb.recorded_pid("redis")
    check(rpid and L.pid_alive(rpid), "no running Redis recorded")
    os.kill(rpid, signal.SIGKILL)
    killed_at = sum(1 for m in msgs if m.status is not None)
    t.join(300)
    after = lb.stats()
    print("INFO Redis SIGKILLed after %d of %d submissions: %s; stats: l2_errors %d->%d, "
          "km_fetches %d->%d" % (killed_at, len(msgs), statuses(msgs),
                                 before.get("keys_l2_errors", 0), after.get("keys_l2_errors", 0),
                                 before.get("keys_km_fetches", 0), after.get("keys_km_fetches", 0)))
    refused = [m for m in msgs if m.status != "accepted"]
    settle(msgs, "redis-kill")
    check(not refused, "%d messages refused with Redis dead (must flow through the KM): %s" % (
        len(refused), refused[0].reply if refused else ""))
    check(after, "kmctl stats answers nothing with Redis dead: %s" % getattr(lb, "stats_error", ""))
    check(after.get("keys_km_fetches", 0) > before.get("keys_km_fetches", 0),
          "no KM fetch after Redis died (the uncached user and correspondent)")


def main():
    try:
        return suite.run()
    finally:
        if "lab" in S:
            S["lab"].down()


if __name__ == "__main__":
    sys.exit(main())
