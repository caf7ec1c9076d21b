"""loadlib - shared helpers of t-load, t-faults and t-security: one lab per
suite, an outside PKI made with openssl, enrollment in parallel, a threaded
SMTP sender that records every submission, and the accounting that finds
every accepted message exactly once in LAB_OUT, checks every delivered copy,
and requires Postfix's queue to be empty at the end.  Standard library only.

Every message carries a unique token "ktok-..." in its Subject and
Message-ID (headers survive outbound encryption) and a body marker
"BODY-<token>" in its plaintext (never visible in an encrypted delivery).
"""

import base64
import concurrent.futures
import hashlib
import os
import random
import re
import shlex
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from ktest import BUILD, TOP, Failure, check, pid_alive, proc_status, wait_for  # noqa: E402
import labsmtp  # noqa: E402

LAB = os.path.join(TOP, "tests", "lab")
TOKEN_RE = re.compile(rb"ktok-[0-9a-z]+-[0-9]+")
QUEUED_RE = labsmtp.QUEUED_RE


def run(argv, input=None, ok=True, timeout=120, env=None):
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env)
    if ok and r.returncode != 0:
        raise Failure("%s: rc %d: %s" % (" ".join(str(a) for a in argv[:4]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


# ------------------------------------------------------------------ the lab

class Lab:
    """One lab in a fresh mktemp -d directory (chmod 755); down() in finally."""

    def __init__(self, name, policy="", extra="", env_extra=None):
        self.top = tempfile.mkdtemp(prefix="kmilter-%s." % name, dir="/tmp")
        os.chmod(self.top, 0o755)
        self.dir = os.path.join(self.top, "lab")
        self.work = os.path.join(self.top, "work")
        os.mkdir(self.work)
        os.chmod(self.work, 0o755)
        self.policy = policy
        self.extra = extra
        self.env_extra = env_extra or {}
        self.env = None
        self.up_secs = None

    def up(self):
        e = dict(os.environ)
        for k in list(e):
            if (k.startswith("LAB_") and k != "LAB_MTA") or k.startswith("KMILTER_CONF"):
                del e[k]
        e["KM_BUILD"] = BUILD
        if self.policy:
            e["KMILTER_CONF_POLICY"] = self.policy
        if self.extra:
            e["KMILTER_CONF_EXTRA"] = self.extra
        e.update(self.env_extra)
        t0 = time.time()
        r = subprocess.run([LAB, "up", self.dir], capture_output=True, env=e, timeout=180)
        self.up_secs = time.time() - t0
        if r.returncode != 0:
            raise Failure("tests/lab up: rc %d: %s" % (r.returncode,
                                                       r.stderr.decode("utf-8", "replace")[-800:]))
        self.env = labsmtp.load_env(self.dir)
        return self.env

    def down(self, keep=False):
        if os.path.isdir(self.dir):
            subprocess.run([LAB, "down", self.dir], capture_output=True, timeout=120)
        if not keep and not os.environ.get("T_LOAD_KEEP"):
            shutil.rmtree(self.top, ignore_errors=True)

    def restart_milter(self):
        r = subprocess.run([LAB, "restart-milter", self.dir], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise Failure("restart-milter: %s" % r.stderr.decode("utf-8", "replace")[-400:])

    def kmctl(self, *args, ok=True):
        return run(shlex.split(self.env["LAB_KMCTL"]) + list(args), ok=ok)

    def probe(self, *args, ok=True):
        """build/tools/keystore-probe as the user kmilter, with the lab's config."""
        return run(["runuser", "-u", "kmilter", "--", os.path.join(BUILD, "tools", "keystore-probe"),
                    "-c", self.env["LAB_CONF"]] + list(args), ok=ok)

    def wpath(self, name):
        return os.path.join(self.work, name)

    def milter_pid(self):
        return labsmtp.milter_pid(self.env)

    def recorded_pid(self, name):
        try:
            with open(os.path.join(self.dir, "pids", name + ".pid")) as fp:
                return int(fp.read().strip())
        except (OSError, ValueError):
            return None

    def km_pid(self, name):
        try:
            with open(os.path.join(self.dir, "km", name, "pid")) as fp:
                return int(fp.read().strip())
        except (OSError, ValueError):
            return None

    def km_sh(self, fn, name, port=""):
        """km_stop / km_start of tests/lablib/km.sh for one server."""
        script = ". %s/tests/lablib/common.sh; . %s/tests/lablib/km.sh; %s %s %s %s" % (
            shlex.quote(TOP), shlex.quote(TOP), fn, shlex.quote(os.path.join(self.dir, "km")),
            name, port)
        return run(["/bin/sh", "-c", script], ok=False, timeout=60)

    def km_port(self, name):
        v = self.env["LAB_KM_A" if name == "km-a" else "LAB_KM_B"]
        return v.rpartition(":")[2]

    def log_text(self):
        with open(self.env["LAB_LOG"], "rb") as fp:
            return fp.read()

    def stats(self):
        """kmilter's counters (kmctl stats).  Retried: kmctl stats fails now
        and then with "Broken pipe" (see stats_reliability in t-load);
        self.stats_failures counts those failures."""
        def once():
            r = self.kmctl("stats", ok=False)
            out = {m.group(1).decode(): int(m.group(2))
                   for m in re.finditer(rb"(\w+)=(\d+)", r.stdout)}
            if r.returncode == 0 and out:
                return out
            self.stats_failures = getattr(self, "stats_failures", 0) + 1
            self.stats_error = "rc %d: %s" % (r.returncode, (r.stderr or r.stdout)[-300:])
            return None
        return wait_for(once, 5, step=0.1) or {}

    def postqueue(self, unknown=None):
        """Queue ids still in the MTA's queue (Postfix's postqueue -p, or
        Sendmail's queue directory: labsmtp.queue_ids).  When postqueue
        cannot tell (mail system down): unknown if given, else a Failure;
        never an empty list that would pass for an empty queue."""
        try:
            return labsmtp.queue_ids(self.env, unknown)
        except labsmtp.LabError as e:
            raise Failure(str(e))

    def flush(self):
        labsmtp.flush_queue(self.env)

    def redis_cli(self, *args):
        with open(self.env["LAB_REDIS_PASSWORD_FILE"]) as fp:
            pw = fp.read().strip()
        e = dict(os.environ, REDISCLI_AUTH=pw)
        return run(["redis-cli", "-s", self.env["LAB_REDIS"]] + list(args), ok=False, env=e)


# ------------------------------------------------------- PKI and enrollment

class OutsidePKI:
    """An outside CA and correspondents' certificates (keys kept by the test)."""

    def __init__(self, lab, domain="partner.example"):
        self.lab = lab
        self.dir = lab.wpath("outside")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.domain = domain
        self.ca_crt = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-subj", "/O=Outside/CN=Outside CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", "-keyout", self.ca_key, "-out", self.ca_crt])
        os.chmod(self.ca_crt, 0o644)

    def make(self, addr):
        """A key and certificate for addr: (cert path, key path)."""
        base = os.path.join(self.dir, addr.replace("@", "_at_"))
        ext = base + ".ext"
        with open(ext, "w") as fp:
            fp.write("subjectAltName=email:%s\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=emailProtection\n" % addr)
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % addr,
             "-keyout", base + ".key", "-out", base + ".csr"])
        # a serial of our own: -CAcreateserial races when made in parallel
        run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", self.ca_crt, "-CAkey",
             self.ca_key, "-set_serial", "0x" + os.urandom(8).hex(), "-days", "365",
             "-extfile", ext, "-out", base + ".crt"])
        os.chmod(base + ".crt", 0o644)
        return base + ".crt", base + ".key"


