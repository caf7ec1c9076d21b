#!/usr/bin/python3
"""t-twopass - kmilter's two-pass layout at the milter protocol (no MTA).

kmilter with policy.inbound.decrypt_daemon = "kmilter-decrypt" (no KM, no
Redis), driven by the milter client with the {daemon_name} connect macro
Postfix sends (milter_macro_daemon_name):
- kmilter asks for {daemon_name} at connect;
- public pass ({daemon_name} smtpd): mail from outside claiming an internal
  envelope sender still loses its forged X-Kmilter-* header there, because
  the decrypt pass leaves internal senders' mail alone;
- decrypt pass: an internal sender's mail is left alone (direction=pass,
  no modification), an outside sender's gets the inbound work (forged
  header removed, direction=inbound), even from an internal client.
FAILs when kmilter is not built.
"""
import importlib.util
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ktest import BUILD, Suite, check, check_eq, stop_pid  # noqa: E402
import labsmtp  # noqa: E402
import milterclient as mc  # noqa: E402

# The kmilter runner of t-kmilter, with the decrypt pass configured.
_spec = importlib.util.spec_from_file_location("t_kmilter", os.path.join(HERE, "t-kmilter.py"))
tk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tk)
tk.CONF = tk.CONF.replace('internal_hosts = [ "127.0.0.0/8", "::1" ];',
                          'internal_hosts = [ "127.0.0.0/8", "::1" ];\n'
                          '\tinbound: { decrypt_daemon = "kmilter-decrypt"; };')

ALICE, BOB, DAVE = "alice@example.com", "bob@example.com", "dave@outside.example"
FORGED = [("From", "<%s>" % ALICE), ("To", "<%s>" % BOB), ("Subject", "two passes"),
          ("X-Kmilter-Decrypted", "yes, trust me")]


def run(k, daemon, addr, sender, qid):
    """One message with {daemon_name} = daemon from addr; (fields, eom result)."""
    c = mc.MilterClient(k.sock, timeout=15)
    neg = c.negotiate()
    c.macros("C", {"j": "mx.example.com", "{daemon_name}": daemon, "{client_addr}": addr})
    r = c.connect("client.example", "4", 25, addr)
    check(r.code in (None, "continue"), "connect: %r" % (r,))
    c.helo("client.example")
    steps, res = c.message("<%s>" % sender, ["<%s>" % BOB], FORGED, b"hello\r\n",
                           queue_id=qid, connect=False)
    c.quit()
    check(res is not None and res.reply.code in ("continue", "accept"),
          "%s: %r" % (qid, steps[-1]))
    line = labsmtp.wait_log_line({"LAB_LOG": k.log}, qid, 5)
    check(line, "no log line for %s" % qid)
    return neg, labsmtp.parse_log_line(line), res


def removed(res):
    return [m for m in res.of("chgheader") if m[2] == "X-Kmilter-Decrypted" and not m[3]]


def main():
    if not os.access(os.path.join(BUILD, "kmilter"), os.X_OK):
        print("FAIL two-pass protocol: kmilter not built (make all)")
        return 1
    suite = Suite()
    tmp = tempfile.mkdtemp(prefix="t-twopass.")
    os.chmod(tmp, 0o755)
    k = tk.Kmilter(tmp)
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    suite.cleanups.append(lambda: (stop_pid(k.pid), k.proc.wait(5)))

    @suite.case("kmilter with decrypt_daemon starts")
    def _():
        check(k.ready(), "socket never answered; log: %s" % k.log_text()[-500:])

    @suite.case("public pass: forged header removed from mail claiming an internal sender")
    def _():
        neg, f, res = run(k, "smtpd", "192.0.2.10", ALICE, "PUB1")
        check_eq(f.get("direction"), "inbound", "direction")
        check(removed(res), "forged X-Kmilter-Decrypted kept: %r" % res.mods)
        check("{daemon_name}" in neg.macros.get("connect", []),
              "kmilter does not ask for {daemon_name} at connect: %r" % (neg.macros,))

    @suite.case("decrypt pass: an internal sender's mail is left alone")
    def _():
        _, f, res = run(k, "kmilter-decrypt", "127.0.0.1", ALICE, "DEC1")
        check_eq(f.get("direction"), "pass", "direction")
        check_eq(res.mods, [], "modifications")

    @suite.case("decrypt pass: an outside sender's mail gets the inbound work")
    def _():
        _, f, res = run(k, "kmilter-decrypt", "127.0.0.1", DAVE, "DEC2")
        check_eq(f.get("direction"), "inbound", "direction (internal client, not outbound)")
        check(removed(res), "forged X-Kmilter-Decrypted kept: %r" % res.mods)

    @suite.case("kmilter survived")
    def _():
        check(k.alive(), "kmilter is not running")
        check("ERROR: AddressSanitizer" not in k.log_text(), "ASan report in the log")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
