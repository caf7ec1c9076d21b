#!/usr/bin/python3
"""t-asan - the crypto paths of the daemon under ASan+UBSan, end to end.

Selected only by `make check-asan` (tests/run asan): the unit and protocol
tests never make kmilter sign, encrypt, decrypt or verify a real message.
One lab with the sanitized kmilter and kmctl of KM_BUILD (build-asan; the
suite FAILs if that binary is not built with -fsanitize=address,undefined),
ASAN_OPTIONS/UBSAN_OPTIONS log_path pointing into a directory the user
kmilter can write.  A few messages of each kind go through it:

  outbound  alice -> dave: sign+encrypt (plain, multipart with attachment,
            one bigger than spool_memory_max so it spools), decrypted with
            dave's key and verified under the organization CA by openssl;
            alice -> a recipient without certificate: signed only;
  inbound   dave -> bob: encrypted only, signed then encrypted (Authentication-
            Results smime=pass), signed only (verify), and a garbage CMS body
            (left as sent, kmilter stays up).

Then the lab goes down and the run FAILs on any sanitizer report file, any
sanitizer or crash text in kmilter's log, a kmilter that needed SIGKILL or
did not log "kmilter stopped" (LeakSanitizer runs at that exit).
Env: T_ASAN_KEEP=1 leaves the lab directory in place.
"""
import glob
import os
import pwd
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "load"))
import loadlib as L  # noqa: E402
from ktest import BUILD, Suite, check, check_eq, skip  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
DAVE = "dave@partner.example"
NOCERT = "nocert@nowhere.example"
AUTHSERV = "mx.example.com"
SAN_RE = re.compile(rb"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                    rb"SUMMARY: \w+Sanitizer|LeakSanitizer has encountered|"
                    rb"Sanitizer CHECK failed|segfault|Segmentation fault|assertion failed")
KEEP = os.environ.get("T_ASAN_KEEP") == "1"

suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


def sanitized(binary):
    """True if binary was linked with ASan and UBSan."""
    try:
        with open(binary, "rb") as fp:
            data = fp.read()
    except OSError:
        return False
    return b"__asan_init" in data and b"__ubsan_handle" in data


def sanitizer_env(d):
    """Every report to a file under d (name.PID), stack traces on, stop at the
    first error; LeakSanitizer on at exit."""
    return {
        "ASAN_OPTIONS": "log_path=%s/asan:halt_on_error=1:detect_leaks=1:"
                        "abort_on_error=0:exitcode=23:detect_stack_use_after_return=0" % d,
        "UBSAN_OPTIONS": "log_path=%s/ubsan:print_stacktrace=1:halt_on_error=1" % d,
        "LSAN_OPTIONS": "log_path=%s/lsan" % d,
    }


def sign_entity(lab, entity, name):
    """dave's detached multipart/signed of a MIME entity (openssl, CRLF)."""
    src = lab.wpath(name + ".in")
    with open(src, "wb") as fp:
        fp.write(entity)
    crt, key = S["dave"]
    out = L.run(["openssl", "cms", "-sign", "-md", "sha256", "-signer", crt, "-inkey", key,
                 "-certfile", S["pki"].ca_crt, "-in", src, "-crlfeol"]).stdout
    return L.crlf(out)


def text_entity(marker, size):
    return b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + \
        L.text_body(marker, size).replace(b"BODY-" + marker.encode(), marker.encode())


