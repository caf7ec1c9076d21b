#!/usr/bin/python3
"""t-operate - what README's "Operating it" and failure table promise, shown
on a running kmilter (issue 13, item 10).

  - `kmilter -V` prints the versions of kmilter and of the libmilter,
    OpenSSL, hiredis and libconfig it runs with, and exits 0; a bad option
    exits 2;
  - syslog: the lab's kmilter is replaced by one started in a private mount
    namespace (unshare -m) where /dev/log is a datagram socket this test
    listens on, as a syslog daemon would: the lines carry the configured
    facility (local3), the ident kmilter[PID], level info for a message
    that went as policy wants and warning for a downgrade;
  - the counters line comes every log.stats_interval seconds and counts
    the connections and messages this test sent, a downgraded one too
    (downgraded_outbound; kmilter_downgraded_total in the Prometheus format);
  - a full spool: in the same namespace milter.spool_dir is a 256 kB tmpfs
    (write() fails with ENOSPC, as on a full disk); a larger message gets
    451 4.3.2 (spool full or unwritable), the log line says why, nothing is
    delivered or queued; with
    room again the same message is delivered whole;
  - invalidation: a correspondent's certificate re-imported with kmctl
    while kmilter runs (its old one in kmilter's memory cache, which alone
    would keep it for cache.memory_ttl, 60 s) is used by the next message,
    within a second of kmctl's return (measured);
  - SIGHUP applies the revocation group (a certificate revoked in a CRL
    file is used before, not after) and says "<setting> changed: needs a
    restart" once for each changed setting a reload cannot apply;
  - SIGTERM while a message is in progress (its SMTP session past RCPT,
    the milter connection open): a new connection meanwhile is tempfailed,
    the message in progress is completed (250, delivered encrypted and
    whole), kmilter exits 0, the pid file and the milter socket are gone;
    the same for a kmilter run as root (no milter.user), whose socket
    libmilter does not remove.

The namespace needs root and mount rights; without them kmilter runs
outside one, logging to stderr, and the syslog and full-spool cases are
skipped as ci-unavailable, with the reason.
"""
import os
import pwd
import re
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import BUILD, TOP, Suite, check, check_eq, skip, stop_pid, wait_for  # noqa: E402
from ktest import need as ktest_need  # noqa: E402
import revca  # noqa: E402

KMILTER = os.path.join(BUILD, "kmilter")
ALICE, DAVE, NOCERT = "alice@example.com", "dave@partner.example", "nocert@elsewhere.example"
OUTSIDER = "someone@elsewhere.example"
REVOKED = "erin@revoked.example"        # a certificate its CA revoked, in a CRL file
FACILITY = 19                   # local3
STATS_INTERVAL = 2
SPOOL_TMPFS = "256k"

suite = Suite()
S = {}
W = tempfile.mkdtemp(prefix="kmilter-t-operate.", dir="/tmp")
os.chmod(W, 0o755)


def need(*keys):
    ktest_need(S, *keys)


def need_namespace():
    need("env")
    if S["no_ns"]:
        skip("ci-unavailable: %s" % S["no_ns"])


# ------------------------------------------------------------- kmilter -V

def makefile_version():
    with open(os.path.join(TOP, "Makefile")) as fp:
        m = re.search(r"^VERSION\s*=\s*(\S+)", fp.read(), re.M)
    check(m, "no VERSION in the Makefile")
    return m.group(1)


@suite.case("kmilter -V prints kmilter's and its libraries' versions, exits 0; a bad option exits 2")
def _():
    r = subprocess.run([KMILTER, "-V"], capture_output=True, timeout=30)
    check_eq(r.returncode, 0, "kmilter -V: exit status")
    check_eq(r.stderr, b"", "kmilter -V: stderr")
    lines = r.stdout.decode().splitlines()
    want = ["kmilter " + makefile_version(), r"libmilter \d+\.\d+\.\d+",
            r"OpenSSL 3\.\d+\.\d+ .*", r"hiredis \d+\.\d+\.\d+", r"libconfig \d+\.\d+\.\d+"]
    check_eq(len(lines), len(want), "lines printed by kmilter -V (%r)" % lines)
    for line, pat in zip(lines, want):
        check(re.fullmatch(pat, line), "kmilter -V: %r does not match %r" % (line, pat))
    # the OpenSSL it runs with: the library the openssl command loads too
    ov = subprocess.run(["openssl", "version"], capture_output=True, timeout=30).stdout.decode()
    check("(Library: %s)" % lines[2] in ov, "kmilter -V says %r, openssl version %r" % (lines[2], ov))
    with open(os.path.join(TOP, "milter", "kmilter.8")) as fp:
        check('"%s"' % lines[0] in fp.readline(), "kmilter.8 names another version than %r" % lines[0])
    r = subprocess.run([KMILTER, "-Z"], capture_output=True, timeout=30)
    check_eq(r.returncode, 2, "kmilter -Z (a usage error): exit status")


# ------------------------------------------- kmilter -n and a refused start

def need_root_and_user():
    if os.geteuid() != 0:
        skip("ci-unavailable: not root (kmilter -n checks files as milter.user)")
    try:
        pwd.getpwnam("kmilter")
    except KeyError:
        skip("ci-unavailable: no kmilter user (tests/install-deps makes it)")


CHECK_CONF = """milter: {
  socket = "unix:%(d)s/run/k.sock";
  user = "kmilter";
  pidfile = "%(d)s/run/k.pid";
  state_dir = "%(d)s/state";
  spool_dir = "%(d)s/spool";
};
log: { stderr = false; };
km: {
  servers = ( { name = "a"; host = "127.0.0.1"; port = 1; },
              { name = "b"; host = "127.0.0.1"; port = 2; } );
  ca_file = "%(d)s/ca.crt";
  client_cert = "%(d)s/client.crt";
  client_key = "%(d)s/client.key";
  org_ca_cert = "%(d)s/org-ca.crt";
};
cache: { redis: { host = "127.0.0.1"; port = 1; password_file = "%(d)s/redis.pw"; }; };
hook: { path = "%(d)s/hook"; };
"""


