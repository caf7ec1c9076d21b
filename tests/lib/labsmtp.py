"""labsmtp - talk to a running lab (tests/lab up DIR): submit over SMTP,
find the delivered file, read kmilter's log line.  Standard library only.

    env = load_env(DIR)                       # the values of DIR/env
    qid = submit(env, "a@x", ["b@y"], raw)    # Postfix's queue id
    path = wait_delivered(env, qid)           # the file smtp-sink wrote
    hdrs, msg = read_delivered(path)          # smtp-sink's X- headers, message
    line = wait_log_line(env, qid)            # kmilter's per-message line
    submit(env, ..., source=outside_client(env))   # from a client that is not
                                              # internal (127.0.0.2)
    submit(env, ..., auth=(user, sasl_password(env, user)))   # SMTP AUTH
    qid2 = wait_relayed(env, qid)             # a lab pair (tests/lab up-pair):
                                              # the other organization's queue id
    queue_ids(env); flush_queue(env)          # what the MTA still holds; a
                                              # queue run (Postfix or Sendmail,
                                              # LAB_MTA)

Also a command line for shell scripts and the demo:
    labsmtp.py send DIR FROM TO[,TO...] [FILE|-]  prints the queue id
    labsmtp.py wait DIR QID                       prints the delivered file
    labsmtp.py logline DIR QID                    prints kmilter's line
    labsmtp.py relayed DIR QID                    prints the peer's queue id
"""

import glob
import os
import re
import shlex
import smtplib
import socket
import subprocess
import sys
import time

from ktest import wait_for

# The queue id in the reply to DATA: Postfix "2.0.0 Ok: queued as QID",
# Sendmail "2.0.0 QID Message accepted for delivery".
QUEUED_RE = re.compile(rb"(?:queued as |^(?:2\.0\.0 )?)([0-9A-Za-z]+)(?=$| Message accepted)",
                       re.M)


class LabError(Exception):
    pass


def load_env(lab_dir):
    """Parse DIR/env (simple NAME='value' / NAME=value lines)."""
    env = {}
    with open(os.path.join(lab_dir, "env")) as fp:
        for line in fp:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("export "):
                continue
            name, _, value = line.partition("=")
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", name):
                raise LabError("bad line in env: %r" % line)
            vals = shlex.split(value) if value else [""]
            env[name] = vals[0] if vals else ""
    for need in ("LAB_DIR", "LAB_SMTP_PORT", "LAB_OUT", "LAB_LOG"):
        if need not in env:
            raise LabError("env lacks %s" % need)
    return env


def make_message(sender, rcpts, subject, body, extra_headers=()):
    """A simple RFC 5322 message with CRLF line ends."""
    hdrs = ["From: <%s>" % sender, "To: %s" % ", ".join("<%s>" % r for r in rcpts),
            "Subject: %s" % subject, "Date: Mon, 23 Nov 2026 10:00:00 +0000",
            "Message-ID: <%d.%d@lab.test>" % (os.getpid(), int(time.time() * 1e6)),
            "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    hdrs.extend(extra_headers)
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body


def outside_client(env):
    """The source address of a client the lab's kmilter does not trust
    (policy.internal_hosts is 127.0.0.1 only; Postfix still relays)."""
    return env.get("LAB_OUTSIDE_CLIENT") or "127.0.0.2"


def sasl_password(env, user):
    """The lab's SMTP AUTH password of user (DIR/sasl/passwords), or None."""
    path = env.get("LAB_SASL_PASSWORDS")
    if not path:
        return None
    with open(path) as fp:
        for line in fp:
            u, _, pw = line.strip().partition(" ")
            if u == user:
                return pw
    return None


def connect(env, timeout=60, helo="client.example.com", source=None, auth=None):
    """An SMTP session to the lab after EHLO (and AUTH when auth=(user, pw)),
    from the source address when given."""
    s = smtplib.SMTP(env.get("LAB_SMTP_HOST", "127.0.0.1"), int(env["LAB_SMTP_PORT"]),
                     timeout=timeout, local_hostname=helo,
                     source_address=(source, 0) if source else None)
    try:
        s.ehlo()
        if auth:
            s.login(auth[0], auth[1])
    except BaseException:
        s.close()
        raise
    return s


def submit(env, sender, rcpts, raw, timeout=60, helo="client.example.com", source=None,
           auth=None):
    """Submit one message; return Postfix's queue id.  Raises
    smtplib.SMTPException on a refusal (tests look at .smtp_code).
    source: the client's address (default: the kernel's, 127.0.0.1);
    auth: (user, password) for SMTP AUTH."""
    s = connect(env, timeout, helo, source, auth)
    try:
        code, resp = s.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, sender)
        for r in rcpts:
            code, resp = s.rcpt(r)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({r: (code, resp)})
        code, resp = s.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)
        m = QUEUED_RE.search(resp)
        if not m:
            raise LabError("no queue id in %r" % resp)
        return m.group(1).decode()
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def delivered_files(env):
    return sorted(glob.glob(os.path.join(env["LAB_OUT"], "*")))


