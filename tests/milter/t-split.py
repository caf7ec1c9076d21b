#!/usr/bin/python3
"""t-split - policy.outbound.missing_cert = "split" at the milter protocol
(no MTA, no KM: nobody has a certificate here).

kmilter -n accepts "split" and refuses a word it does not know.  Then
kmilter (t-kmilter's runner) with missing_cert = "split", rules
secure.example mandatory and plain.example never, is driven with the
milter client, RCPT by RCPT, as an internal client (127.0.0.1) sending for
alice@example.com:
- no recipient can be encrypted (no KM): every one, whatever its rule
  ("never" or the default opportunistic), is signed only, so nobody gets
  452; a mandatory recipient without a certificate still gets 550 5.7.1,
  not 452, and the next one is accepted;
- the same recipients from an outside client (inbound or pass, not
  outbound): no RCPT decision at all.
The split itself (a recipient with a certificate after one without, and
the other way round) needs a certificate: tests/e2e/t-split.py drives the
lab's kmilter, which has a KM, with the same milter client, and
tests/unit/test_outbound.c checks the decision over a fake key store.
FAILs when kmilter is not built.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ktest import BUILD, Suite, check, check_eq, stop_pid  # noqa: E402
import protocases  # noqa: E402

_spec = importlib.util.spec_from_file_location("t_kmilter", os.path.join(HERE, "t-kmilter.py"))
tk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tk)
POLICY = """	outbound: { missing_cert = "split"; };
	rules = ( { match = "secure.example"; encrypt = "mandatory"; },
	          { match = "plain.example"; encrypt = "never"; } );
"""
ANCHOR = 'internal_hosts = [ "127.0.0.0/8", "::1" ];\n'
tk.CONF = tk.CONF.replace(ANCHOR, ANCHOR + POLICY)

ALICE = "alice@example.com"


def conf_check(tmp, word):
    """kmilter -n on t-kmilter's configuration with missing_cert = word."""
    path = os.path.join(tmp, "check-%s.conf" % word)
    with open(path, "w") as fp:
        fp.write((tk.CONF % {"d": tmp, "extra": ""}).replace('"split"', '"%s"' % word))
    return subprocess.run([os.path.join(BUILD, "kmilter"), "-n", "-c", path],
                          capture_output=True, text=True)


def main():
    if not os.access(os.path.join(BUILD, "kmilter"), os.X_OK):
        print("FAIL split protocol: kmilter not built (make all)")
        return 1
    suite = Suite()
    tmp = tempfile.mkdtemp(prefix="t-split.")
    os.chmod(tmp, 0o755)
    k = tk.Kmilter(tmp)
    checks = {w: conf_check(tmp, w) for w in ("split", "splitt")}  # its dirs exist now
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    suite.cleanups.append(lambda: (stop_pid(k.pid), k.proc.wait(5)))

    @suite.case("kmilter -n: missing_cert = split accepted, an unknown word refused")
    def _():
        r = checks["split"]
        check_eq(r.returncode, 0, "kmilter -n with split: %s" % (r.stderr + r.stdout)[-300:])
        r = checks["splitt"]
        check(r.returncode != 0, "kmilter -n accepted missing_cert = \"splitt\"")
        check("missing_cert" in r.stderr + r.stdout, "no message naming the setting: %r"
              % (r.stderr + r.stdout)[-300:])

    @suite.case("kmilter with missing_cert = split starts")
    def _():
        check(k.ready(), "socket never answered; log: %s" % k.log_text()[-500:])

    @suite.case("nobody can be encrypted: nobody split, whatever the rule; mandatory "
                "without a certificate still 550 5.7.1")
    def _():
        rc = ["bob@partner.example", "x@plain.example", "nocert@secure.example",
              "carol@other.example"]
        got = protocases.rcpt_replies(k.sock, ALICE, rc, "SPLIT1")
        check_eq([r.code for r in got], ["continue", "continue", "replycode", "continue"],
                 "RCPT replies %r" % (got,))
        check(got[2].text.startswith("550 5.7.1 ") and "<nocert@secure.example>" in got[2].text,
              "mandatory: %r" % (got[2],))
        check(" split:" not in k.log_text(), "a split logged: %s" % k.log_text()[-500:])

    @suite.case("an outside client (not outbound): no RCPT decision")
    def _():
        rc = ["nocert@secure.example", "bob@partner.example"]
        got = protocases.rcpt_replies(k.sock, "dave@outside.example", rc, "SPLIT2",
                                      client_addr="192.0.2.10")
        check_eq([r.code for r in got], ["continue", "continue"], "RCPT replies %r" % (got,))

    @suite.case("kmilter survived")
    def _():
        check(k.alive(), "kmilter is not running")
        check("ERROR: AddressSanitizer" not in k.log_text(), "ASan report in the log")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