def check_fixture(name):
    """A directory with the files CHECK_CONF names, all as kmilter needs
    them (owned by kmilter where kmilter writes or reads secrets)."""
    d = os.path.join(W, name)
    os.mkdir(d)
    os.chmod(d, 0o755)
    L.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t",
           "-days", "2", "-keyout", os.path.join(d, "client.key"),
           "-out", os.path.join(d, "client.crt")])
    for f in ("ca.crt", "org-ca.crt"):
        shutil.copy(os.path.join(d, "client.crt"), os.path.join(d, f))
    with open(os.path.join(d, "redis.pw"), "w") as fp:
        fp.write("secret\n")
    with open(os.path.join(d, "hook"), "w") as fp:
        fp.write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(d, "hook"), 0o755)
    for sub in ("run", "state", "state/signing", "spool"):
        os.mkdir(os.path.join(d, sub))
    with open(os.path.join(d, "state", "gateway.key"), "wb") as fp:
        fp.write(os.urandom(32))
    with open(os.path.join(d, "state", "signing", "0a.key"), "wb") as fp:
        fp.write(b"sealed")
    for f in ("client.key", "redis.pw", "state", "state/gateway.key", "state/signing",
              "state/signing/0a.key", "spool"):
        shutil.chown(os.path.join(d, f), "kmilter", "kmilter")
        os.chmod(os.path.join(d, f), 0o700 if os.path.isdir(os.path.join(d, f)) else 0o600)
    conf = os.path.join(d, "kmilter.conf")
    with open(conf, "w") as fp:
        fp.write(CHECK_CONF % {"d": d})
    return d, conf


def start_refused(d, conf):
    """kmilter started as a daemon with conf; one that did start is stopped
    (by its pid file) so a failing check leaves nothing running."""
    r = subprocess.run([KMILTER, "-c", conf], capture_output=True, timeout=60)
    pidfile = os.path.join(d, "run", "k.pid")
    if r.returncode == 0 and wait_for(lambda: os.path.exists(pidfile), 10):
        with open(pidfile) as fp:
            stop_pid(int(fp.read().strip()))
    return r.returncode, r.stderr.decode()


