#!/usr/bin/python3
"""t-host - the host can't be turned against itself: socket, hook, pid file.

Each case is an attack that must fail (issue 12, items 5, 7, 8):
  - socket: `kmilter -n` refuses a unix socket mode others can use (0666,
    0606) with FILE:LINE: milter.socket_mode, takes 0660; an inet socket on
    0.0.0.0 (or without a host) is warned about, one on 127.0.0.1 is not;
    the lab's socket is 0660 group postfix: user nobody gets EACCES, user
    postfix connects, and mail goes through the milter;
  - hook: `kmilter -n` refuses a world-writable hook, a hook in a
    world-writable directory and a hook owned by another user, naming the
    hook; in a running lab, a hook made world-writable is not run (the
    enhanced user's mail stays encrypted, as hook.on_failure says, and the
    log says why), SIGHUP then keeps the running configuration and logs
    the error; made safe again, the hook runs and the mail is decrypted;
  - pid file: links planted at PIDFILE and PIDFILE.tmp in a directory the
    milter user can write, pointing at a root-owned file, do not change
    it (the pid file is written after the drop, as kmilter); in a
    root-only directory the pid file is root's and a planted PIDFILE.tmp
    link is not followed either.
"""
import os
import pwd
import re
import grp
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import BUILD, Suite, check, check_eq, pid_alive, skip, stop_pid, wait_for  # noqa: E402

KMILTER = os.path.join(BUILD, "kmilter")
DAVE, ERIN = "dave@partner.example", "erin@example.com"
ERINPASS = "erin-KeyProt-%s" % os.urandom(6).hex()

suite = Suite()
S = {}
W = tempfile.mkdtemp(prefix="kmilter-t-host.", dir="/tmp")
os.chmod(W, 0o755)


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


def conf(name, milter, extra=""):
    """A small config file in W; returns its path."""
    p = os.path.join(W, name)
    with open(p, "w") as fp:
        fp.write("milter: {\n%s};\n%s" % (milter, extra))
    return p