def parallel(fn, items, workers=4):
    """fn(item) for every item on a thread pool; results in order; first
    exception raised."""
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def enroll_users(lab, users, sign=True, workers=4):
    """kmctl enroll (+ signing-enroll) each user; export their certs to work/."""
    def one(u):
        lab.kmctl("enroll", u)
        if sign:
            lab.kmctl("signing-enroll", u)
        crt = lab.kmctl("export-cert", u).stdout
        p = lab.wpath(u.replace("@", "_at_") + ".crt")
        with open(p, "wb") as fp:
            fp.write(crt)
        return p
    return dict(zip(users, parallel(one, users, workers)))


def import_certs(lab, pki, addrs, workers=4):
    """Make and import outside correspondents' certs: {addr: (crt, key)}."""
    def one(a):
        crt, key = pki.make(a)
        lab.kmctl("import", a, crt)
        return crt, key
    return dict(zip(addrs, parallel(one, addrs, workers)))


# ------------------------------------------------------------------ messages

_tok_lock = threading.Lock()
_tok_n = [0]
_RUN = "%x" % (int(time.time() * 1000) % 0xffffffff)


def new_token():
    with _tok_lock:
        _tok_n[0] += 1
        return "ktok-%s-%d" % (_RUN, _tok_n[0])


def text_body(token, size):
    """~size bytes of printable CRLF lines, starting with the body marker."""
    lines = ["BODY-%s" % token]
    n = len(lines[0]) + 2
    i = 0
    h = hashlib.sha256(token.encode()).hexdigest()
    while n < size:
        line = "%s line %06d %s %s" % (token, i, h, h[:(i % 20)])
        lines.append(line)
        n += len(line) + 2
        i += 1
    return ("\r\n".join(lines) + "\r\n").encode()


