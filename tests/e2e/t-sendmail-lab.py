#!/usr/bin/python3
"""t-sendmail-lab - the lab with Debian's Sendmail in front of kmilter
(tests/lab, LAB_MTA=sendmail; README "Adding kmilter to Sendmail").

A lab without KM or Redis (kmilter passes mail through): its sendmail.cf
holds README's INPUT_MAIL_FILTER line (contrib/sendmail/kmilter.mc) on the
lab's socket; a message is received by Sendmail (its Received header and
its mixed-case queue id), goes through kmilter (kmilter's log line names
that queue id) and reaches the sink; an outside client that logs in with
SMTP AUTH (Sendmail's {auth_authen}) is an internal sender for kmilter (its
message is outbound), the same without AUTH passes; with kmilter stopped Sendmail answers
4xx (F=T), and accepts again once kmilter is back; lab down leaves no
Sendmail running.  t-sendmail.sh runs the outbound, inbound and fault
suites on such a lab.
"""
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ktest import BUILD, TOP, Suite, check, check_eq, need, pid_alive, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
S = {}


def send(subject):
    raw = labsmtp.make_message("x@elsewhere.example", ["y@outside.example"], subject,
                               "through Sendmail\r\n")
    return labsmtp.submit(S["env"], "x@elsewhere.example", ["y@outside.example"], raw,
                          source=labsmtp.outside_client(S["env"]))