def _sent_in_maillog(env, qid):
    if env.get("LAB_MTA") == "sendmail":
        # Sendmail logs to syslog only: its queue file goes once the sink
        # has taken the message (a deferred one stays)
        return qid not in queue_ids(env)
    try:
        with open(os.path.join(env["LAB_DIR"], "postfix", "maillog"), "rb") as fp:
            data = fp.read()
    except OSError:
        return False
    return re.search(rb" " + qid.encode() + rb": to=<[^>]*>.*status=sent", data) is not None


def find_delivered(env, qid):
    """The delivered file whose Postfix (or Sendmail: "(8.17.1.9/...)")
    Received header names qid, or None."""
    pat = re.compile(rb"\((?:Postfix|[0-9.]+/[^)]*)\) with E?SMTPS?A? id " + qid.encode() +
                     rb"\b")
    for path in delivered_files(env):
        try:
            with open(path, "rb") as fp:
                head = fp.read(8192)
        except OSError:
            continue
        if pat.search(head):
            return path
    return None


def _sendmail_queue(env):
    """Queue ids in a Sendmail queue directory: qf (queued), hf
    (quarantined: held) and Qf (lost: unreadable) files."""
    try:
        names = os.listdir(env["LAB_QUEUE_DIR"])
    except OSError as e:
        raise LabError("cannot read the Sendmail queue: %s" % e)
    return sorted(n[2:] for n in names if n[:2] in ("qf", "hf", "Qf"))


def queue_ids(env, unknown=None):
    """Queue ids still in the lab MTA's queue (held ones too).  When
    Postfix's postqueue cannot tell (mail system down): unknown if given,
    else LabError; never an empty list that would pass for an empty queue."""
    if env.get("LAB_MTA") == "sendmail":
        return _sendmail_queue(env)
    r = subprocess.run(["postqueue", "-c", env["LAB_POSTFIX_CONF"], "-p"],
                       capture_output=True, timeout=60)
    ids = re.findall(rb"^([0-9A-F]{6,})[*!]?\s", r.stdout, re.M)
    if r.returncode != 0 or (not ids and b"Mail queue is empty" not in r.stdout):
        if unknown is not None:
            return unknown
        raise LabError("postqueue -p: rc %d: %s" % (r.returncode, (r.stderr or r.stdout)[-300:]
                                                     .decode("utf-8", "replace")))
    return [i.decode() for i in ids]


def flush_queue(env):
    """Deliver what is queued now: postqueue -f, or one Sendmail queue run."""
    if env.get("LAB_MTA") == "sendmail":
        argv = [env["LAB_SENDMAIL_BIN"], "-C", env["LAB_SENDMAIL_CF"], "-q"]
    else:
        argv = ["postqueue", "-c", env["LAB_POSTFIX_CONF"], "-f"]
    subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def wait_delivered(env, qid, timeout=60):
    """Wait until Postfix logged status=sent for qid and its file exists."""
    path = wait_for(lambda: _sent_in_maillog(env, qid) and find_delivered(env, qid),
                    timeout)
    if not path:
        raise LabError("%s not delivered within %ds" % (qid, timeout))
    return path


def relayed_qid(env, qid):
    """The queue id the peer's Postfix gave qid (from this lab's maillog:
    relayed over the peer transport of a lab pair), or None.  In the
    two-pass layout the decrypt pass's own queue id is followed."""
    try:
        with open(os.path.join(env["LAB_DIR"], "postfix", "maillog"), "rb") as fp:
            data = fp.read()
    except OSError:
        return None
    hops = 0
    while hops < 3:
        m = re.search(rb" " + qid.encode() + rb": to=<[^>]*>, relay=[^ ]+:([0-9]+),.*status=sent "
                      rb"\(250 [^)]*queued as ([0-9A-Za-z]+)\)", data)
        if not m:
            return None
        port, qid = m.group(1).decode(), m.group(2).decode()
        if port == env.get("LAB_PEER_SMTP_PORT"):
            return qid
        if port != env.get("LAB_DECRYPT_PORT"):
            return None
        hops += 1
    return None


