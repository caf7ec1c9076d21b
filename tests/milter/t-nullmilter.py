#!/usr/bin/python3
"""t-nullmilter - the protocol cases against the null milter (build/tools/nullmilter).

Checks the milter client (tests/lib/milterclient.py) against libmilter and
the null milter the lab and the benchmarks use as their floor.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, Suite, pid_alive, start_daemon, stop_pid, wait_for  # noqa: E402
import protocases  # noqa: E402
import milterclient as mc  # noqa: E402


class NullMilter:
    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "null.sock")
        self.pidfile = os.path.join(tmp, "null.pid")
        self.log = os.path.join(tmp, "null.log")
        self.proc = start_daemon([os.path.join(BUILD, "tools", "nullmilter"),
                                  "-p", "unix:" + self.sock, "-P", self.pidfile], self.log)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None and pid_alive(self.pid)

    def ready(self):
        def can():
            try:
                mc.MilterClient(self.sock, timeout=1).close()
                return True
            except OSError:
                return False
        return wait_for(can, 10)


def main():
    suite = Suite()
    binary = os.path.join(BUILD, "tools", "nullmilter")
    if not os.access(binary, os.X_OK):
        print("FAIL nullmilter: %s not built (make tools)" % binary)
        return 1
    tmp = tempfile.mkdtemp(prefix="t-nullmilter.")
    m = NullMilter(tmp)
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    suite.cleanups.append(lambda: (stop_pid(m.pid), m.proc.wait(5)))
    if not m.ready():
        print("FAIL nullmilter start: socket never answered")
        return 1

    @suite.case("null milter writes its pid file")
    def _():
        with open(m.pidfile) as fp:
            protocases.check_eq(int(fp.read()), m.pid, "pid in " + m.pidfile)

    protocases.add_cases(suite, m)

    @suite.case("null milter stops on SIGTERM and removes its pid file")
    def _():
        protocases.check(stop_pid(m.pid, 10), "still running 10s after SIGTERM")
        m.proc.wait(5)
        protocases.check(not os.path.exists(m.pidfile), "pid file left behind")
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