def kmilter_n(conf, *flags):
    r = subprocess.run([KMILTER, "-n"] + list(flags) + ["-c", conf], capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@suite.case("kmilter -n: every problem of the files in one pass, FILE:LINE: setting, exit 1; none: OK")
def _():
    need_root_and_user()
    d, conf = check_fixture("check-n")
    rc, out, err = kmilter_n(conf, "-N")     # its KM and Redis ports are closed
    check(rc == 0 and "configuration OK" in out, "the good fixture: %d %r %r" % (rc, out, err))
    # break one thing of each kind
    os.rmdir(os.path.join(d, "run"))                                 # socket + pid dir
    shutil.chown(os.path.join(d, "client.key"), "root", "root")      # unreadable key
    os.unlink(os.path.join(d, "redis.pw"))                           # missing secret
    os.unlink(os.path.join(d, "org-ca.crt"))                         # missing org CA
    os.chmod(os.path.join(d, "hook"), 0o644)                         # hook not executable
    shutil.chown(os.path.join(d, "spool"), "root", "root")           # spool not writable
    shutil.chown(os.path.join(d, "state", "signing", "0a.key"), "root", "root")
    rc, out, err = kmilter_n(conf, "-N")
    check_eq(rc, 1, "kmilter -n exit status with problems (%r)" % err)
    want = [
        r"kmilter\.conf:2: milter\.socket: directory %s/run .*No such file" % d,
        r"kmilter\.conf:4: milter\.pidfile: directory %s/run .*No such file" % d,
        r"kmilter\.conf:6: milter\.spool_dir: %s/spool: not writable by kmilter: Permission denied" % d,
        r"kmilter\.conf:14: km\.client_key: %s/client\.key: cannot be read by kmilter: "
        r"Permission denied" % d,
        r"kmilter\.conf:15: km\.org_ca_cert: %s/org-ca\.crt: .*No such file" % d,
        r"kmilter\.conf:17: cache\.redis\.password_file: %s/redis\.pw: .*No such file" % d,
        r"kmilter\.conf:18: hook\.path: %s/hook: cannot be run by kmilter: Permission denied" % d,
        r"kmilter\.conf:5: milter\.state_dir: %s/state/signing/0a\.key: cannot be read by "
        r"kmilter: Permission denied" % d,
    ]
    lines = err.splitlines()
    for pat in want:
        check(any(re.search(pat, line) for line in lines), "no line like %r in:\n%s" % (pat, err))
    check_eq(len(lines), len(want) + 1, "lines (one per problem and a count):\n%s" % err)
    check(lines[-1].endswith(": %d problems" % len(want)), "the last line: %r" % lines[-1])
    # a bad word and a bad CIDR come together too (issue 19: not in stages)
    with open(conf, "a") as fp:
        fp.write('policy: { internal_hosts = [ "10.1.2.0/40" ];\n'
                 '  outbound: { encrypt = "sometimes"; }; };\n')
    rc, out, err = kmilter_n(conf, "-N")
    check(rc == 1 and "policy.outbound.encrypt" in err and "10.1.2.0/40" in err,
          "the schema and the CIDR error in one pass: %r" % err)
    # ... and the files' problems with them, not after they are fixed
    lines = err.splitlines()
    for pat in want:
        check(any(re.search(pat, line) for line in lines),
              "with setting errors, no line like %r in:\n%s" % (pat, err))
    check(lines[-1].endswith(": %d problems" % (len(want) + 2)), "the last line: %r" % lines[-1])


@suite.case("kmilter -n: key files open to others or not the milter user's, a missing socket group, a hook others may write")
def _():
    need_root_and_user()
    d, conf = check_fixture("check-modes")
    st = os.path.join(d, "state")
    os.chmod(os.path.join(st, "gateway.key"), 0o604)                  # seal key readable by others
    os.chmod(os.path.join(st, "signing"), 0o705)                      # signing dir open to others
    shutil.chown(os.path.join(st, "signing", "0a.key"), "nobody")     # not kmilter's (nor root's)
    os.chmod(os.path.join(st, "signing", "0a.key"), 0o644)            # ... and readable by all
    os.chmod(os.path.join(d, "hook"), 0o757)                          # others may write the hook
    with open(conf) as fp:
        text = fp.read()
    with open(conf, "w") as fp:
        fp.write(text.replace('  user = "kmilter";\n',
                              '  user = "kmilter";\n  socket_group = "no-such-group-t";\n', 1))
    rc, out, err = kmilter_n(conf, "-N")
    check_eq(rc, 1, "kmilter -n exit status with problems (%r)" % err)
    want = [
        r"kmilter\.conf:4: milter\.socket_group: no such group \"no-such-group-t\"",
        r"kmilter\.conf:6: milter\.state_dir: %s/gateway\.key: open to others \(mode 0604; "
        r"chmod o-rwx " % st,
        r"kmilter\.conf:6: milter\.state_dir: %s/signing: open to others \(mode 0705;" % st,
        r"kmilter\.conf:6: milter\.state_dir: %s/signing/0a\.key: owned by uid \d+, not by kmilter"
        % st,
        r"kmilter\.conf:6: milter\.state_dir: %s/signing/0a\.key: open to others \(mode 0644;" % st,
        r"kmilter\.conf:19: hook\.path: refused: %s/hook is writable by others" % d,
    ]
    lines = err.splitlines()
    for pat in want:
        check(any(re.search(pat, line) for line in lines), "no line like %r in:\n%s" % (pat, err))
    check_eq(len(lines), len(want) + 1, "lines (one per problem and a count):\n%s" % err)


@suite.case("a start without readable keys is refused before detaching: file, setting, errno on stderr")
def _():
    need_root_and_user()
    d, conf = check_fixture("check-start")
    sock = os.path.join(d, "run", "k.sock")
    # kmctl keygen run as root before kmilter made the state directory
    st = os.path.join(d, "state")
    for f in ("state/gateway.key", "state/signing/0a.key", "state/signing", "state"):
        shutil.chown(os.path.join(d, f), "root", "root")
    rc, err = start_refused(d, conf)
    check(rc != 0, "kmilter started with keys it cannot read (%r)" % err)
    check(re.search(r"kmilter\.conf:5: milter\.state_dir: %s/gateway\.key: cannot be read "
                    r"by kmilter: Permission denied" % st, err),
          "stderr does not name the seal key, the setting and the errno: %r" % err)
    check("refusing to start" in err, "stderr does not say it refuses to start: %r" % err)
    check(not os.path.lexists(sock) and not os.path.lexists(os.path.join(d, "run", "k.pid")),
          "a socket or pid file was left")
    # the KM client key, the same way
    for f in ("state", "state/signing", "state/signing/0a.key", "state/gateway.key"):
        shutil.chown(os.path.join(d, f), "kmilter", "kmilter")
    shutil.chown(os.path.join(d, "client.key"), "root", "root")
    rc, err = start_refused(d, conf)
    check(rc != 0 and re.search(r"km\.client_key: %s/client\.key: cannot be read by "
                                          r"kmilter: Permission denied" % d, err),
          "the unreadable client key: %d %r" % (rc, err))


# ------------------------------------------------- a syslog daemon of our own

class SyslogListener:
    """A unix datagram socket kmilter's syslog() writes to: every line
    received is kept with its arrival time and appended to a file (which
    labsmtp's per-message helpers read as the kmilter log)."""

    LINE = re.compile(r"<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) ([^\[: ]+)\[(\d+)\]: (.*)", re.S)

    def __init__(self, path, logfile):
        self.path, self.logfile = path, logfile
        self.lines = []         # (time, pri, ident, pid, text)
        self.bad = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        with open(self.logfile, "ab") as out:
            while not self.stop:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    return
                t = time.time()
                text = data.decode("utf-8", "replace").rstrip("\n\0")
                m = self.LINE.fullmatch(text)
                with self.lock:
                    if m:
                        self.lines.append((t, int(m.group(1)), m.group(3), int(m.group(4)), m.group(5)))
                    else:
                        self.bad.append(text)
                out.write(text.encode() + b"\n")
                out.flush()

    def find(self, pat, after=0):
        """Lines (as tuples) whose text matches pat, received from index after."""
        with self.lock:
            got = self.lines[after:]
        return [x for x in got if re.search(pat, x[4])]

    def count(self):
        with self.lock:
            return len(self.lines)

    def close(self):
        self.stop = True
        self.sock.close()


class StderrLog:
    """kmilter's stderr log (log.stderr, when no namespace can be made),
    read as SyslogListener's lines: the time is the line's timestamp."""

    LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3}) kmilter: (.*)")

    def __init__(self, path):
        self.path, self.pos, self.lines, self.bad = path, 0, [], []

    def refresh(self):
        try:
            with open(self.path, "rb") as fp:
                fp.seek(self.pos)
                data = fp.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.pos += end
        for raw in data[:end].decode("utf-8", "replace").splitlines():
            m = self.LINE.fullmatch(raw)
            if m:
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000
                self.lines.append((t, None, "kmilter", None, m.group(3)))

    def find(self, pat, after=0):
        self.refresh()
        return [x for x in self.lines[after:] if re.search(pat, x[4])]

    def count(self):
        self.refresh()
        return len(self.lines)

    def close(self):
        pass


# ----------------------------------------------------- kmilter in a namespace

NS_SCRIPT = r'''
set -e
spool=$1 olddev=$2 logsock=$3 conf=$4 uid=$5 gid=$6 size=$7
mount -t tmpfs -o "size=$size,mode=0700,uid=$uid,gid=$gid" kmilter-spool "$spool"
mount --rbind /dev "$olddev"
mount -t tmpfs -o mode=0755,size=64k kmilter-dev /dev
for n in null zero full random urandom tty; do
	[ -e "$olddev/$n" ] || continue
	: > "/dev/$n"
	mount --bind "$olddev/$n" "/dev/$n"
done
ln -s /proc/self/fd /dev/fd
: > /dev/log
mount --bind "$logsock" /dev/log
exec "$8" -f -c "$conf"
'''


