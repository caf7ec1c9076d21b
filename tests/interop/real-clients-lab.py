#!/usr/bin/python3
"""real-clients-lab.py [DIR] - a check by hand, not a suite: the real
Outlook and Thunderbird S/MIME samples of DIR (default
/work/shared/interop/real-clients/outlook-thunderbird, see its README)
through a private lab (real Postfix, kmilter, Redis, two PyKMIP servers),
set up as t-inbound.py does.  The samples' domain becomes internal,
smime-2's key is imported for smime2@hmailserver.test (from its .key and
.crt, as a 3DES PKCS#12) and the samples' CA is trusted; every sample that
holds S/MIME is then sent to smime2 and what kmilter did is printed (log
action and result, Authentication-Results, X-Kmilter-Decrypted).

The suites do not use these files (tests/e2e/t-clients.py makes the same
forms itself); this shows the real ones still hold.  Run as root from a
built tree: tests/interop/real-clients-lab.py
"""
import glob
import importlib.util
import os
import pwd
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ktest import wait_for  # noqa: E402

sys.dont_write_bytecode = True     # no __pycache__ beside the suites
_spec = importlib.util.spec_from_file_location(
    "t_inbound", os.path.join(HERE, "..", "e2e", "t-inbound.py"))
ti = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ti)

RCPT, SENDER = "smime2@hmailserver.test", "smime1@hmailserver.test"


def reload_kmilter(base):
    """Make hmailserver.test internal and wait for kmilter to reload."""
    conf = os.path.join(base, "lab", "kmilter", "kmilter.conf")
    with open(conf) as fp:
        text = fp.read()
    with open(conf, "w") as fp:
        fp.write(text.replace('internal_domains = [ "example.com" ];',
                              'internal_domains = [ "example.com", "hmailserver.test" ];'))
    with open(ti.env["LAB_LOG"], "rb") as fp:
        seen = fp.read().count(b"reloaded configuration")
    os.kill(ti.state["pid"], signal.SIGHUP)

    def reloaded():
        with open(ti.env["LAB_LOG"], "rb") as fp:
            return fp.read().count(b"reloaded configuration") > seen
    if not wait_for(reloaded, secs=20):
        raise ti.SetupError("kmilter did not reload")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else \
        "/work/shared/interop/real-clients/outlook-thunderbird"
    certs = os.path.join(src, "certs")
    base = tempfile.mkdtemp(prefix="real-clients.")
    os.chmod(base, 0o755)
    held = total = 0
    try:
        ti.setup(base)
        with open(ti.path("outca.crt"), "a") as fp, \
                open(os.path.join(certs, "ca_smime.crt")) as ca:
            fp.write(ca.read())     # policy.inbound.ca_file, read again on reload
        reload_kmilter(base)
        ti.run(["openssl", "pkcs12", "-export", "-in", os.path.join(certs, "smime-2.crt"),
                "-inkey", os.path.join(certs, "smime-2.key"), "-passout",
                "file:" + ti.path("p12pass"), "-keypbe", "PBE-SHA1-3DES", "-certpbe",
                "PBE-SHA1-3DES", "-macalg", "sha1", "-out", ti.path("s2.p12")])
        km = pwd.getpwnam("kmilter")
        os.chown(ti.path("s2.p12"), km.pw_uid, km.pw_gid)
        ti.kmctl("import", RCPT, ti.path("s2.p12"), "--password-file", ti.path("p12pass"))
        for f in sorted(glob.glob(os.path.join(src, "*", "*.eml"))):
            with open(f, "rb") as fp:
                raw = fp.read()
            if b"pkcs7" not in raw:
                continue
            total += 1
            d = ti.deliver(ti.crlf(raw), rcpts=(RCPT,), sender=SENDER)
            ar = [ti.norm(v) for v in d.get("Authentication-Results")
                  if v.lower().startswith(ti.AUTHSERV)]
            ok = d.fields.get("result") == "ok" and \
                (b"enveloped" not in raw or d.get("X-Kmilter-Decrypted")) and \
                (b"signed" not in raw.lower() or any("smime=pass" in a for a in ar))
            held += bool(ok)
            print("%s %s\n    action=%s result=%s\n    AR=%s\n    X-Kmilter-Decrypted=%s"
                  % ("HOLDS" if ok else "DIFFERS", os.path.relpath(f, src),
                     d.fields.get("action"), d.fields.get("result"), ar,
                     d.get("X-Kmilter-Decrypted")), flush=True)
    finally:
        ti.lab_down(os.path.join(base, "lab"))
        ti.cleanup(base)
    print("FIGURE real client samples through the lab: %d/%d hold" % (held, total))
    return 0 if held == total else 1


if __name__ == "__main__":
    sys.exit(main())
