#!/usr/bin/python3
"""t-kmilter - the shared protocol cases against kmilter itself (no MTA).

Starts build/kmilter -f on a unix socket in a temp dir with a minimal
generated configuration (no KM, no Redis), then drives it with the milter
client: negotiation, pass-through messages with no modifications, abort
then a new message on the same connection, a client that drops the
connection mid-body, malformed packets; plus kmilter's own per-message
log line with the queue id from macro {i}.  A second kmilter with small
budgets (milter.max_sessions, milter.max_inflight_mb, milter.timeout) is
attacked: one connection too many, a message over the in-flight budget, a
message larger than the whole budget, a stalled session.
FAILs when kmilter is not built.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, Suite, check, check_eq, pid_alive, start_daemon, stop_pid, wait_for  # noqa: E402
import labsmtp  # noqa: E402
import milterclient as mc  # noqa: E402
import protocases  # noqa: E402

CONF = """milter: {
	socket = "unix:%(d)s/kmilter.sock";
	socket_mode = "0660";
	pidfile = "%(d)s/kmilter.pid";
	user = "kmilter";
	state_dir = "%(d)s/state";
	spool_dir = "%(d)s/spool";
%(extra)s};
log: { stderr = true; verbose = 1; };
policy: {
	internal_domains = [ "example.com" ];
	internal_hosts = [ "127.0.0.0/8", "::1" ];
};
"""


class Kmilter:
    def __init__(self, tmp, extra=""):
        self.dir = tmp
        self.sock = os.path.join(tmp, "kmilter.sock")
        self.log = os.path.join(tmp, "kmilter.log")
        self.conf = os.path.join(tmp, "kmilter.conf")
        with open(self.conf, "w") as fp:
            fp.write(CONF % {"d": tmp, "extra": extra})
        pw = pwd.getpwnam("kmilter")
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(tmp, sub), mode=0o700)
            os.chown(os.path.join(tmp, sub), pw.pw_uid, pw.pw_gid)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        self.proc = start_daemon([os.path.join(BUILD, "kmilter"), "-f", "-c", self.conf],
                                 self.log)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None and pid_alive(self.pid)

    def ready(self):
        def can():
            try:
                mc.MilterClient(self.sock, timeout=1).close()
                return True
            except OSError:
                return self.proc.poll() is not None and "exited"
        return wait_for(can, 15) is True

    def log_text(self):
        with open(self.log, errors="replace") as fp:
            return fp.read()


BUDGET = """	max_sessions = 3;
	max_inflight_mb = 1;
	timeout = 2;