def check_conf(path):
    r = subprocess.run([KMILTER, "-n", "-c", path], capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def sock_line(mode):
    return '\tsocket = "unix:%s/x.sock";\n\tsocket_mode = "%s";\n' % (W, mode)


# ------------------------------------------------------------- the socket

@suite.case("kmilter -n refuses socket_mode 0666 and 0606, takes 0660")
def _():
    for mode in ("0666", "0606"):
        p = conf("mode%s.conf" % mode, sock_line(mode))
        rc, out = check_conf(p)
        check(rc == 1, "socket_mode %s accepted: %s" % (mode, out.strip()))
        check("%s:3: milter.socket_mode:" % p in out, "no FILE:LINE: SETTING for %s: %r" % (mode, out))
    rc, out = check_conf(conf("mode0660.conf", sock_line("0660") + '\tsocket_group = "postfix";\n'))
    check(rc == 0, "socket_mode 0660 group postfix refused: %s" % out.strip())


@suite.case("kmilter -n warns about an inet socket off loopback, not on 127.0.0.1")
def _():
    for spec in ("inet:10025@0.0.0.0", "inet:10025"):
        rc, out = check_conf(conf("inet.conf", '\tsocket = "%s";\n' % spec))
        check(rc == 0, "%s refused: %s" % (spec, out.strip()))
        check("not bound to a loopback address" in out and spec in out,
              "no warning for %s: %r" % (spec, out))
    rc, out = check_conf(conf("inet-lo.conf", '\tsocket = "inet:10025@127.0.0.1";\n'))
    check(rc == 0 and "loopback" not in out, "127.0.0.1: %r" % out)


# --------------------------------------------------------------- the hook

def hook_tree(name, dir_mode=0o755, hook_mode=0o755, owner=None):
    """W/name/hook: a shell hook; returns its path."""
    d = os.path.join(W, name)
    os.mkdir(d)
    os.chmod(d, dir_mode)
    h = os.path.join(d, "hook")
    with open(h, "w") as fp:
        fp.write("#!/bin/sh\necho action=allow\n")
    os.chmod(h, hook_mode)
    if owner:
        shutil.chown(h, owner, grp.getgrgid(pwd.getpwnam(owner).pw_gid).gr_name)
    return h


@suite.case("kmilter -n refuses an unsafe hook (world-writable, in a world-writable dir, foreign)")
def _():
    ok = hook_tree("hook-ok")
    rc, out = check_conf(conf("hook-ok.conf", sock_line("0660"), 'hook: { path = "%s"; };\n' % ok))
    check(rc == 0, "a safe hook refused: %s" % out.strip())
    for name, kw, why in (("hook-ww", {"hook_mode": 0o757}, "writable by others"),
                          ("hook-wwdir", {"dir_mode": 0o777}, "writable by others"),
                          ("hook-nobody", {"owner": "nobody"}, "owned by uid %d" %
                           pwd.getpwnam("nobody").pw_uid)):
        h = hook_tree(name, **kw)
        p = conf(name + ".conf", sock_line("0660"), 'hook: { path = "%s"; };\n' % h)
        rc, out = check_conf(p)
        check(rc == 1, "%s accepted: %s" % (name, out.strip()))
        check("%s:5: hook.path:" % p in out and h.rsplit("/", 1)[0] in out and why in out,
              "%s: error does not name the hook and why: %r" % (name, out))


# ----------------------------------------------------------- the pid file

def start_kmilter(name, piddir):
    """kmilter -f -d with a pid file in piddir; returns (Popen, pidfile)."""
    d = os.path.join(W, name)
    for sub in ("state", "spool"):
        os.makedirs(os.path.join(d, sub))
        shutil.chown(os.path.join(d, sub), "kmilter", "kmilter")
        os.chmod(os.path.join(d, sub), 0o700)
    sockdir = os.path.join(d, "sock")
    os.mkdir(sockdir)
    os.chmod(sockdir, 0o755)
    pidfile = os.path.join(piddir, "kmilter.pid")
    p = conf(name + ".conf", '\tsocket = "unix:%s/k.sock";\n\tpidfile = "%s";\n\tuser = "kmilter";\n'
             '\tstate_dir = "%s/state";\n\tspool_dir = "%s/spool";\n' % (sockdir, pidfile, d, d))
    os.chmod(p, 0o644)
    log = open(os.path.join(d, "kmilter.log"), "ab")
    proc = subprocess.Popen([KMILTER, "-f", "-d", "-c", p], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True)
    log.close()
    S.setdefault("procs", []).append(proc)
    return proc, pidfile, os.path.join(sockdir, "k.sock"), os.path.join(d, "kmilter.log")


def stop(proc):
    stop_pid(proc.pid)
    proc.wait(timeout=15)


def target_file(name):
    t = os.path.join(W, name)
    with open(t, "w") as fp:
        fp.write("precious root file\n")
    os.chmod(t, 0o644)
    return t


def started(proc, pidfile, sock):
    """kmilter's socket is there and its pid file a regular file: started."""
    def ready():
        try:
            st = os.lstat(pidfile)
        except OSError:
            return proc.poll() is not None
        return (stat.S_ISREG(st.st_mode) and os.path.exists(sock)) or proc.poll() is not None
    wait_for(ready, 15)
    return proc.poll() is None


@suite.case("pid file: links at PIDFILE and PIDFILE.tmp in kmilter's directory do not overwrite a root file")
def _():
    piddir = os.path.join(W, "run-kmilter")
    os.mkdir(piddir)
    shutil.chown(piddir, "kmilter", "kmilter")
    os.chmod(piddir, 0o755)
    target = target_file("target-1")
    os.symlink(target, os.path.join(piddir, "kmilter.pid.tmp"))
    os.symlink(target, os.path.join(piddir, "kmilter.pid"))
    proc, pidfile, sock, log = start_kmilter("pid-kmilter", piddir)
    try:
        up = started(proc, pidfile, sock)
        with open(target) as fp:
            body = fp.read()
        st = os.stat(target)
        check_eq(body, "precious root file\n", "the root-owned target's content")
        check_eq((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o644), "the target's owner and mode")
        with open(log, "rb") as fp:
            tail = fp.read()[-600:].decode("utf-8", "replace")
        check(up, "kmilter did not start: %s" % tail)
        pst = os.lstat(pidfile)
        check(stat.S_ISREG(pst.st_mode), "the pid file is not a regular file")
        check_eq(pwd.getpwuid(pst.st_uid).pw_name, "kmilter", "the pid file's owner")
        with open(pidfile) as fp:
            check_eq(fp.read().strip(), str(proc.pid), "the pid in the pid file")
        check(not os.path.lexists(pidfile + ".tmp"), "the temp file is left behind")
    finally:
        stop(proc)


@suite.case("pid file: in a root-only directory it is root's, and a link at PIDFILE.tmp is not followed")
def _():
    piddir = os.path.join(W, "run-root")
    os.mkdir(piddir)
    os.chmod(piddir, 0o755)
    target = target_file("target-2")
    os.symlink(target, os.path.join(piddir, "kmilter.pid.tmp"))
    proc, pidfile, sock, log = start_kmilter("pid-root", piddir)
    try:
        up = started(proc, pidfile, sock)
        with open(target) as fp:
            check_eq(fp.read(), "precious root file\n", "the root-owned target's content")
        check(up, "kmilter did not start")
        pst = os.lstat(pidfile)
        check(stat.S_ISREG(pst.st_mode) and pst.st_uid == 0, "the pid file is not root's regular file")
        with open(pidfile) as fp:
            check_eq(fp.read().strip(), str(proc.pid), "the pid in the pid file")
    finally:
        stop(proc)


# ---------------------------------------------------------------- the lab

@suite.case("lab up with a hook that records its runs")
def _():
    lab = L.Lab("t-host")
    S["lab"] = lab
    hookdir = lab.wpath("hook")
    os.mkdir(hookdir)
    os.chmod(hookdir, 0o755)
    ran = os.path.join(hookdir, "ran")
    with open(ran, "w"):
        pass
    shutil.chown(ran, "kmilter", "kmilter")
    hook = os.path.join(hookdir, "pw")
    with open(hook, "w") as fp:
        fp.write("#!/bin/sh\necho run >> %s\nwhile IFS= read -r l && [ -n \"$l\" ]; do :; done\n"
                 "printf 'action=password\\npassword=%%s\\n' '%s'\n" % (ran, ERINPASS))
    os.chmod(hook, 0o755)
    lab.extra = 'hook: { path = "%s"; timeout_ms = 3000; on_failure = "keep-encrypted"; };' % hook
    lab.up()
    S.update(env=lab.env, hook=hook, hookdir=hookdir, ran=ran)
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)