def wait_relayed(env, qid, timeout=60):
    """Wait until qid went to the peer organization; its queue id there."""
    q = wait_for(lambda: relayed_qid(env, qid), timeout)
    if not q:
        raise LabError("%s not relayed to the peer within %ds" % (qid, timeout))
    return q


def read_delivered(path):
    """Split a smtp-sink dump into (sink headers dict, message bytes).

    smtp-sink writes X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args (one per recipient) and its own Received
    header, then the message with LF line ends, then one empty line.
    """
    with open(path, "rb") as fp:
        data = fp.read()
    sink = {}
    pos = 0
    while data.startswith(b"X-", pos):
        end = data.index(b"\n", pos)
        name, _, value = data[pos:end].partition(b": ")
        sink.setdefault(name.decode(), []).append(value.decode("latin-1"))
        pos = end + 1
    if data.startswith(b"Received: ", pos) and b"(smtp-sink)" in data[pos:pos + 300]:
        end = data.index(b"\n", pos)
        while data[end + 1:end + 2] in (b"\t", b" "):
            end = data.index(b"\n", end + 1)
        pos = end + 1
    msg = data[pos:]
    if msg.endswith(b"\n\n"):
        msg = msg[:-1]
    return sink, msg


def split_message(msg):
    """(header bytes, body bytes) of a message with LF or CRLF line ends."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = msg.find(sep)
        if i >= 0:
            return msg[:i + len(sep)], msg[i + len(sep):]
    return msg, b""


def lf(data):
    return data.replace(b"\r\n", b"\n")


def log_line(env, qid):
    """kmilter's per-message log line for qid, or None."""
    try:
        with open(env["LAB_LOG"], "rb") as fp:
            for line in fp:
                if re.search(rb"\b" + qid.encode() + rb": from=<", line):
                    return line.decode("utf-8", "replace").rstrip("\n")
    except OSError:
        return None
    return None


def wait_log_line(env, qid, timeout=10):
    """kmilter's per-message line for qid once logged; None after timeout."""
    return wait_for(lambda: log_line(env, qid), timeout)


def parse_log_line(line):
    """The key=value fields of kmilter's per-message line as a dict."""
    return dict(m.groups() for m in re.finditer(r"(\w+)=(<[^>]*>|\S+)", line))


def milter_pid(env):
    try:
        with open(os.path.join(env["LAB_DIR"], "pids", "milter.pid")) as fp:
            return int(fp.read().strip())
    except (OSError, ValueError):
        return None


def smtp_chat(env, lines, timeout=10):
    """Raw SMTP: send each line (CRLF added) and collect replies; used for
    half-sent transactions.  Returns the socket (caller closes) and replies."""
    s = socket.create_connection(("127.0.0.1", int(env["LAB_SMTP_PORT"])), timeout=timeout)
    f = s.makefile("rb")
    replies = [_read_reply(f)]
    for line in lines:
        s.sendall(line.encode() + b"\r\n")
        replies.append(_read_reply(f))
    return s, replies


def _read_reply(f):
    out = b""
    while True:
        line = f.readline()
        if not line:
            return out.decode()
        out += line
        if len(line) < 4 or line[3:4] != b"-":
            return out.decode()


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, env = argv[0], load_env(argv[1])
    if cmd == "send" and len(argv) in (4, 5):
        rcpts = argv[3].split(",")
        if len(argv) == 5 and argv[4] != "-":
            with open(argv[4], "rb") as fp:
                raw = fp.read()
        elif len(argv) == 5:
            raw = sys.stdin.buffer.read()
        else:
            raw = make_message(argv[2], rcpts, "lab test", "Hello from the lab.\r\n")
        print(submit(env, argv[2], rcpts, raw))
    elif cmd == "wait" and len(argv) == 3:
        print(wait_delivered(env, argv[2]))
    elif cmd == "relayed" and len(argv) == 3:
        print(wait_relayed(env, argv[2]))
    elif cmd == "logline" and len(argv) == 3:
        line = wait_log_line(env, argv[2])
        if not line:
            sys.exit("no log line for %s" % argv[2])
        print(line)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
