#!/usr/bin/python3
"""t-basic - end-to-end through the lab: real Postfix, kmilter, smtp-sink.

Lab up in a temp dir (down at exit); a pass-through message arrives with
its body byte-identical (after the LF line ends smtp-sink writes) and
kmilter logs its line with Postfix's queue id; a client that drops the
connection mid-DATA gets nothing delivered and kmilter stays up; a 50 MB
message is delivered intact while kmilter's peak RSS stays under a bound.
Prints figures: lab start-up time, added latency per message of kmilter
over the null milter (median of sequential messages), peak RSS.
Falls back to the null milter (and skips kmilter's cases) when
build/kmilter is not built.
Env: T_BASIC_N (messages per latency run, default 50),
T_BASIC_BIG_MB (default 50), T_BASIC_RSS_MB (bound, default 64),
T_BASIC_LAT_MAX_MS (bound on kmilter's median submission latency, default 25),
T_BASIC_LAT_ADD_MS (bound on what it adds over the null milter, default 10).
"""
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq, pid_alive, proc_status, skip, wait_for  # noqa: E402
import labsmtp  # noqa: E402

N = int(os.environ.get("T_BASIC_N", "50"))
BIG_MB = int(os.environ.get("T_BASIC_BIG_MB", "50"))
RSS_MB = int(os.environ.get("T_BASIC_RSS_MB", "64"))
LAT_MAX_MS = int(os.environ.get("T_BASIC_LAT_MAX_MS", "25"))
LAT_ADD_MS = int(os.environ.get("T_BASIC_LAT_ADD_MS", "10"))
LAB = os.path.join(TOP, "tests", "lab")
SENDER = "alice@partner.test"          # external sender: kmilter passes it
RCPTS = ["bob@example.org", "carol@example.net"]
# ... when it comes from a client that is not internal (127.0.0.2): from an
# internal host, mail to outside recipients is outbound whatever the sender.
figures = []