def ns_probe():
    """'' if a mount namespace with a tmpfs can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return "no unshare or nsenter (util-linux)"
    d = os.path.join(W, "probe")
    os.mkdir(d)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                        'mount -t tmpfs -o size=16k probe "$1" && : > "$1/x"', "sh", d],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        return "unshare -m + mount tmpfs failed: %s" % r.stderr.decode("utf-8", "replace").strip()[-200:]
    return ""


def operate_conf(lab, syslog):
    """The lab's configuration with a short counters interval and a 64 kB
    in-memory spool, logging to syslog (local3) if syslog."""
    with open(lab.env["LAB_CONF"]) as fp:
        text = fp.read()
    check("\tstderr = true;\n" in text, "the lab's config has no log.stderr = true")
    text = text.replace("\tstderr = true;\n", '\tstderr = %s;\n\tfacility = "local3";\n'
                        "\tstats_interval = %d;\n" % ("false" if syslog else "true", STATS_INTERVAL), 1)
    text = text.replace("\tverbose = 1;\n", "\tverbose = 2;\n", 1)     # "keystore: invalidated"
    text = re.sub(r"(\n\tspool_dir = [^\n]*\n)", r"\1\tspool_memory_max = 65536;\n", text, count=1)
    p = os.path.join(W, "operate.conf")
    with open(p, "w") as fp:
        fp.write(text)
    os.chmod(p, 0o640)
    shutil.chown(p, "root", "kmilter")
    r = subprocess.run([KMILTER, "-n", "-c", p], capture_output=True, timeout=30)
    check(r.returncode == 0, "kmilter -n refuses %s: %s" % (p, (r.stdout + r.stderr).decode()[-400:]))
    return p


@suite.case("lab up; kmilter restarted in a mount namespace (/dev/log ours, spool a 256 kB tmpfs) if one can be made")
def _():
    why = ns_probe()
    lab = L.Lab("t-operate")
    S["lab"] = lab
    lab.up()
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)
    L.enroll_users(lab, [ALICE])
    pki = L.OutsidePKI(lab)
    S["dave"] = L.import_certs(lab, pki, [DAVE])[DAVE]
    S["pki"] = pki
    conf = operate_conf(lab, not why)
    S["conf"] = conf
    old = lab.milter_pid()
    check(old and stop_pid(old), "the lab's kmilter did not stop")
    if why:
        start_plain(lab, conf)
        S["no_ns"] = why
        print("INFO no mount namespace (%s): kmilter logs to stderr; the syslog and "
              "full-spool cases are skipped" % why, flush=True)
        return
    logdir = os.path.join(W, "log")
    os.mkdir(logdir)
    os.chmod(logdir, 0o755)
    olddev = os.path.join(W, "olddev")
    os.mkdir(olddev)
    syslog_file = os.path.join(W, "syslog.txt")
    S["syslog"] = SyslogListener(os.path.join(logdir, "dev-log"), syslog_file)
    spool = os.path.join(lab.dir, "kmilter", "spool")
    pw = pwd.getpwnam("kmilter")
    kuid, kgid = pw.pw_uid, pw.pw_gid
    stderr_path = os.path.join(W, "kmilter.stderr")
    launch(lab, ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", NS_SCRIPT, "sh",
                 spool, olddev, S["syslog"].path, conf, str(kuid), str(kgid), SPOOL_TMPFS, KMILTER],
           stderr_path)
    S["env"] = dict(lab.env, LAB_LOG=syslog_file)
    S["stderr"] = stderr_path
    S["spool"] = spool
    S["no_ns"] = ""


def launch(lab, argv, errfile):
    """Start kmilter in place of the lab's (argv ends by exec'ing it, so
    the pid is kmilter's) and wait for its start line and socket."""
    with open(errfile, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)
    S["proc"] = proc
    # lab down stops what DIR/pids records: this kmilter now
    with open(os.path.join(lab.dir, "pids", "milter.pid"), "w") as fp:
        fp.write("%d\n" % proc.pid)
    up = wait_for(lambda: proc.poll() is not None or
                  (S["syslog"].find(r"^starting kmilter ") and
                   os.path.exists(lab.env["LAB_MILTER_SOCK"])), 20)
    check(up and proc.poll() is None, "kmilter did not start: %s" %
          read(errfile)[-600:].decode("utf-8", "replace"))


def start_plain(lab, conf):
    """Without a namespace: kmilter as the lab starts it, on stderr."""
    log = os.path.join(W, "kmilter.log")
    S["syslog"] = StderrLog(log)
    launch(lab, [KMILTER, "-f", "-c", conf], log)
    S["env"] = dict(lab.env, LAB_LOG=log)


def submit(sender, rcpt, raw, source=None):
    qid = L.labsmtp.submit(S["env"], sender, [rcpt], raw, source=source)
    line = L.labsmtp.wait_log_line(S["env"], qid, 20)
    check(line, "no kmilter log line for %s" % qid)
    return qid, line


def syslog_of(qid):
    got = S["syslog"].find(r"^%s: from=<" % qid)
    check(len(got) == 1, "syslog lines for %s: %r" % (qid, got))
    return got[0]


@suite.case("kmilter -n asks the KM servers (TLS handshake) and Redis (PING): a closed KM port is one line; -N skips it")
def _():
    need("env")
    with open(S["conf"]) as fp:
        text = fp.read()
    # the lab's configuration (operate_conf: kmilter -n said OK, KM and Redis answering)
    port = revca.free_port()
    bad, n = re.subn(r'(name = "km-b"; host = "127\.0\.0\.1"; port = )\d+;', r"\g<1>%d;" % port, text)
    check_eq(n, 1, "km-b in the lab's config")
    conf = os.path.join(W, "closed-km.conf")
    with open(conf, "w") as fp:
        fp.write(bad)
    os.chmod(conf, 0o640)
    shutil.chown(conf, "root", "kmilter")
    rc, out, err = kmilter_n(conf)
    lines = err.splitlines()
    check(rc == 1 and len(lines) == 2, "a closed KM port: %d %r" % (rc, err))
    check(re.match(r"%s:\d+: km\.servers: server km-b \(127\.0\.0\.1 port %d\): " % (re.escape(conf), port),
                   lines[0]), "the line: %r" % lines[0])
    check(lines[1].endswith(": 1 problem"), "the count: %r" % lines[1])
    rc, out, err = kmilter_n(conf, "-N")
    check(rc == 0 and "configuration OK" in out and err == "", "with -N: %d %r %r" % (rc, out, err))
    # Redis refusing the password
    pw = os.path.join(W, "wrong-redis.pw")
    with open(pw, "w") as fp:
        fp.write("not-the-password\n")
    os.chmod(pw, 0o600)
    shutil.chown(pw, "kmilter", "kmilter")
    wrong, n = re.subn(r'password_file = "[^"]*"', 'password_file = "%s"' % pw, text, count=1)
    with open(conf, "w") as fp:
        fp.write(wrong)
    rc, out, err = kmilter_n(conf)
    lines = err.splitlines()
    check(n == 1 and rc == 1 and len(lines) == 2 and
          re.match(r"%s:\d+: cache\.redis\.socket: .*AUTH" % re.escape(conf), lines[0]),
          "a wrong Redis password: %d %r" % (rc, err))