def connect_as(user, group, path):
    """Connect to a unix socket as another user: 'ok' or the errno name."""
    code = ("import socket,errno,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('ok')\n"
            "except OSError as e: print(errno.errorcode.get(e.errno, e.errno))\n")
    r = L.run(["setpriv", "--reuid=" + user, "--regid=" + group, "--clear-groups",
               "--", sys.executable, "-c", code, path], ok=False, timeout=30)
    return r.stdout.decode().strip() or r.stderr.decode()[-200:]


@suite.case("the lab's milter socket: 0660 group postfix; nobody gets EACCES, postfix connects")
def _():
    need("env")
    sock = S["env"]["LAB_MILTER_SOCK"]
    st = os.lstat(sock)
    check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % sock)
    check_eq(oct(stat.S_IMODE(st.st_mode)), oct(0o660), "socket mode")
    check_eq(grp.getgrgid(st.st_gid).gr_name, "postfix", "socket group")
    check_eq(connect_as("nobody", "nogroup", sock), "EACCES", "connect as nobody")
    check_eq(connect_as("postfix", "postfix", sock), "ok", "connect as postfix (the group only)")
    # and Postfix's smtpd reaches it: a message gets kmilter's log line
    raw = L.plain_msg("x@elsewhere.example", DAVE, 500, "pass").raw
    qid = L.labsmtp.submit(S["env"], "x@elsewhere.example", [DAVE], raw)
    check(L.labsmtp.wait_log_line(S["env"], qid, 20), "no kmilter log line for %s" % qid)


def send_to_erin(tag):
    """Inbound mail encrypted to erin; returns (delivered message, marker)."""
    blob, marker = L.inbound_blob(S["lab"], S["erin_crt"], 1500, "%s-%s" % (tag, os.urandom(4).hex()))
    m = L.inbound_msg(DAVE, ERIN, blob, marker)
    qid = L.labsmtp.submit(S["env"], DAVE, [ERIN], m.raw)
    _, msg = L.labsmtp.read_delivered(L.labsmtp.wait_delivered(S["env"], qid, 60))
    return msg, marker, qid


def runs():
    with open(S["ran"]) as fp:
        return fp.read().count("run")


