"""hooklab - what the end-to-end suites share whose lab runs the scripted
admin hook (tests/e2e/hooks/scripted): a work directory with a copy of the
hook (it runs as user kmilter with a clean environment, so its "behaviour"
and "calls" files sit next to it), the lab brought up with extra
configuration, kmctl, and kmilter restarted on a changed kmilter.conf.

    hl = HookLab(suite, "t-name.")
    hl.up(KMILTER_CONF_EXTRA='hook: { path = "%s"; };' % hl.hook)
    hl.behave("unlock=password\\npassword=...\\n")
    hl.kmctl("enroll", addr)
    hl.calls()          # [["unlock", addr, "enhanced"], ...]
    hl.restart_milter('a = 1;', 'a = 2;')
    hl.check_no_secret_logged(["pw"])

The lab is taken down and the directory removed by the suite's cleanups.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from ktest import BUILD, TOP, Failure, check, pid_alive
import labsmtp

LAB = os.path.join(TOP, "tests", "lab")
HOOK_SRC = os.path.join(TOP, "tests", "e2e", "hooks", "scripted")


def run(argv, input=None, ok=True, timeout=120):
    """Run argv; a Failure with the end of its output when ok and it fails."""
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


class HookLab:
    def __init__(self, suite, prefix):
        base = tempfile.mkdtemp(prefix=prefix)
        os.chmod(base, 0o755)       # postfix, kmilter and the hook reach below it
        self.lab = os.path.join(base, "lab")
        self.work = os.path.join(base, "work")
        os.makedirs(os.path.join(self.work, "hooks"))
        os.chmod(self.work, 0o755)
        os.chmod(os.path.join(self.work, "hooks"), 0o755)
        self.hook = os.path.join(self.work, "hooks", "scripted")
        shutil.copy(HOOK_SRC, self.hook)
        os.chmod(self.hook, 0o755)
        self.env = None
        suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
        suite.cleanups.append(lambda: subprocess.run([LAB, "down", self.lab],
                                                     capture_output=True, timeout=120))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def up(self, **conf):
        """tests/lab up with these environment variables (KMILTER_CONF_EXTRA,
        KMILTER_CONF_POLICY, ...); the lab's env, kmilter running."""
        check(os.access(os.path.join(BUILD, "kmilter"), os.X_OK),
              "build/kmilter not built (make all)")
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MILTER="kmilter", **conf)
        r = subprocess.run([LAB, "up", self.lab], env=e, capture_output=True, text=True,
                           timeout=180)
        check(r.returncode == 0, "lab up failed (%d): %s %s" % (r.returncode, r.stdout[-500:],
                                                             r.stderr[-1500:]))
        self.env = labsmtp.load_env(self.lab)
        pid = labsmtp.milter_pid(self.env)
        check(pid is not None and pid_alive(pid), "kmilter not running")
        return self.env

    def kmctl(self, *args, ok=True, input=b""):
        return run(shlex.split(self.env["LAB_KMCTL"]) + list(args), ok=ok, input=input)

    def wpath(self, name):
        return os.path.join(self.work, name)

    def wfile(self, name, data, mode=0o644):
        p = self.wpath(name)
        with open(p, "wb") as fp:
            fp.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(p, mode)
        return p

    def behave(self, text):
        """The hook's behaviour file ("key=value" lines), and a fresh calls file."""
        self.wfile("hooks/behaviour", text)
        self.wfile("hooks/calls", "", 0o666)

    def calls(self):
        with open(self.wpath("hooks/calls")) as fp:
            return [line.split() for line in fp if line.strip()]

    def restart_milter(self, old, new):
        """Replace old by new in kmilter.conf and restart kmilter."""
        conf = self.env["LAB_CONF"]
        with open(conf) as fp:
            text = fp.read()
        check(old in text, "%r not in kmilter.conf" % old)
        with open(conf, "w") as fp:
            fp.write(text.replace(old, new))
        r = subprocess.run([LAB, "restart-milter", self.env["LAB_DIR"]], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, "restart-milter: %s" % r.stderr[-400:])

    def check_no_secret_logged(self, secrets):
        """None of the secrets (str) is in kmilter's log, which is not empty."""
        with open(self.env["LAB_LOG"], "rb") as fp:
            log = fp.read()
        check(len(log) > 0, "empty log")
        for pw in secrets:
            check(pw.encode() not in log, "a password is in the log")