@suite.case("syslog: facility local3, ident kmilter[pid], info for ok, warning for a downgrade")
def _():
    need_namespace()
    pid = S["proc"].pid
    # pass: an outside client, an outside sender
    m = L.plain_msg(OUTSIDER, DAVE, 800, "pass")
    qid_ok, _ = submit(OUTSIDER, DAVE, m.raw, source=L.OUTSIDE_CLIENT)
    # downgraded: alice to a recipient without a certificate, sent signed only
    m = L.plain_msg(ALICE, NOCERT, 800, "outbound")
    qid_dg, _ = submit(ALICE, NOCERT, m.raw)
    for qid, sev, result in ((qid_ok, 6, "ok"), (qid_dg, 4, "downgraded")):
        t, pri, ident, lpid, text = syslog_of(qid)
        check_eq((pri >> 3, pri & 7), (FACILITY, sev), "facility and level of %r" % text)
        check_eq((ident, lpid), ("kmilter", pid), "ident and pid of %r" % text)
        f = L.labsmtp.parse_log_line(text)
        check_eq(f.get("result"), result, "result of %r" % text)
        for k in ("from", "rcpts", "size", "direction", "action", "ms"):
            check(k in f, "no %s= in %r" % (k, text))
    start = S["syslog"].find(r"^starting kmilter ")
    check(start and start[0][1] == (FACILITY << 3) | 6, "the start line: %r" % start)
    check_eq(S["syslog"].bad, [], "lines not in syslog's <PRI>TIMESTAMP IDENT[PID]: form")
    with open(S["stderr"], "rb") as fp:
        check_eq(fp.read(), b"", "kmilter's stderr (all of it should have gone to syslog)")


# ------------------------------------------------------------ the counters

STATS_RE = r"^stats: connections=\d+ "


def stats_fields(text):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


@suite.case("a counters line every log.stats_interval seconds counts what was sent")
def _():
    need("env")
    lg = S["syslog"]
    first = wait_for(lambda: lg.find(STATS_RE), STATS_INTERVAL + 3)
    check(first, "no counters line within %d s" % (STATS_INTERVAL + 3))
    mark = lg.count()
    base = stats_fields(lg.find(STATS_RE)[-1][4])
    # four connections: one outbound message (rewritten), one outbound
    # downgraded (signed only: no certificate), two passed through
    m = L.plain_msg(ALICE, DAVE, 1000, "outbound")
    submit(ALICE, DAVE, m.raw)
    m = L.plain_msg(ALICE, NOCERT, 1000, "outbound")
    _, line = submit(ALICE, NOCERT, m.raw)
    check("result=downgraded" in line, "alice to %s: %r" % (NOCERT, line))
    for _ in range(2):
        m = L.plain_msg(OUTSIDER, DAVE, 1000, "pass")
        submit(OUTSIDER, DAVE, m.raw, source=L.OUTSIDE_CLIENT)
    mark2 = lg.count()
    want = dict(base)
    for k, n in (("connections", 4), ("outbound", 2), ("pass", 2), ("rewritten", 2), ("passed", 2),
                 ("downgraded_outbound", 1)):
        want[k] += n
    got = wait_for(lambda: lg.find(STATS_RE, mark2), STATS_INTERVAL + 3)
    check(got, "no counters line within %d s of the messages" % (STATS_INTERVAL + 3))
    f = stats_fields(got[0][4])
    for k in ("connections", "outbound", "inbound", "pass", "rewritten", "passed", "rejected",
              "tempfailed", "aborted", "downgraded_outbound", "downgraded_inbound"):
        check_eq(f.get(k), want.get(k), "%s in %r (before: %r)" % (k, got[0][4], base))
    for k in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms"):
        check(k in f, "no %s in %r" % (k, got[0][4]))
    # the interval: consecutive lines, by their arrival
    wait_for(lambda: len(lg.find(STATS_RE, mark)) >= 3, 2 * STATS_INTERVAL + 3)
    ts = [x[0] for x in lg.find(STATS_RE, mark)]
    check(len(ts) >= 3, "counters lines since the first: %d" % len(ts))
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    print("INFO counters lines %.2f s apart (log.stats_interval = %d)" %
          (sum(gaps) / len(gaps), STATS_INTERVAL), flush=True)
    # the main loop wakes every second and compares whole seconds
    check(all(STATS_INTERVAL - 1.0 <= g <= STATS_INTERVAL + 1.5 for g in gaps),
          "gaps between counters lines: %r" % gaps)


# ------------------------------------------------------------ a full spool

def read(path):
    with open(path, "rb") as fp:
        return fp.read()


def in_namespace(*argv):
    return L.run(["nsenter", "-t", str(S["proc"].pid), "-m", "--"] + list(argv), ok=False)


@suite.case("a full spool: 451 4.3.2, a clear log line, nothing delivered; with room it goes whole")
def _():
    need_namespace()
    r = in_namespace("df", "-k", "--output=size,fstype", S["spool"])
    check(r.returncode == 0 and b"tmpfs" in r.stdout, "the spool is not our tmpfs: %r" % r.stdout)
    m = L.plain_msg(OUTSIDER, DAVE, 600 * 1024, "pass")
    mark = S["syslog"].count()
    try:
        qid = L.labsmtp.submit(S["env"], OUTSIDER, [DAVE], m.raw, source=L.OUTSIDE_CLIENT)
        check(False, "a 600 kB message through a full 256 kB spool was accepted (%s)" % qid)
    except smtplib.SMTPDataError as e:
        code, resp = e.smtp_code, e.smtp_error.decode("latin-1")
    check(code == 451 and resp.startswith("4.3.2") and "spool full or unwritable" in resp,
          "reply to a full spool: %d %s" % (code, resp))
    got = wait_for(lambda: S["syslog"].find(r": from=<%s> .*result=tempfail" % OUTSIDER, mark), 10)
    check(got, "no tempfail line for the message")
    text = got[0][4]
    check("No space left on device" in text and S["spool"] in text,
          "the log line does not say the spool is full: %r" % text)
    qid = text.split(":", 1)[0]
    check(not any(m.token.encode() in read(p) for p in L.labsmtp.delivered_files(S["env"])),
          "a copy was delivered")
    check(qid not in S["lab"].postqueue(), "%s stays in Postfix's queue" % qid)
    # room again: the client's retry of the same message is delivered whole
    r = in_namespace("mount", "-o", "remount,size=4m", S["spool"])
    check(r.returncode == 0, "remount: %r" % r.stderr)
    qid = L.labsmtp.submit(S["env"], OUTSIDER, [DAVE], m.raw, source=L.OUTSIDE_CLIENT)
    _, msg = L.labsmtp.read_delivered(L.labsmtp.wait_delivered(S["env"], qid, 60))
    _, body = L.labsmtp.split_message(msg)
    check(L.labsmtp.lf(body) == L.labsmtp.lf(m.body), "the retried message is not delivered whole")
    in_namespace("mount", "-o", "remount,size=%s" % SPOOL_TMPFS, S["spool"])