# The lab trusts 127.0.0.1 only (policy.internal_hosts): "pass" mail comes
# from this outside client, since from an internal host mail to outside
# recipients is outbound whatever its sender.
OUTSIDE_CLIENT = "127.0.0.2"


class Msg:
    """One message to send and what must come out of it."""
    __slots__ = ("token", "sender", "rcpts", "raw", "kind", "marker", "body", "size",
                 "status", "qid", "reply", "attempts", "tries", "source")

    def __init__(self, token, sender, rcpts, raw, kind, marker, body=None):
        self.token, self.sender, self.rcpts, self.raw = token, sender, rcpts, raw
        self.kind, self.marker, self.body, self.size = kind, marker, body, len(raw)
        self.status = None      # accepted | tempfail | rejected | error
        self.qid = None
        self.reply = None
        self.attempts = []      # (status, reply) of every try
        self.tries = 0
        self.source = OUTSIDE_CLIENT if kind == "pass" else None   # client address


def plain_msg(sender, rcpt, size, kind):
    """A plain text message (outbound or pass)."""
    tok = new_token()
    body = text_body(tok, size)
    hdr = ["From: <%s>" % sender, "To: <%s>" % rcpt, "Subject: load %s" % tok,
           "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <%s@lab.test>" % tok,
           "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    raw = ("\r\n".join(hdr) + "\r\n\r\n").encode() + body
    return Msg(tok, sender, [rcpt], raw, kind, "BODY-" + tok, body)


def encrypt_entity(lab, entity, certs, name):
    """openssl cms -encrypt (S/MIME, CRLF) of a MIME entity to certs."""
    src = lab.wpath(name + ".in")
    with open(src, "wb") as fp:
        fp.write(entity)
    argv = ["openssl", "cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", src, "-crlfeol"]
    for c in certs:
        argv += ["-recip", c]
    out = run(argv).stdout
    os.unlink(src)
    return crlf(out)


def inbound_blob(lab, rcpt_cert, size, blobid):
    """An encrypted entity whose plaintext holds the marker INNER-<blobid>."""
    marker = "INNER-%s" % blobid
    ent = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + \
        text_body(marker, size).replace(b"BODY-" + marker.encode(), marker.encode())
    return encrypt_entity(lab, ent, [rcpt_cert], "blob-" + blobid), marker


def inbound_msg(sender, rcpt, blob, marker, kind="inbound"):
    """blob: an S/MIME entity (MIME-Version + Content-* headers, body)."""
    tok = new_token()
    hdr = ["From: <%s>" % sender, "To: <%s>" % rcpt, "Subject: load %s" % tok,
           "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <%s@outside.example>" % tok]
    raw = ("\r\n".join(hdr) + "\r\n").encode() + blob
    return Msg(tok, sender, [rcpt], raw, kind, marker)


# -------------------------------------------------------------- the sender

def _send_one(s, m):
    code, resp = s.mail(m.sender)
    if code != 250:
        return ("tempfail" if 400 <= code < 500 else "rejected"), "%d %s" % (
            code, resp.decode("latin-1"))
    for r in m.rcpts:
        code, resp = s.rcpt(r)
        if code not in (250, 251):
            s.rset()
            return ("tempfail" if 400 <= code < 500 else "rejected"), "%d %s" % (
                code, resp.decode("latin-1"))
    code, resp = s.data(m.raw)
    if code == 250:
        mq = QUEUED_RE.search(resp)
        m.qid = mq.group(1).decode() if mq else None
        return "accepted", "%d %s" % (code, resp.decode("latin-1"))
    return ("tempfail" if 400 <= code < 500 else "rejected"), "%d %s" % (code, resp.decode("latin-1"))


def send_all(env, msgs, sessions=12, per_session=25, timeout=120, stop=None):
    """Send msgs over `sessions` concurrent SMTP sessions (each session
    sends up to per_session transactions, then reconnects).  Sets
    m.status/m.qid/m.reply; returns elapsed seconds."""
    q = list(msgs)
    lock = threading.Lock()
    host, port = env.get("LAB_SMTP_HOST", "127.0.0.1"), int(env["LAB_SMTP_PORT"])

    def take():
        with lock:
            return q.pop(0) if q else None

    def close(s, polite=True):
        try:
            if polite:
                s.quit()
            else:
                s.close()
        except (smtplib.SMTPException, OSError):
            s.close()

    def worker():
        sess = {}       # client source address (None: the default) -> [SMTP, transactions]
        while True:
            if stop is not None and stop.is_set():
                return
            m = take()
            if m is None:
                break
            m.tries += 1
            cur = sess.get(m.source)
            try:
                if cur is None or cur[1] >= per_session:
                    if cur is not None:
                        close(cur[0])
                    sess.pop(m.source, None)
                    s = smtplib.SMTP(host, port, timeout=timeout, local_hostname="client.example.com",
                                     source_address=(m.source, 0) if m.source else None)
                    s.ehlo()
                    cur = sess[m.source] = [s, 0]
                st, rep = _send_one(cur[0], m)
                cur[1] += 1
            except (smtplib.SMTPException, OSError) as e:
                st, rep = "error", "%s: %s" % (type(e).__name__, e)
                if cur is not None:
                    close(cur[0], polite=False)
                sess.pop(m.source, None)
            m.status, m.reply = st, rep
            m.attempts.append((st, rep))
        for cur in sess.values():
            close(cur[0])

    t0 = time.time()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.time() - t0


def resend_unaccepted(env, msgs, sessions=4, rounds=5, pause=1.0):
    """The client's retry: send again what got a 4xx or a connection error,
    a few rounds.  Returns the number of messages retried."""
    n = 0
    for _ in range(rounds):
        todo = [m for m in msgs if m.status in ("tempfail", "error")]
        if not todo:
            break
        n += len(todo)
        send_all(env, todo, sessions=sessions)
        if any(m.status in ("tempfail", "error") for m in todo):
            # the client's retry interval: time passing is what an SMTP
            # client does between tries, not a wait for an event
            time.sleep(pause)
    return n


# ---------------------------------------------------------- the accounting

def wait_queue_empty(lab, secs=120, flush_every=10.0):
    """Wait until Postfix's queue is empty (postqueue -f now and then);
    returns the ids left."""
    last_flush = [time.time()]

    def empty():
        if not lab.postqueue():
            return True
        if time.time() - last_flush[0] > flush_every:
            lab.flush()
            last_flush[0] = time.time()
        return False
    if wait_for(empty, secs, step=0.2):
        return []
    return lab.postqueue()


def scan_out(env):
    """{token: [path, ...]} over LAB_OUT (token from Subject/Message-ID)."""
    found = {}
    for p in labsmtp.delivered_files(env):
        try:
            with open(p, "rb") as fp:
                head = fp.read(16384)
        except OSError:
            continue
        end = head.find(b"\n\n")
        m = TOKEN_RE.search(head[:end if end >= 0 else len(head)])
        if m:
            found.setdefault(m.group(0).decode(), []).append(p)
    return found


def header_value(msg, name):
    hdr, _ = labsmtp.split_message(msg)
    text = re.sub(rb"\r?\n[ \t]+", b" ", hdr).decode("latin-1")
    for line in re.split(r"\r?\n", text):
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            return v.strip()
    return None


def is_enveloped(msg):
    ct = (header_value(msg, "Content-Type") or "").lower()
    return ct.startswith("application/pkcs7-mime") and "enveloped-data" in ct


def check_delivery(m, msg):
    """What must be true of message m's delivered form; '' or a problem.
    A kind this does not know is a problem: nothing is counted unchecked."""
    if m.kind == "outbound":
        if not is_enveloped(msg):
            return "outbound %s delivered as %r, not enveloped-data" % (
                m.token, header_value(msg, "Content-Type"))
        if m.marker.encode() in msg:
            return "outbound %s: its body marker is in clear in the delivery" % m.token
    elif m.kind == "signonly":
        ct = (header_value(msg, "Content-Type") or "").lower()
        if is_enveloped(msg):
            return "sign-only %s delivered encrypted" % m.token
        if not (ct.startswith("multipart/signed") or "signed-data" in ct):
            return "sign-only %s delivered as %r, not signed" % (m.token, ct)
    elif m.kind == "inbound":
        if is_enveloped(msg):
            return "inbound %s delivered still encrypted" % m.token
        if m.marker.encode() not in msg:
            return "inbound %s: decrypted body lacks %s" % (m.token, m.marker)
    elif m.kind == "inbound-locked":
        if not is_enveloped(msg):
            return "inbound %s for a protected key delivered decrypted" % m.token
    elif m.kind == "pass":
        _, body = labsmtp.split_message(msg)
        if labsmtp.lf(body).rstrip(b"\n") != labsmtp.lf(m.body).rstrip(b"\n"):
            return "pass-through %s: body changed" % m.token
    else:
        return "%s: no delivery check for kind %r" % (m.token, m.kind)
    return ""


class Account:
    """The result of accounting for a list of messages.  by_kind counts
    only messages delivered and found right by the check; an accepted
    message still in Postfix's queue is a problem (queued), and so is
    anything else left there (left)."""

    def __init__(self):
        self.accepted = self.delivered = self.queued = 0
        self.lost = []
        self.dups = []
        self.bad = []
        self.unaccepted = []
        self.stray = []
        self.still_queued = []  # accepted, not delivered, still in the queue
        self.left = []          # every queue id left after the bounded wait
        self.queue_wait = 0
        self.by_kind = {}

    def problems(self, limit=5):
        out = []
        if self.lost:
            out.append("%d lost (accepted, neither delivered nor queued): %s" % (
                len(self.lost), ", ".join("%s qid=%s" % (m.token, m.qid) for m in self.lost[:limit])))
        if self.still_queued:
            out.append("%d accepted but still in Postfix's queue after %ds (never checked): %s" % (
                len(self.still_queued), self.queue_wait, ", ".join(
                    "%s qid=%s" % (m.token, m.qid) for m in self.still_queued[:limit])))
        if self.left:
            out.append("Postfix's queue not empty after %ds: %d left (%s)" % (
                self.queue_wait, len(self.left), ", ".join(self.left[:limit])))
        if self.dups:
            out.append("%d delivered more than once: %s" % (
                len(self.dups), ", ".join(m.token for m in self.dups[:limit])))
        if self.bad:
            out.append("%d wrong deliveries: %s" % (len(self.bad), "; ".join(self.bad[:limit])))
        if self.stray:
            out.append("%d deliveries of messages never accepted: %s" % (
                len(self.stray), ", ".join(self.stray[:limit])))
        return out

    def summary(self):
        return ("accepted=%d delivered=%d queued=%d left-in-queue=%d lost=%d dup=%d bad=%d "
                "not-accepted=%d" % (self.accepted, self.delivered, self.queued, len(self.left),
                                     len(self.lost), len(self.dups), len(self.bad),
                                     len(self.unaccepted)))


def account(lab, msgs, queue_wait=120, check=None):
    """Wait (at most queue_wait seconds) for Postfix's queue to drain, then
    account for every message: each accepted one delivered exactly once and
    every delivered copy checked (check(m, delivered bytes) -> '' or a
    problem; check_delivery by default).  Whatever is still queued then is a
    problem (Account.problems()): it was never content-checked."""
    check = check or check_delivery
    left = wait_queue_empty(lab, queue_wait)
    left_set = set(left)
    found = scan_out(lab.env)
    a = Account()
    a.left = list(left)
    a.queue_wait = queue_wait
    for m in msgs:
        paths = found.get(m.token, [])
        if m.status != "accepted":
            a.unaccepted.append(m)
            if paths:
                # a message refused to the client must not be delivered
                a.stray.append("%s (%s)" % (m.token, m.reply))
            continue
        a.accepted += 1
        if not paths:
            if m.qid in left_set:
                a.queued += 1
                a.still_queued.append(m)
            else:
                a.lost.append(m)
            continue
        if len(paths) > 1:
            a.dups.append(m)
        a.delivered += 1
        whys = []
        for p in paths:
            _, msg = labsmtp.read_delivered(p)
            why = check(m, msg)
            if why:
                whys.append(why)
        if whys:
            a.bad.extend(whys)
        else:
            a.by_kind[m.kind] = a.by_kind.get(m.kind, 0) + 1
    return a


def peak_rss_kb(lab):
    pid = lab.milter_pid()
    return proc_status(pid, "VmHWM") if pid else None


def log_lines_for(lab, qids):
    """{qid: kmilter log line fields} for the given queue ids."""
    want = set(qids)
    out = {}
    for line in lab.log_text().splitlines():
        m = re.match(rb"\S+ kmilter: ([0-9A-Za-z]+): from=<", line)
        if m and m.group(1).decode() in want:
            out[m.group(1).decode()] = labsmtp.parse_log_line(line.decode("utf-8", "replace"))
    return out