"""
KB700 = b"x" * 78 + b"\r\n"
KB700 = KB700 * (700 * 1024 // len(KB700))


def budget_client(k, nr_body=True):
    """A negotiated client; nr_body=False: every body chunk is answered, so
    the client knows kmilter has taken it."""
    c = mc.MilterClient(k.sock, timeout=15)
    c.negotiate(protocol=mc.P_ALL if nr_body else mc.P_ALL & ~mc.P_NR_BODY)
    return c


def admitted(k, nr_body=True, client=protocases.CLIENT):
    """A client past connect.  A session that an earlier case closed may
    still count for a moment (kmilter sees the close asynchronously): a
    refused connect is retried, for at most 5 s."""
    def one():
        c = budget_client(k, nr_body)
        c.macros("C", {"j": "mx.example.com", "{client_addr}": client[3]})
        if c.connect(*client).code == "continue":
            return c
        c.close()
        return None
    c = wait_for(one, 5)
    check(c is not None, "connect refused for 5 s")
    return c


def begin(k, qid, body=b"", nr_body=True):
    """A new connection, and a pass-through message up to its body, without
    end of message."""
    c = admitted(k, nr_body)
    c.macros("M", {"i": qid})
    c.mail(protocases.SENDER)
    c.rcpt(protocases.RCPTS[0])
    for n, v in protocases.HEADERS:
        c.header(n, v)
    c.eoh()
    if body:
        c.body(body)
    return c


def end(c, qid):
    c.macros("E", {"i": qid})
    return c.eom().reply


def add_budget_cases(suite):
    tmp = tempfile.mkdtemp(prefix="t-kmilter-budget.")
    os.chmod(tmp, 0o755)
    state = {}
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))

    def stop():
        if "k" in state:
            stop_pid(state["k"].pid)
            state["k"].proc.wait(5)
    suite.cleanups.append(stop)

    @suite.case("budget: a kmilter with max_sessions 3, max_inflight_mb 1, timeout 2 starts")
    def _():
        state["k"] = Kmilter(tmp, BUDGET)
        check(state["k"].ready(), "socket never answered; log: %s" % state["k"].log_text()[-500:])

    def k():
        if "k" not in state or not state["k"].alive():
            check(False, "the budget kmilter is not running")
        return state["k"]

    @suite.case("budget: a connection above milter.max_sessions is tempfailed at connect (451 4.3.2)")
    def _():
        km = k()
        # ready() and earlier cases closed their connections: wait until
        # kmilter has seen every close before counting.
        held = []
        try:
            for i in range(3):
                held.append(admitted(km))
            extra = budget_client(km)
            r = extra.connect(*protocases.CLIENT)
            check_eq(r.code, "replycode", "fourth connection")
            check(r.text.startswith("451 4.3.2"), "reply %r" % (r.text,))
            check("system busy" in r.text, "reply %r" % (r.text,))
            extra.close()
            check(wait_for(lambda: "milter.max_sessions (3)" in km.log_text(), 5),
                  "no log line naming milter.max_sessions")
            held.pop().quit()
            admitted(km).quit()
        finally:
            for c in held:
                c.close()

    @suite.case("budget: a message over milter.max_inflight_mb is tempfailed, the next passes")
    def _():
        km = k()
        a = begin(km, "BUDGETA", KB700, nr_body=False)  # kmilter holds A's 700 kB
        b = begin(km, "BUDGETB", KB700)
        r = end(b, "BUDGETB")
        check_eq(r.code, "replycode", "eom of the message over the budget")
        check(r.text.startswith("451 4.3.2"), "reply %r" % (r.text,))
        b.quit()
        line = labsmtp.wait_log_line({"LAB_LOG": km.log}, "BUDGETB", 5)
        check(line is not None, "no log line for BUDGETB")
        check("result=tempfail" in line and "milter.max_inflight_mb" in line,
              "log line does not name the budget: %s" % line)
        r = end(a, "BUDGETA")
        check_eq(r.code, "continue", "eom of the message within the budget")
        a.quit()
        c = begin(km, "BUDGETC", KB700)
        check_eq(end(c, "BUDGETC").code, "continue", "the next message after A finished")
        c.quit()

    @suite.case("budget: abort and a dropped connection give their bytes back")
    def _():
        km = k()
        a = begin(km, "BUDGETD", KB700, nr_body=False)
        a.abort()
        a.macros("M", {"i": "BUDGETE"})
        a.mail(protocases.SENDER)
        a.rcpt(protocases.RCPTS[0])
        a.body(KB700)
        check_eq(end(a, "BUDGETE").code, "continue", "message after an aborted one")
        d = begin(km, "BUDGETF", KB700, nr_body=False)
        d.close()                            # gone mid-body
        check(wait_for(lambda: "after 716800 body bytes" in km.log_text(), 5),
              "kmilter never saw the dropped connection")
        c = begin(km, "BUDGETG", KB700)
        check_eq(end(c, "BUDGETG").code, "continue", "message after a dropped connection")
        c.quit()
        a.quit()

    @suite.case("budget: a message larger than the whole budget is rejected 552 5.3.4")
    def _():
        km = k()
        c = begin(km, "BUDGETH", KB700 * 2)
        r = end(c, "BUDGETH")
        check_eq(r.code, "replycode", "eom")
        check(r.text.startswith("552 5.3.4"), "reply %r" % (r.text,))
        c.quit()
        line = labsmtp.wait_log_line({"LAB_LOG": km.log}, "BUDGETH", 5)
        check(line is not None and "milter.max_inflight_mb" in line, "log: %s" % line)

    @suite.case("budget: a message on the crypto path counts 8 times its size")
    def _():
        km = k()
        body = KB700[:200 * 1024]            # 200 kB: 1.6 MB on the crypto path
        c = admitted(km, client=("localhost", "4", 40000, "127.0.0.1"))
        c.macros("M", {"i": "BUDGETOUT"})
        check_eq(c.mail("<alice@example.com>").code, "continue", "MAIL FROM (internal)")
        r = c.rcpt("<bob@other.test>")
        check(r.code in ("continue", None), "RCPT: %r" % (r,))
        for n, v in protocases.HEADERS:
            c.header(n, v)
        c.eoh()
        c.body(body)
        r = end(c, "BUDGETOUT")
        c.quit()
        check_eq(r.code, "replycode", "eom of the outbound message")
        check(r.text.startswith("552 5.3.4"), "reply %r" % (r.text,))
        line = labsmtp.wait_log_line({"LAB_LOG": km.log}, "BUDGETOUT", 5)
        check(line is not None and "direction=outbound" in line and
              "milter.max_inflight_mb" in line, "log: %s" % line)
        c = begin(km, "BUDGETPASS", body)     # the same body passing through
        check_eq(end(c, "BUDGETPASS").code, "continue", "eom of the pass-through message")
        c.quit()

    @suite.case("budget: a stalled session (MAIL FROM, then nothing) is ended after milter.timeout")
    def _():
        km = k()
        c = admitted(km)
        c.macros("M", {"i": "STALLED"})
        check_eq(c.mail(protocases.SENDER).code, "continue", "MAIL FROM")
        t = time.time()
        closed = c.is_closed_by_peer(wait=10)
        took = time.time() - t
        c.close()
        check(closed, "kmilter did not close the stalled connection within 10 s")
        check(took >= 1.5, "closed after %.1f s, before milter.timeout (2 s)" % took)
        check_eq(km.log_text().count("closing the connection from"), 1,
                 "log lines for the stalled connection")
        # libmilter then reads end of file and aborts the message (its pool
        # of workers may take up to 10 s to hand the socket to a worker)
        check(wait_for(lambda: "STALLED: milter: message aborted" in km.log_text(), 15),
              "kmilter never freed the stalled session")

    @suite.case("budget: the budget kmilter survived and stops on SIGTERM")
    def _():
        km = k()
        check(stop_pid(km.pid, 15), "still running 15s after SIGTERM; log: %s"
              % km.log_text()[-1500:])
        km.proc.wait(5)
        del state["k"]
        check("ERROR: AddressSanitizer" not in km.log_text(), "ASan report in the log")


def main():
    binary = os.path.join(BUILD, "kmilter")
    if not os.access(binary, os.X_OK):
        print("FAIL kmilter protocol: %s not built (make all)" % binary)
        return 1
    try:
        pwd.getpwnam("kmilter")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "kmilter"], check=True)
    suite = Suite()
    tmp = tempfile.mkdtemp(prefix="t-kmilter.")
    os.chmod(tmp, 0o755)
    r = subprocess.run([binary, "-n", "-c", "/dev/null/none"], capture_output=True, text=True)
    k = Kmilter(tmp)
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    suite.cleanups.append(lambda: (stop_pid(k.pid), k.proc.wait(5)))

    @suite.case("kmilter -n on a missing file fails with a clear message")
    def _():
        check(r.returncode != 0, "exit status 0")
        check("/dev/null/none" in r.stderr + r.stdout, "message names the file: %r" % r.stderr)

    @suite.case("kmilter starts and opens its socket")
    def _():
        ok = k.ready()
        check(ok, "socket never answered; log: %s" % k.log_text()[-500:])

    protocases.add_cases(suite, k)

    @suite.case("one log line per message with the queue id from {i}")
    def _():
        c = protocases.new_client(k)
        steps, res = c.message(protocases.SENDER, protocases.RCPTS, protocases.HEADERS,
                               protocases.BODY, queue_id="LOGQ1")
        c.quit()
        protocases.assert_passed(steps, res)
        env = {"LAB_LOG": k.log}
        line = labsmtp.wait_log_line(env, "LOGQ1", 5)
        check(line is not None, "no log line for LOGQ1")
        f = labsmtp.parse_log_line(line)
        check_eq(f.get("from"), protocases.SENDER, "from=")
        check_eq(f.get("rcpts"), str(len(protocases.RCPTS)), "rcpts=")
        check_eq(f.get("direction"), "pass", "direction=")
        check_eq(f.get("result"), "ok", "result=")
        check_eq(k.log_text().count("LOGQ1: from="), 1, "lines for LOGQ1")

    add_budget_cases(suite)

    @suite.case("kmilter survived every case and stops on SIGTERM")
    def _():
        check(k.alive(), "kmilter is not running")
        check(stop_pid(k.pid, 15), "still running 15s after SIGTERM")
        k.proc.wait(5)
        check("ERROR: AddressSanitizer" not in k.log_text(), "ASan report in the log")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