# ---------------------------------------------------------- Prometheus

PROM_SAMPLE = re.compile(r'(kmilter_[a-z0-9_]+)(\{[a-z_]+="[^"\\]*"\})? (-?[0-9]+)')


def prom_parse(text):
    """The Prometheus text format as node_exporter's textfile collector
    reads it: {family: (type, {labels: value})}; every family with HELP
    and TYPE before its first sample, its samples together."""
    fams, order, helps, cur = {}, [], set(), None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            check(name not in helps, "HELP twice for %s" % name)
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            check(name in helps and name not in fams, "TYPE of %s without HELP, or twice" % name)
            check(typ in ("counter", "gauge", "untyped"), "type %r" % typ)
            check(typ != "counter" or name.endswith("_total"), "counter %s without _total" % name)
            fams[name] = (typ, {})
            order.append(name)
            cur = name
            continue
        m = PROM_SAMPLE.fullmatch(line)
        check(m, "not a sample line: %r" % line)
        check(m.group(1) == cur, "sample of %s outside its family (after %s)" % (m.group(1), cur))
        fams[cur][1][m.group(2) or ""] = int(m.group(3))
    return fams


@suite.case("kmctl stats --format prometheus: kmilter_* families with HELP/TYPE agree with kmctl stats; the textfile collector script")
def _():
    need("env")
    kmctl = shlex.split(S["env"]["LAB_KMCTL"])
    text = L.run(kmctl + ["stats"]).stdout.decode()
    prom = L.run(kmctl + ["stats", "--format", "prometheus"]).stdout.decode()
    plain = stats_fields(text)
    fams = prom_parse(prom)
    msgs = fams.get("kmilter_messages_total", (None, {}))[1]
    for d in ("outbound", "inbound", "pass"):
        check_eq(msgs.get('{direction="%s"}' % d), plain[d], "messages %s" % d)
    check(plain["outbound"] >= 1, "no outbound message counted: %r" % text)
    outcomes = fams["kmilter_message_outcomes_total"][1]
    for o in ("rewritten", "passed", "rejected", "tempfailed", "aborted"):
        check_eq(outcomes.get('{outcome="%s"}' % o), plain[o], "outcome %s" % o)
    check_eq(fams["kmilter_connections_total"][1][""], plain["connections"], "connections")
    dg = fams.get("kmilter_downgraded_total", ("", {}))
    check_eq(dg, ("counter", {'{direction="outbound"}': plain["downgraded_outbound"],
                              '{direction="inbound"}': plain["downgraded_inbound"]}), "downgraded")
    check(plain["downgraded_outbound"] >= 1, "no downgraded message counted: %r" % text)
    check_eq(set(fams["kmilter_latency_milliseconds"][1]),
             {'{quantile="0.5"}', '{quantile="0.9"}', '{quantile="0.99"}'}, "latency quantiles")
    hits = fams["kmilter_key_cache_hits_total"][1]
    check_eq((hits['{level="l1"}'], hits['{level="l2"}']),
             (plain["keys_l1_hits"], plain["keys_l2_hits"]), "cache hits")
    for f in ("kmilter_key_lookups_total", "kmilter_km_errors_total", "kmilter_km_fetches_total",
              "kmilter_cache_errors_total", "kmilter_hook_calls_total", "kmilter_hook_outcomes_total"):
        check(f in fams, "no %s in:\n%s" % (f, prom))
    # contrib/prometheus/kmilter-textfile: the same, and kmilter_up
    out = os.path.join(W, "textfile")
    os.mkdir(out)
    os.chmod(out, 0o777)
    script = os.path.join(TOP, "contrib", "prometheus", "kmilter-textfile")
    as_kmilter = ["runuser", "-u", "kmilter", "--", "env", "KMCTL=" + os.path.join(BUILD, "kmctl")]
    L.run(as_kmilter + ["KMILTER_CONF=" + S["conf"], script, out])
    check_eq(sorted(os.listdir(out)), ["kmilter.prom"], "files the collector script left")
    got = prom_parse(read(os.path.join(out, "kmilter.prom")).decode())
    check_eq(got["kmilter_up"], ("gauge", {"": 1}), "kmilter_up")
    check("kmilter_messages_total" in got, "no messages in the textfile")
    # kmilter not reachable: kmilter_up 0 and nothing else
    bad = os.path.join(W, "no-control.conf")
    with open(S["conf"]) as fp:
        conf_text = fp.read()
    with open(bad, "w") as fp:
        fp.write(conf_text.replace("milter: {\n", 'milter: {\n\tcontrol_socket = "%s/none.sock";\n' % W, 1))
    os.chmod(bad, 0o644)
    L.run(as_kmilter + ["KMILTER_CONF=" + bad, script, out])
    got = prom_parse(read(os.path.join(out, "kmilter.prom")).decode())
    check_eq(list(got), ["kmilter_up"], "families with kmilter down")
    check_eq(got["kmilter_up"][1][""], 0, "kmilter_up with kmilter down")


# ------------------------------------------------------------ invalidation

def decrypts_with(msg, crt, key):
    p = os.path.join(W, "dec.in")
    with open(p, "wb") as fp:
        fp.write(msg)
    r = L.run(["openssl", "cms", "-decrypt", "-in", p, "-recip", crt, "-inkey", key], ok=False)
    return r.returncode == 0


def to_dave(tag):
    m = L.plain_msg(ALICE, DAVE, 1000, "outbound")
    qid = L.labsmtp.submit(S["env"], ALICE, [DAVE], m.raw)
    _, msg = L.labsmtp.read_delivered(L.labsmtp.wait_delivered(S["env"], qid, 30))
    check(L.is_enveloped(msg), "%s: alice's mail to dave is not encrypted" % tag)
    return msg