def multipart_msg(sender, rcpt, size):
    """alice's text with a base64 attachment: multipart/mixed."""
    tok = L.new_token()
    body = L.text_body(tok, 2000)
    att = L.base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    hdr = ["From: <%s>" % sender, "To: <%s>" % rcpt, "Subject: asan %s" % tok,
           "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <%s@lab.test>" % tok,
           "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b-%s"' % tok]
    raw = ("\r\n".join(hdr) + "\r\n\r\n").encode()
    raw += b"--b-%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" % tok.encode() + body
    raw += (b"--b-%s\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"x.bin\"\r\n\r\n" % tok.encode()) + att
    raw += b"--b-%s--\r\n" % tok.encode()
    return L.Msg(tok, sender, [rcpt], raw, "outbound", "BODY-" + tok, body)


def write_work(lab, name, data):
    p = lab.wpath(name)
    with open(p, "wb") as fp:
        fp.write(data)
    return p


def check_outbound(m, msg):
    """Enveloped to dave, and what dave decrypts verifies under the org CA."""
    why = L.check_delivery(m, msg)
    if why:
        return why
    lab = S["lab"]
    f = write_work(lab, m.token + ".eml", msg)
    crt, key = S["dave"]
    r = L.run(["openssl", "cms", "-decrypt", "-recip", crt, "-inkey", key, "-in", f], ok=False)
    if r.returncode != 0:
        return "outbound %s: dave cannot decrypt: %s" % (m.token, r.stderr[-200:])
    g = write_work(lab, m.token + ".dec", r.stdout)
    r = L.run(["openssl", "cms", "-verify", "-CAfile", lab.env["LAB_CA_CERT"], "-purpose",
               "smimesign", "-in", g], ok=False)
    if r.returncode != 0:
        return "outbound %s: signature does not verify: %s" % (m.token, r.stderr[-200:])
    if m.marker.encode() not in r.stdout:
        return "outbound %s: signed content lacks %s" % (m.token, m.marker)
    return ""


def check_signonly(m, msg):
    if L.is_enveloped(msg):
        return "sign-only %s delivered encrypted" % m.token
    if not (L.header_value(msg, "Content-Type") or "").lower().startswith("multipart/signed"):
        return "sign-only %s is not multipart/signed" % m.token
    f = write_work(S["lab"], m.token + ".eml", msg)
    r = L.run(["openssl", "cms", "-verify", "-CAfile", S["lab"].env["LAB_CA_CERT"],
               "-purpose", "smimesign", "-in", f], ok=False)
    if r.returncode != 0 or m.marker.encode() not in r.stdout:
        return "sign-only %s does not verify: %s" % (m.token, r.stderr[-200:])
    return ""


def ar_pass(msg):
    v = re.sub(r"\s+", " ", L.header_value(msg, "Authentication-Results") or "")
    return v.startswith(AUTHSERV + "; smime=pass") and ("smime-identifier=" + DAVE) in v


def check_one(m, msg):
    if m.kind == "outbound":
        return check_outbound(m, msg)
    if m.kind == "signonly":
        return check_signonly(m, msg)
    if m.kind == "inbound-signed":
        why = L.check_delivery(L.Msg(m.token, m.sender, m.rcpts, m.raw, "inbound", m.marker), msg)
        if why:
            return why
        if not ar_pass(msg):
            return "inbound %s: Authentication-Results %r, want smime=pass by %s" % (
                m.token, L.header_value(msg, "Authentication-Results"), DAVE)
        return ""
    if m.kind == "garbage":
        _, body = L.labsmtp.split_message(msg)
        _, sent = L.labsmtp.split_message(m.raw)
        if L.labsmtp.lf(body).rstrip(b"\n") != L.labsmtp.lf(sent).rstrip(b"\n"):
            return "garbage CMS %s: body changed" % m.token
        return ""
    return L.check_delivery(m, msg)


@suite.case("lab_up_with_sanitized_kmilter")
def _():
    for prog in ("kmilter", "kmctl"):
        check(sanitized(os.path.join(BUILD, prog)),
              "%s/%s is not built with ASan+UBSan (make SANITIZE=1; tests/run --build build-asan)"
              % (BUILD, prog))
    lab = L.Lab("t-asan")
    S["lab"] = lab
    sand = os.path.join(lab.top, "sanitizer")
    os.mkdir(sand)
    pw = pwd.getpwnam("kmilter")
    os.chown(sand, pw.pw_uid, pw.pw_gid)
    os.chmod(sand, 0o755)
    S["sand"] = sand
    pki = L.OutsidePKI(lab)
    S["pki"] = pki
    lab.policy = 'inbound: { ca_file = "%s"; authserv_id = "%s"; };' % (pki.ca_crt, AUTHSERV)
    lab.env_extra = sanitizer_env(sand)
    lab.up()
    S["pid"] = lab.milter_pid()
    check(S["pid"] is not None, "no kmilter pid")
    S["env"] = lab.env
    print("INFO lab up in %.1fs: %s" % (lab.up_secs, lab.dir), flush=True)


@suite.case("enroll_and_import")
def _():
    need("env")
    lab = S["lab"]
    certs = L.enroll_users(lab, [ALICE, BOB], workers=2)
    S["bob_crt"] = certs[BOB]
    S["dave"] = S["pki"].make(DAVE)
    lab.kmctl("import", DAVE, S["dave"][0])
    S["keys"] = True


@suite.case("outbound_and_inbound_through_sanitized_kmilter")
def _():
    need("keys")
    lab = S["lab"]
    msgs = [L.plain_msg(ALICE, DAVE, 3000, "outbound"),
            multipart_msg(ALICE, DAVE, 60000),
            L.plain_msg(ALICE, DAVE, 1300 * 1024, "outbound"),     # > spool_memory_max
            L.plain_msg(ALICE, NOCERT, 2000, "signonly")]
    blob, marker = L.inbound_blob(lab, S["bob_crt"], 4000, "enc-" + os.urandom(4).hex())
    msgs.append(L.inbound_msg(DAVE, BOB, blob, marker))
    mk = "INNER-se-" + os.urandom(4).hex()
    signed = sign_entity(lab, text_entity(mk, 5000), "se")
    blob = L.encrypt_entity(lab, signed, [S["bob_crt"]], "se")
    msgs.append(L.inbound_msg(DAVE, BOB, blob, mk, kind="inbound-signed"))
    mk = "INNER-so-" + os.urandom(4).hex()
    signed = sign_entity(lab, text_entity(mk, 3000), "so")
    m = L.inbound_msg(DAVE, BOB, signed, mk, kind="inbound-signed")
    msgs.append(m)
    garbage = (b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
               b"smime-type=enveloped-data; name=smime.p7m\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" +
               L.base64.encodebytes(b"\x30\x82\x01\x00" + os.urandom(200)).replace(b"\n", b"\r\n"))
    msgs.append(L.inbound_msg(DAVE, BOB, garbage, "", kind="garbage"))
    for x in msgs:
        if x.kind != "outbound" and x.kind != "signonly":
            x.source = L.OUTSIDE_CLIENT
    L.send_all(S["env"], msgs, sessions=2)
    bad = [x for x in msgs if x.status != "accepted"]
    check(not bad, "not accepted: %s" % [(x.kind, x.reply) for x in bad])
    a = L.account(lab, msgs, queue_wait=120, check=check_one)
    print("INFO %s" % a.summary(), flush=True)
    check(not a.problems(), "; ".join(a.problems()))
    kinds = {}
    for x in msgs:
        kinds[x.kind] = kinds.get(x.kind, 0) + 1
    check_eq(a.by_kind, kinds, "messages delivered and checked, by kind")
    lines = L.log_lines_for(lab, [x.qid for x in msgs])
    acts = sorted(set(f.get("action", "?") for f in lines.values()))
    print("INFO kmilter actions: %s" % ", ".join(acts), flush=True)
    for want in ("sign+encrypt", "sign", "decrypt", "decrypt+verify", "verify"):
        check(want in acts, "no message took the %s path (actions: %s)" % (want, acts))
    S["mail_ok"] = True


@suite.case("no_sanitizer_report_and_clean_exit")
def _():
    need("env")
    lab = S["lab"]
    pid = S["pid"]
    probs = []
    if not L.pid_alive(pid):
        probs.append("kmilter (pid %d) died during the run" % pid)
    r = subprocess.run([L.LAB, "down", lab.dir], capture_output=True, timeout=180)
    down_err = r.stderr.decode("utf-8", "replace")
    S["down"] = True
    if L.pid_alive(pid):
        probs.append("kmilter (pid %d) still runs after tests/lab down" % pid)
    for p in sorted(glob.glob(os.path.join(S["sand"], "*"))):
        with open(p, "rb") as fp:
            probs.append("sanitizer report %s:\n%s" % (
                os.path.basename(p), fp.read(1500).decode("utf-8", "replace").strip()))
    log = lab.log_text()
    hits = [ln for ln in log.splitlines() if SAN_RE.search(ln)]
    if hits:
        probs.append("kmilter's log: %s" % b" | ".join(hits[:5]).decode("utf-8", "replace"))
    if "pid %d did not stop" % pid in down_err:
        probs.append("kmilter needed SIGKILL to stop: %s" % down_err.strip()[-300:])
    if b"kmilter stopped" not in log:
        probs.append("kmilter did not log 'kmilter stopped' at exit (last lines: %s)" %
                     b" | ".join(log.splitlines()[-3:]).decode("utf-8", "replace"))
    check(not probs, "\n".join(probs))


def main():
    try:
        return suite.run()
    finally:
        lab = S.get("lab")
        if lab is not None:
            if not S.get("down"):
                subprocess.run([L.LAB, "down", lab.dir], capture_output=True, timeout=180)
            if KEEP:
                print("INFO kept %s" % lab.top)
            else:
                shutil.rmtree(lab.top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