@suite.case("a hook made world-writable while kmilter runs is not run; SIGHUP keeps the config")
def _():
    need("env")
    lab = S["lab"]
    pwf = lab.wpath("erin-pw")
    with open(pwf, "w") as fp:
        fp.write(ERINPASS + "\n")
    os.chmod(pwf, 0o644)        # kmctl runs as kmilter
    out = lab.kmctl("enroll", ERIN, "--protect", "--password-file", pwf).stdout.decode()
    check("protection enhanced" in out, "kmctl enroll --protect said %r" % out)
    crt = lab.wpath("erin.crt")
    with open(crt, "wb") as fp:
        fp.write(lab.kmctl("export-cert", ERIN).stdout)
    S["erin_crt"] = crt
    hook = S["hook"]
    # a local user (or anyone) may now rewrite the hook
    os.chmod(hook, 0o777)
    try:
        msg, marker, qid = send_to_erin("unsafe")
        check(L.is_enveloped(msg) and marker.encode() not in msg,
              "erin's mail was decrypted with a world-writable hook")
        check_eq(runs(), 0, "runs of the world-writable hook")
        text = lab.log_text().decode("utf-8", "replace")
        why = "hook %s not run: %s is writable by others" % (hook, hook)
        check(why in text, "the log does not say why the hook was not run (%r)" % why)
        line = L.labsmtp.wait_log_line(S["env"], qid, 10) or ""
        print("INFO per-message line: %s" % line[line.find(qid):][:200])
        # a reload with the unsafe hook keeps the running configuration
        n0 = text.count("keeping the running configuration")
        os.kill(lab.milter_pid(), signal.SIGHUP)
        check(wait_for(lambda: lab.log_text().decode("utf-8", "replace").count(
            "keeping the running configuration") > n0, 10),
            "SIGHUP with a world-writable hook did not keep the running configuration")
        text = lab.log_text().decode("utf-8", "replace")
        check("hook.path: refused: %s is writable by others" % hook in text,
              "the reload error does not name the hook")
        check(pid_alive(lab.milter_pid()), "kmilter died on the reload")
    finally:
        os.chmod(hook, 0o755)
    # safe again: the same hook runs and erin's mail is decrypted
    msg, marker, _ = send_to_erin("safe")
    check_eq(runs(), 1, "runs of the hook once safe again")
    check(not L.is_enveloped(msg) and marker.encode() in msg,
          "erin's mail was not decrypted with the safe hook")


# ------------------------------------------------- started in the background

def subscribers(lab):
    """How many clients listen on kmilter's invalidation channel."""
    out = lab.redis_cli("PUBSUB", "NUMSUB", "kmilter:invalidate").stdout.decode()
    words = out.split()
    check(len(words) >= 2 and words[-1].isdigit(), "PUBSUB NUMSUB answered %r" % out)
    return int(words[-1])


@suite.case("kmilter without -f: exits 0 once started, keeps its cache subscriber; a failed start exits 1")
def _():
    need("env")
    lab = S["lab"]
    d = os.path.join(W, "bg")
    os.mkdir(d)
    shutil.chown(d, "kmilter", "kmilter")
    with open(S["env"]["LAB_CONF"]) as fp:
        text = fp.read()
    text = re.sub(r'(\n\s*socket = )"unix:[^"]*"', r'\1"unix:%s/k.sock"' % d, text, count=1)
    text = re.sub(r'(\n\s*pidfile = )"[^"]*"', r'\1"%s/k.pid"' % d, text, count=1)
    text = re.sub(r'\n\s*control_socket = "[^"]*";', "", text)
    bad = text.replace('"unix:%s/k.sock"' % d, '"unix:%s/missing/k.sock"' % d)
    good_conf, bad_conf = os.path.join(d, "bg.conf"), os.path.join(d, "bad.conf")
    for path, t in ((good_conf, text), (bad_conf, bad)):
        with open(path, "w") as fp:
            fp.write(t)
        os.chmod(path, 0o644)
    before = subscribers(lab)
    # The lab logs to stderr, which the daemon keeps: a file, not a pipe.
    with open(os.path.join(d, "bg.log"), "ab") as log:
        r = subprocess.run([KMILTER, "-c", good_conf], stdin=subprocess.DEVNULL,
                           stdout=log, stderr=log, timeout=60)
    check_eq(r.returncode, 0, "kmilter in the background: exit status")
    with open(os.path.join(d, "k.pid")) as fp:
        pid = int(fp.read().strip())
    try:
        check(pid_alive(pid), "the background kmilter (pid %d) is not running" % pid)
        # The daemon must have kept the thread that listens for invalidations:
        # a fork after it started would have lost it.
        check(wait_for(lambda: subscribers(lab) == before + 1, 10),
              "invalidation subscribers: %d, want %d" % (subscribers(lab), before + 1))
    finally:
        stop_pid(pid)
    with open(os.path.join(d, "bad.log"), "ab") as log:
        r = subprocess.run([KMILTER, "-c", bad_conf], stdin=subprocess.DEVNULL,
                           stdout=log, stderr=log, timeout=60)
    check_eq(r.returncode, 1, "a background start that fails (no socket directory): exit status")


def main():
    try:
        rc = suite.run()
    finally:
        for p in S.get("procs", []):
            if p.poll() is None:
                stop(p)
        if "lab" in S:
            S["lab"].down()
        if not os.environ.get("T_LOAD_KEEP"):
            shutil.rmtree(W, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