@suite.case("kmctl import of a new certificate reaches the running kmilter within 1 s")
def _():
    need("env")
    old_crt, old_key = S["dave"]
    keep = (os.path.join(W, "dave-old.crt"), os.path.join(W, "dave-old.key"))
    shutil.copy(old_crt, keep[0])
    shutil.copy(old_key, keep[1])
    msg = to_dave("before")
    check(decrypts_with(msg, *keep), "before the change: not encrypted to dave's first certificate")
    new_crt, new_key = S["pki"].make(DAVE)     # dave's new key, same file names
    msg = to_dave("cached")
    check(decrypts_with(msg, *keep), "the old certificate is not what kmilter holds (cache cold?)")
    mark = S["syslog"].count()
    S["lab"].kmctl("import", DAVE, new_crt)
    t1 = time.time()
    first = None
    while time.time() < t1 + 5:
        ts = time.time()
        msg = to_dave("after")
        if decrypts_with(msg, new_crt, new_key):
            first = ts - t1
            break
        check(decrypts_with(msg, *keep), "encrypted to neither certificate")
    check(first is not None, "5 s after kmctl import, mail to dave is still encrypted to the old cert")
    print("INFO first message with the new certificate submitted %.3f s after kmctl returned" % first,
          flush=True)
    check(first <= 1.0, "the new certificate was used %.3f s after kmctl import (> 1 s)" % first)
    # when kmilter dropped dave's entries, by the arrival of its log line
    got = S["syslog"].find(r"^keystore: invalidated ", mark)
    check(got, "no 'keystore: invalidated' line")
    print("INFO kmilter logged the invalidation %+.3f s from kmctl's return" % (got[0][0] - t1),
          flush=True)
    check(got[0][0] - t1 <= 1.0, "invalidation logged %.3f s after kmctl returned" % (got[0][0] - t1))


# ------------------------------------------------------------------ SIGHUP

def reload_with(text, *pats):
    """Write text as kmilter's configuration, SIGHUP, wait for each of pats
    (after the signal) and return the lines found."""
    with open(S["conf"], "w") as fp:
        fp.write(text)
    mark = S["syslog"].count()
    os.kill(S["proc"].pid, signal.SIGHUP)
    for pat in pats:
        found = wait_for(lambda: S["syslog"].find(pat, mark), 20)
        check(found, "no line like %r after SIGHUP in:\n%s" %
              (pat, "\n".join(x[4] for x in S["syslog"].find("", mark)[-20:])))
    return mark


@suite.case("SIGHUP applies km, cache and hook: a new key store is built and used; a broken one keeps the old")
def _():
    need("env")
    with open(S["conf"]) as fp:
        orig = fp.read()
    check("cache: {\n" in orig and "password_file = " in orig, "the lab's config has no cache group")
    hook = os.path.join(W, "hook.sh")
    with open(hook, "w") as fp:
        fp.write("#!/bin/sh\nexit 0\n")
    os.chmod(hook, 0o755)
    changed = orig.replace("cache: {\n", "cache: {\n\tmemory_entries = 0;\n", 1) + \
        'hook: { path = "%s"; };\n' % hook
    reload_with(changed, r"^keystore: L1 off, L2 redis, KM on, hook on",
                r"^reloaded configuration from ")
    msg = to_dave("after the reload")
    check(decrypts_with(msg, *S["dave"]), "after the reload: dave cannot decrypt")
    # a cache group the key store cannot be built from: the running one stays
    broken = re.sub(r'password_file = "[^"]*"', 'password_file = "%s/no-such-pw"' % W, changed, count=1)
    mark = reload_with(broken, r"^reload: key store \(km, cache, hook\): .*no-such-pw.*keeping")
    msg = to_dave("after the refused reload")
    check(decrypts_with(msg, *S["dave"]), "after the refused reload: dave cannot decrypt")
    check(not S["syslog"].find(r"^reloaded configuration from ", mark),
          "a reload line after the refused key store")
    reload_with(orig, r"^keystore: L1 on, L2 redis, KM on, hook off", r"^reloaded configuration from ")


def to_revoked(tag):
    """alice to REVOKED: (delivered message, parsed log line)."""
    m = L.plain_msg(ALICE, REVOKED, 1000, "outbound")
    qid = L.labsmtp.submit(S["env"], ALICE, [REVOKED], m.raw)
    _, msg = L.labsmtp.read_delivered(L.labsmtp.wait_delivered(S["env"], qid, 30))
    line = L.labsmtp.wait_log_line(S["env"], qid, 10)
    check(line, "%s: no kmilter log line for %s" % (tag, qid))
    return msg, line


@suite.case("SIGHUP applies revocation (a new checker: a revoked certificate is no longer used); "
            "one line per changed setting that needs a restart")
def _():
    need("env")
    with open(S["conf"]) as fp:
        orig = fp.read()
    check("policy: {\n" in orig and "inbound:" not in orig and "revocation:" not in orig,
          "the lab's config: no policy group, or already an inbound or revocation group")
    d = os.path.join(W, "revca")
    cnf = revca.mkca(d, "Revoking CA")
    crt, _ = revca.issue(d, cnf, REVOKED)
    revca.revoke(cnf, crt)
    crl = os.path.join(d, "ca.crl")
    revca.gencrl(cnf, crl)
    os.chmod(os.path.join(d, "ca.crt"), 0o644)
    S["lab"].kmctl("import", REVOKED, crt)
    msg, line = to_revoked("revocation off")
    check(L.is_enveloped(msg) and "result=ok" in line, "revocation off: not encrypted: %r" % line)
    # revocation on, its CA trusted; two settings only a restart applies
    on = orig.replace("policy: {\n", 'policy: {\n\tinbound: { ca_file = "%s"; };\n'
                      % os.path.join(d, "ca.crt"), 1) + \
        'revocation: { check = "soft"; crl_files = [ "%s" ]; };\n' % crl
    on = on.replace("milter: {\n", "milter: {\n\ttimeout = 123;\n", 1)
    check("\tsocket_mode = \"0660\";\n" in on, "the lab's config has no socket_mode 0660")
    on = on.replace("\tsocket_mode = \"0660\";\n", "\tsocket_mode = \"0600\";\n", 1)
    mark = reload_with(on, r"^reload: revocation\.check changed: new revocation checker$",
                       r"^reloaded configuration from ")
    restart = [x[4] for x in S["syslog"].find(r"needs a restart", mark)]
    check_eq(sorted(restart), ["reload: milter.socket_mode changed: needs a restart",
                               "reload: milter.timeout changed: needs a restart"],
             "the restart lines")
    msg, line = to_revoked("revocation on")
    f = L.labsmtp.parse_log_line(line)
    check(not L.is_enveloped(msg) and f.get("result") == "downgraded" and "revoked" in line,
          "revocation on after the reload: %r" % line)
    # and off again: encrypted again, no restart line for what a reload applies
    mark = reload_with(orig, r"^reload: revocation\.check changed: new revocation checker$",
                       r"^reloaded configuration from ")
    msg, line = to_revoked("revocation off again")
    check(L.is_enveloped(msg) and "result=ok" in line, "revocation off again: %r" % line)
    check_eq(len(S["syslog"].find(r"needs a restart", mark)), 2, "restart lines going back")