def lab_up(d, milter, **extra):
    env = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER=milter)
    env.update(extra)
    t0 = time.time()
    r = subprocess.run([LAB, "up", d], env=env, capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError("lab up failed (%d): %s %s" % (r.returncode, r.stdout, r.stderr))
    return labsmtp.load_env(d), took, r.stdout.strip()


def submit(env, *args, **kw):
    """labsmtp.submit from the lab's outside client: relayed, passed untouched."""
    return labsmtp.submit(env, *args, source=labsmtp.outside_client(env), **kw)


def lab_down(d):
    subprocess.run([LAB, "down", d], capture_output=True, timeout=120)


def probe(env, i):
    """Seconds from SMTP connect to '250 queued' for one small message."""
    raw = labsmtp.make_message(SENDER, RCPTS[:1], "lat %d" % i, "latency probe %d\r\n" % i)
    t0 = time.perf_counter()
    submit(env, SENDER, RCPTS[:1], raw)
    return time.perf_counter() - t0


def latencies(envs, n, warmup=5):
    """Median submission latency per lab; labs are probed round-robin so
    that drift (background checks, cache warm-up) hits all alike."""
    for i in range(warmup):
        for e in envs.values():
            probe(e, i)
    times = {k: [] for k in envs}
    for i in range(n):
        for k, e in envs.items():
            times[k].append(probe(e, i))
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    suite = Suite()
    have_kmilter = os.access(os.path.join(BUILD, "kmilter"), os.X_OK)
    milter = "kmilter" if have_kmilter else "null"
    base = tempfile.mkdtemp(prefix="t-basic.")
    os.chmod(base, 0o755)      # postfix and kmilter must reach the lab below it
    d = os.path.join(base, "lab")
    suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(lambda: lab_down(d))
    state = {}

    @suite.case("lab up (%s)" % milter)
    def _():
        env, took, line = lab_up(d, milter, LAB_KM="0")
        state["env"] = env
        check(line.startswith("lab: up in "), "timing line: %r" % line)
        figures.append("lab start-up: %.2fs (%s)" % (took, line))

    def env():
        if "env" not in state:
            skip("lab is not up")
        return state["env"]

    @suite.case("a message arrives with its body byte-identical")
    def _():
        e = env()
        body = (b"Line one.\r\n.a line starting with a dot\r\n\r\n"
                b"tabs\tand trailing spaces   \r\n" + bytes(range(32, 127)) + b"\r\n")
        raw = labsmtp.make_message(SENDER, RCPTS, "basic", body)
        qid = submit(e, SENDER, RCPTS, raw)
        state["qid"] = qid
        path = labsmtp.wait_delivered(e, qid, 30)
        sink, msg = labsmtp.read_delivered(path)
        _, got_body = labsmtp.split_message(msg)
        check_eq(got_body, labsmtp.lf(body), "delivered body")
        check_eq(sorted(a.split()[0] for a in sink.get("X-Rcpt-Args", [])),
                 sorted("<%s>" % r for r in RCPTS), "delivered recipients")
        check(b"Subject: basic\n" in msg, "Subject header lost")

    @suite.case("kmilter logs the message with Postfix's queue id")
    def _():
        e = env()
        check(have_kmilter, "build/kmilter not built (make all)")
        qid = state.get("qid") or skip("no message sent")
        line = labsmtp.wait_log_line(e, qid, 10)
        check(line is not None, "no line for %s in %s" % (qid, e["LAB_LOG"]))
        f = labsmtp.parse_log_line(line)
        check_eq(f.get("from"), "<%s>" % SENDER, "from= in " + line)
        check_eq(f.get("rcpts"), str(len(RCPTS)), "rcpts= in " + line)
        check_eq(f.get("direction"), "pass", "direction= in " + line)
        check_eq(f.get("result"), "ok", "result= in " + line)
        check("ms" in f and f["ms"].isdigit(), "ms= in " + line)

    @suite.case("client drops mid-DATA: nothing delivered, milter stays up")
    def _():
        e = env()
        before = set(labsmtp.delivered_files(e))
        s, replies = labsmtp.smtp_chat(e, ["EHLO dropper.example", "MAIL FROM:<%s>" % SENDER,
                                           "RCPT TO:<%s>" % RCPTS[0], "DATA"])
        check(replies[-1].startswith("354"), "DATA answered %r" % replies[-1])
        s.sendall(b"Subject: half\r\n\r\n" + b"partial body line\r\n" * 5000)
        s.close()
        # smtpd logs the lost connection; then nothing may arrive.
        def lost():
            with open(e["LAB_POSTFIX_LOG"], "rb") as fp:
                return b"lost connection after DATA" in fp.read()
        wait_for(lost, 15, "smtpd logging the lost connection after DATA")
        pid = labsmtp.milter_pid(e)
        check(pid and pid_alive(pid), "milter pid %r gone" % pid)
        qid = submit(e, SENDER, RCPTS[:1],
                             labsmtp.make_message(SENDER, RCPTS[:1], "after drop", "ok\r\n"))
        after = labsmtp.wait_delivered(e, qid, 30)
        # the event for "nothing else arrives": a message sent after the
        # drop has been delivered; the half one must not have been
        check_eq(set(labsmtp.delivered_files(e)) - before, {after},
                 "files delivered besides the one sent after the drop")

    @suite.case("a %d MB message is delivered intact; milter peak RSS < %d MB" % (BIG_MB, RSS_MB))
    def _():
        e = env()
        line = b"".join(b"%c" % (33 + (i * 7) % 90) for i in range(76)) + b"\r\n"
        body = bytearray()
        i = 0
        while len(body) < BIG_MB * 1024 * 1024:
            body += b"%08d " % i + line
            i += 1
        body = bytes(body)
        raw = labsmtp.make_message(SENDER, RCPTS[:1], "big", body)
        t0 = time.time()
        qid = submit(e, SENDER, RCPTS[:1], raw, timeout=600)
        t_sub = time.time() - t0
        path = labsmtp.wait_delivered(e, qid, 600)
        t_del = time.time() - t0
        _, msg = labsmtp.read_delivered(path)
        _, got = labsmtp.split_message(msg)
        want = labsmtp.lf(body)
        check_eq(len(got), len(want), "delivered body length")
        check_eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(want).hexdigest(),
                 "delivered body sha256")
        pid = labsmtp.milter_pid(e)
        hwm = proc_status(pid, "VmHWM") if pid else None
        check(hwm is not None, "no VmHWM for milter pid %r" % pid)
        figures.append("%d MB message: submitted in %.1fs, delivered in %.1fs; "
                       "%s peak RSS (VmHWM) %.1f MB" % (BIG_MB, t_sub, t_del, milter, hwm / 1024))
        if have_kmilter:
            line_ = labsmtp.wait_log_line(e, qid, 10)
            check(line_ is not None, "no log line for the big message")
        check(hwm < RSS_MB * 1024, "%s peak RSS %.1f MB >= %d MB" % (milter, hwm / 1024, RSS_MB))

    @suite.case("latency: kmilter vs null milter vs no milter (median of %d)" % N)
    def _():
        e = env()
        check(have_kmilter, "build/kmilter not built (make all)")
        envs = {"kmilter": e}
        dirs = []
        try:
            for kind in ("null", "none"):
                d2 = os.path.join(base, "lab-" + kind)
                dirs.append(d2)
                envs[kind], _, _ = lab_up(d2, kind, LAB_KM="0", LAB_REDIS="0")
            res = latencies(envs, N)
        finally:
            for d2 in dirs:
                lab_down(d2)
        figures.append("submission latency, median of %d: kmilter %.2f ms, null milter %.2f ms, "
                       "no milter %.2f ms; kmilter adds %.2f ms over the null milter" %
                       (N, res["kmilter"] * 1e3, res["null"] * 1e3, res["none"] * 1e3,
                        (res["kmilter"] - res["null"]) * 1e3))
        # Measured: kmilter 2.58-2.83 ms, null milter 2.49-2.73 ms, no milter 1.6-2.3 ms
        # (median of 50, 2-core machine shared with other test runs).  This
        # message passes (outside sender and client): kmilter has no crypto
        # and no key lookup to do, so what it adds over the null milter is
        # its own per-message overhead.  Bounds: the median under
        # LAT_MAX_MS (25 ms, ~9x the measure, room for a loaded machine
        # slowing Postfix itself), and kmilter adding under LAT_ADD_MS
        # (10 ms; measured 0.08-0.10 ms) over the null milter probed in the same
        # rounds, which fails on a synchronous lookup, an fsync or a sleep
        # per message.
        check(res["kmilter"] * 1e3 < LAT_MAX_MS, "median latency %.2f ms >= %d ms" % (
            res["kmilter"] * 1e3, LAT_MAX_MS))
        check((res["kmilter"] - res["null"]) * 1e3 < LAT_ADD_MS,
              "kmilter adds %.2f ms over the null milter (median), bound %d ms" % (
                  (res["kmilter"] - res["null"]) * 1e3, LAT_ADD_MS))

    @suite.case("lab down stops every recorded process")
    def _():
        e = env()
        pids = []
        for name in os.listdir(os.path.join(d, "pids")):
            with open(os.path.join(d, "pids", name)) as fp:
                pids.append(int(fp.read()))
        check(len(pids) >= 4, "recorded pids: %r" % pids)
        lab_down(d)
        alive = [p for p in pids if pid_alive(p)]
        check_eq(alive, [], "still alive after down")
        state.pop("env")

    rc = suite.run()
    for f in figures:
        print("FIGURE " + f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