def main():
    suite = Suite()
    base = tempfile.mkdtemp(prefix="t-sendmail-lab.")
    os.chmod(base, 0o755)
    lab = os.path.join(base, "lab")
    suite.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    suite.cleanups.append(lambda: subprocess.run([LAB, "down", lab], capture_output=True,
                                                 timeout=120))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @suite.case("lab up with LAB_MTA=sendmail: sendmail.cf has README's filter line")
    def _():
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MTA="sendmail", LAB_KM="0", LAB_REDIS="0",
                 LAB_MILTER="kmilter")
        r = subprocess.run([LAB, "up", lab], env=e, capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "lab up failed (%d): %s" % (r.returncode, r.stderr[-1500:]))
        env = labsmtp.load_env(lab)
        check_eq(env.get("LAB_MTA"), "sendmail", "LAB_MTA in env")
        with open(env["LAB_SENDMAIL_CF"]) as fp:
            cf = fp.read()
        want = "Xkmilter, S=local:%s, F=T, T=C:30s;S:300s;R:300s;E:10m" % env["LAB_MILTER_SOCK"]
        check(want in cf.splitlines(), "sendmail.cf lacks %r" % want)
        check(re.search(r"^O Milter\.macros\.eom=.*\bi\b", cf, re.M), "no i in Milter.macros.eom")
        with open(os.path.join(lab, "pids", "sendmail.pid")) as fp:
            S["smpid"] = int(fp.read().strip())
        check(pid_alive(S["smpid"]), "the recorded Sendmail pid is not running")
        S["env"] = env

    @suite.case("a message goes Sendmail -> kmilter -> sink under Sendmail's queue id")
    def _():
        need(S, "env")
        qid = send("sendmail lab 1")
        check(re.fullmatch(r"[0-9A-Za-z]{14}", qid), "not a Sendmail queue id: %r" % qid)
        path = labsmtp.wait_delivered(S["env"], qid, 60)
        _, msg = labsmtp.read_delivered(path)
        hdr, _ = labsmtp.split_message(msg)
        check(re.search(rb"by mx\.example\.com \(8\.[0-9.]+/[^)]*\)\s+with ESMTP id " +
                        qid.encode(), hdr), "no Sendmail Received header for %s: %r" %
              (qid, hdr[:400]))
        line = labsmtp.wait_log_line(S["env"], qid, 10)
        check(line is not None, "kmilter logged nothing for %s" % qid)
        f = labsmtp.parse_log_line(line)
        check_eq(f.get("direction"), "pass", "direction=")
        check_eq(f.get("result"), "ok", "result=")

    @suite.case("SMTP AUTH through Sendmail: {auth_authen} makes an outside client's "
                "message outbound, the same message without AUTH passes")
    def _():
        need(S, "env")
        env = S["env"]
        pw = labsmtp.sasl_password(env, "alice@example.com")
        check(pw, "the lab has no SASL users (LAB_SASL_PASSWORDS: %r)" %
              env.get("LAB_SASL_PASSWORDS"))
        raw = labsmtp.make_message("alice@example.com", ["y@outside.example"], "auth",
                                   "hello\r\n")
        got = {}
        for name, auth in (("plain", None), ("auth", ("alice@example.com", pw))):
            qid = labsmtp.submit(env, "alice@example.com", ["y@outside.example"], raw,
                                 source=labsmtp.outside_client(env), auth=auth)
            line = labsmtp.wait_log_line(env, qid, 10)
            check(line is not None, "kmilter logged nothing for %s (%s)" % (qid, name))
            got[name] = labsmtp.parse_log_line(line).get("direction")
        check_eq(got, {"plain": "pass", "auth": "outbound"}, "directions without and with AUTH")

    @suite.case("kmilter stopped: Sendmail answers 4xx (F=T); kmilter back: accepted again")
    def _():
        need(S, "env")
        pid = labsmtp.milter_pid(S["env"])
        check(pid and pid_alive(pid), "kmilter is not running")
        os.kill(pid, signal.SIGKILL)
        check(wait_for(lambda: not pid_alive(pid), 10), "kmilter still alive after SIGKILL")
        try:
            send("sendmail lab 2")
            code = 250
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
        check(400 <= code < 500, "with kmilter down Sendmail answered %s, want 4xx" % code)
        r = subprocess.run([LAB, "restart-milter", lab], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0, "restart-milter: %s" % r.stderr[-500:])
        qid = send("sendmail lab 3")
        labsmtp.wait_delivered(S["env"], qid, 60)
        check(labsmtp.wait_log_line(S["env"], qid, 10), "kmilter logged nothing for %s" % qid)

    @suite.case("lab down stops Sendmail (by pid)")
    def _():
        need(S, "smpid")
        r = subprocess.run([LAB, "down", lab], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "lab down: %s" % r.stderr[-500:])
        check(wait_for(lambda: not pid_alive(S["smpid"]), 10), "Sendmail %d still running"
              % S["smpid"])

    @suite.case("a Sendmail that cannot listen: lab up fails, says why, leaves nothing "
                "running")
    def _():
        bad = os.path.join(base, "bad")
        held = socket.socket()          # bound, never listening: connect is refused
        held.bind(("127.0.0.1", 0))
        free = []
        for _i in range(4):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            free.append(s)
        ports = [held.getsockname()[1]] + [s.getsockname()[1] for s in free]
        for s in free:
            s.close()
        e = dict(os.environ, KM_BUILD=BUILD, LAB_MTA="sendmail", LAB_KM="0", LAB_REDIS="0",
                 LAB_PORTS=" ".join(str(p) for p in ports))
        try:
            r = subprocess.run([LAB, "up", bad], env=e, capture_output=True, text=True,
                               timeout=90)
        except subprocess.TimeoutExpired:
            check(False, "lab up still running after 90 s (its clean-up waited for daemons)")
        finally:
            held.close()
            suite.cleanups.append(lambda: subprocess.run([LAB, "down", bad],
                                                         capture_output=True, timeout=120))
        check(r.returncode != 0, "lab up succeeded with its SMTP port taken")
        check(re.search(r"lab: error: sendmail (did not start|does not answer)", r.stderr),
              "no reason given: %s" % r.stderr[-500:])
        left = []
        for name in os.listdir(os.path.join(bad, "pids")):
            with open(os.path.join(bad, "pids", name)) as fp:
                pid = int(fp.read().strip() or 0)
            if pid and pid_alive(pid):
                left.append(name)
        check(not left, "still running after the failed start: %s" % left)
        # and nothing unrecorded: no process works below that lab
        # (Sendmail's daemon lives in its queue directory)
        here = []
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.readlink("/proc/%s/cwd" % pid).startswith(bad + "/"):
                    here.append(pid)
            except OSError:
                continue
        check(not here, "processes still in %s after the failed start: %s" % (bad, here))

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
