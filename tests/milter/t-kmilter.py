#!/usr/bin/python3
"""t-kmilter - the shared protocol cases against kmilter itself (no MTA).

Starts build/kmilter -f on a unix socket in a temp dir with a minimal
generated configuration (no KM, no Redis), then drives it with the milter
client: negotiation, pass-through messages with no modifications, abort
then a new message on the same connection, a client that drops the
connection mid-body, malformed packets; plus kmilter's own per-message
log line with the queue id from macro {i}.  SKIPs when kmilter is not built.
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
};
log: { stderr = true; verbose = 1; };
policy: {
	internal_domains = [ "example.com" ];
	internal_hosts = [ "127.0.0.0/8", "::1" ];
};
"""


class Kmilter:
    def __init__(self, tmp):
        self.dir = tmp
        self.sock = os.path.join(tmp, "kmilter.sock")
        self.log = os.path.join(tmp, "kmilter.log")
        self.conf = os.path.join(tmp, "kmilter.conf")
        with open(self.conf, "w") as fp:
            fp.write(CONF % {"d": tmp})
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


def main():
    binary = os.path.join(BUILD, "kmilter")
    if not os.access(binary, os.X_OK):
        print("SKIP kmilter protocol: %s not built (make all)" % binary)
        return 0
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

    @suite.case("kmilter survived every case and stops on SIGTERM")
    def _():
        check(k.alive(), "kmilter is not running")
        check(stop_pid(k.pid, 15), "still running 15s after SIGTERM")
        k.proc.wait(5)
        check("ERROR: AddressSanitizer" not in k.log_text(), "ASan report in the log")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
