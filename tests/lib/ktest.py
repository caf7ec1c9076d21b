"""ktest - the tiny harness of kmilter's python test suites.

    suite = Suite()
    @suite.case("name")
    def _():
        check(x == 1, "x is %r" % x)     # raises Failure
        skip("why")                       # raises Skipped
        need(S, "lab")                    # skip unless S has every key
    sys.exit(suite.run())

Each case prints "PASS name", "FAIL name: reason" or "SKIP name: reason";
run() prints the totals and returns the exit status (1 on any failure).
Also: wait_for(predicate, secs, what), the one way to wait for an event
(a FAIL naming what did not happen, never a bare sleep); helpers to start
and stop daemons by pid; paths from the environment of tests/run (KM_TOP,
KM_BUILD).
"""

import os
import signal
import subprocess
import sys
import time
import traceback

TOP = os.environ.get("KM_TOP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KM_BUILD") or os.path.join(TOP, "build")


class Failure(Exception):
    pass


class Skipped(Exception):
    pass


def check(cond, why="check failed"):
    if not cond:
        raise Failure(why)


def check_eq(got, want, what="value"):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


def skip(why):
    raise Skipped(why)


def need(state, *keys):
    """Skip the case unless earlier cases left every key in state (a dict)."""
    for k in keys:
        if k not in state:
            skip("an earlier step failed (no %s)" % k)


class Suite:
    def __init__(self):
        self.cases = []
        self.cleanups = []

    def case(self, name):
        def deco(fn):
            self.cases.append((name, fn))
            return fn
        return deco

    def run(self):
        p = f = s = 0
        only = os.environ.get("KTEST_ONLY")
        try:
            for name, fn in self.cases:
                if only and only not in name:
                    continue
                t0 = time.time()
                try:
                    fn()
                    print("PASS %s (%.2fs)" % (name, time.time() - t0), flush=True)
                    p += 1
                except Skipped as e:
                    print("SKIP %s: %s" % (name, e), flush=True)
                    s += 1
                except Failure as e:
                    print("FAIL %s: %s" % (name, e), flush=True)
                    f += 1
                except Exception as e:  # a crash of the case is a failure
                    print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
                    traceback.print_exc(file=sys.stdout)
                    f += 1
        finally:
            for fn in reversed(self.cleanups):
                try:
                    fn()
                except Exception as e:
                    print("cleanup error: %s" % e)
        print("%d passed, %d failed, %d skipped" % (p, f, s))
        return 1 if f else 0


def pid_alive(pid):
    """True if pid runs and is not a zombie."""
    try:
        with open("/proc/%d/status" % pid) as fp:
            for line in fp:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def proc_status(pid, field):
    """A numeric field of /proc/PID/status in kB (VmHWM, VmRSS), or None."""
    try:
        with open("/proc/%d/status" % pid) as fp:
            for line in fp:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def stop_pid(pid, secs=10.0):
    """SIGTERM pid, wait up to secs, then SIGKILL.  Returns True if it went."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if wait_for(lambda: not pid_alive(pid), secs):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def wait_for(fn, secs=10.0, what=None, step=0.05):
    """Poll fn() until it returns a true value, which is returned.  After
    secs: raise Failure("not within Ns: WHAT") when what names the
    event (a string, or a function giving one at the deadline), else
    return None (the caller reports).  Use this, never a bare
    sleep, to wait for something to happen (a log line, a socket, a pid
    gone, a file); a sleep only where time passing is the thing tested."""
    t0 = time.monotonic()
    end = t0 + secs
    while True:
        v = fn()
        if v:
            return v
        now = time.monotonic()
        if now > end:
            if what:
                raise Failure("not within %.1fs: %s" % (
                    now - t0, what() if callable(what) else what))
            return None
        time.sleep(step)


def start_daemon(argv, log_path):
    """Start argv with stdout/stderr appended to log_path; returns Popen."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    finally:
        log.close()