# ---------------------------------------------------------------- SIGTERM

@suite.case("SIGTERM with a message in progress: it is completed, kmilter exits 0, pid file and socket removed")
def _():
    need("env")
    proc, lg = S["proc"], S["syslog"]
    pidfile = S["env"]["LAB_KMILTER_PID_FILE"]
    with open(pidfile) as fp:
        check_eq(int(fp.read().strip()), proc.pid, "the pid in the pid file")
    m = L.plain_msg(ALICE, DAVE, 20000, "outbound")
    s = L.labsmtp.connect(S["env"])
    try:
        check_eq(s.mail(ALICE)[0], 250, "MAIL FROM")
        check_eq(s.rcpt(DAVE)[0], 250, "RCPT TO")
        mark = lg.count()
        os.kill(proc.pid, signal.SIGTERM)
        stopping = wait_for(lambda: lg.find(r"^stopping kmilter: finishing \d+ open", mark), 10)
        check(stopping, "no 'stopping kmilter' line after SIGTERM")
        n = int(re.search(r"finishing (\d+)", stopping[0][4]).group(1))
        check(n >= 1, "kmilter counts %d open connections with one in progress" % n)
        check(proc.poll() is None, "kmilter exited with a connection in progress")
        # a new connection meanwhile is tempfailed: its client retries later
        late = L.plain_msg(OUTSIDER, DAVE, 500, "pass")
        try:
            L.labsmtp.submit(S["env"], OUTSIDER, [DAVE], late.raw, source=L.OUTSIDE_CLIENT)
            check(False, "a new connection after SIGTERM had its message accepted")
        except smtplib.SMTPResponseException as e:
            reply = (e.smtp_code, e.smtp_error)
        except smtplib.SMTPRecipientsRefused as e:
            reply = list(e.recipients.values())[0]
        check(400 <= reply[0] < 500, "a new connection after SIGTERM: %r" % (reply,))
        print("INFO a new connection while stopping got %r" % (reply,), flush=True)
        check(wait_for(lambda: lg.find(r"connection from .* refused: kmilter is stopping", mark), 5),
              "no log line for the connection refused while stopping (it got %r)" % (reply,))
        code, resp = s.data(m.raw)
        check_eq(code, 250, "the message in progress after SIGTERM: %r" % resp)
        qid = L.QUEUED_RE.search(resp).group(1).decode()
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()
    try:
        rc = proc.wait(timeout=25)
    except subprocess.TimeoutExpired:
        check(False, "kmilter still runs 25 s after SIGTERM")
    check_eq(rc, 0, "kmilter's exit status after SIGTERM")
    check(not os.path.lexists(pidfile), "the pid file %s is left behind" % pidfile)
    sock = S["env"]["LAB_MILTER_SOCK"]
    check(not os.path.lexists(sock), "the milter socket %s is left behind" % sock)
    check(lg.find(r"^kmilter stopped$", mark), "no 'kmilter stopped' line")
    _, msg = L.labsmtp.read_delivered(L.labsmtp.wait_delivered(S["env"], qid, 30))
    check(L.is_enveloped(msg) and m.marker.encode() not in msg, "not delivered encrypted")
    check(decrypts_with(msg, *S["dave"]), "dave cannot decrypt it")
    line = L.labsmtp.log_line(S["env"], qid) or ""
    check("result=ok" in line, "its log line: %r" % line)


@suite.case("kmilter run as root (no milter.user, where libmilter leaves its socket): a stop removes socket and pid file")
def _():
    need("env")
    if os.geteuid() != 0:
        skip("ci-unavailable: not root")
    with open(S["conf"]) as fp:
        text = fp.read()
    sock, pidfile = os.path.join(W, "root.sock"), os.path.join(W, "root.pid")
    log = os.path.join(W, "root.log")
    new, n = re.subn(r'\n\tsocket = "[^"]*";', '\n\tsocket = "unix:%s";' % sock, text, count=1)
    new, m = re.subn(r'\n\tpidfile = "[^"]*";', '\n\tpidfile = "%s";' % pidfile, new, count=1)
    new, u = re.subn(r'\n\tuser = "kmilter";', '\n\tuser = "";', new, count=1)
    check((n, m, u) == (1, 1, 1), "the lab's config: socket, pidfile or user not found")
    new = new.replace("\tstderr = false;\n", "\tstderr = true;\n", 1)
    conf = os.path.join(W, "root.conf")
    with open(conf, "w") as fp:
        fp.write(new)
    with open(log, "ab") as err:
        proc = subprocess.Popen([KMILTER, "-f", "-c", conf], stdin=subprocess.DEVNULL, stdout=err,
                                stderr=err, start_new_session=True)
    try:
        up = wait_for(lambda: proc.poll() is not None or
                      (os.path.exists(sock) and os.path.exists(pidfile)), 20)
        check(up and proc.poll() is None, "kmilter as root did not start: %s" %
              read(log)[-600:].decode("utf-8", "replace"))
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            stop_pid(proc.pid)
            proc.wait(timeout=15)
    check(re.search(rb"starting kmilter .*\(user unchanged,", read(log)), "not run as root: %s" %
          read(log)[-600:].decode("utf-8", "replace"))
    check_eq(rc, 0, "exit status after SIGTERM")
    check(not os.path.lexists(sock), "the milter socket %s is left behind" % sock)
    check(not os.path.lexists(pidfile), "the pid file %s is left behind" % pidfile)


def main():
    try:
        rc = suite.run()
    finally:
        p = S.get("proc")
        if p is not None and p.poll() is None:
            stop_pid(p.pid)
            p.wait(timeout=15)
        if "lab" in S:
            S["lab"].down()
        if "syslog" in S:
            S["syslog"].close()
        if not os.environ.get("T_LOAD_KEEP"):
            shutil.rmtree(W, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
