#!/usr/bin/python3
"""t-sendmail-macros - kmilter fed the macros Sendmail sends, as against
Postfix's (issue 20 item 4; README "Sendmail").

What differs, and what kmilter does with it:
- {i}: Postfix sends it at MAIL FROM and end of message; Sendmail's default
  lists (cf/m4/proto.m4: confMILTER_MACROS_*) have it at MAIL FROM only,
  end of message gets {msg_id}.  Its queue ids are mixed-case
  ("6B1AaX3O026643").  kmilter asks for i (smfi_setsymlist) and keeps the
  one from MAIL FROM; with none at all it logs NOQUEUE and warns once.
- {auth_authen}: Sendmail defines it empty on a connection without AUTH
  (clrsessenvelope); empty is no login, not a trusted one.
- {daemon_name}: Sendmail's is the DAEMON_OPTIONS Name= ("MTA"), Postfix's
  milter_macro_daemon_name; no {client_addr} from Sendmail: kmilter takes
  the client from the connect step, never from a macro.
- j, _, {if_name}, {if_addr}: Sendmail's connect macros; kmilter reads none.
A kmilter from build/ is started as t-kmilter does; FAILs when not built.
"""
import importlib.util
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ktest import Suite, check, check_eq, stop_pid, wait_for  # noqa: E402
import labsmtp  # noqa: E402
import milterclient as mc  # noqa: E402
import protocases  # noqa: E402

_spec = importlib.util.spec_from_file_location("t_kmilter", os.path.join(HERE, "t-kmilter.py"))
tk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tk)

# Sendmail 8.17's default macro lists with the values its daemon gives a
# connection from an outside client without AUTH.
SM_CONNECT = {"j": "mx.example.com", "_": "mail.partner.test [192.0.2.10]",
              "{daemon_name}": "MTA", "{if_name}": "localhost", "{if_addr}": "127.0.0.1"}
SM_HELO = {"{tls_version}": "", "{cipher}": "", "{cipher_bits}": "", "{cert_subject}": "",
           "{cert_issuer}": ""}
SM_ENVFROM = {"{auth_type}": "", "{auth_authen}": "", "{auth_ssf}": "", "{auth_author}": "",
              "{mail_mailer}": "esmtp", "{mail_host}": "partner.test"}
SM_QID = "6B1AaX3O026643"
WARN = "the MTA sends no queue id (macro i)"


def sendmail_message(k, qid, envfrom_extra=None, actions=mc.F_ALL, client=protocases.CLIENT,
                     sender=protocases.SENDER, rcpts=None, qid_at_mail=True):
    """One message the way Sendmail's daemon sends it (its macro lists, no
    i at end of message); returns (negotiation, steps, eom result, log line
    fields or None)."""
    c = mc.MilterClient(k.sock, timeout=15)
    neg = c.negotiate(actions=actions)
    c.macros("C", dict(SM_CONNECT, **{"_": "%s [%s]" % (client[0], client[3])}))
    steps = [("connect", c.connect(*client))]
    c.macros("H", SM_HELO)
    steps.append(("helo", c.helo(client[0])))
    mac = dict(SM_ENVFROM, **(envfrom_extra or {}))
    mac["{mail_addr}"] = sender.strip("<>")
    if qid_at_mail:
        mac["i"] = qid
    c.macros("M", mac)
    steps.append(("mail", c.mail(sender)))
    for r in rcpts or protocases.RCPTS:
        c.macros("R", {"{rcpt_mailer}": "relay", "{rcpt_host}": "[127.0.0.1]",
                       "{rcpt_addr}": r.strip("<>")})
        steps.append(("rcpt", c.rcpt(r)))
    steps.append(("data", c.data()))
    for n, v in protocases.HEADERS:
        steps.append(("header", c.header(n, v)))
    steps.append(("eoh", c.eoh()))
    steps.append(("body", c.body(protocases.BODY)))
    c.macros("E", {"{msg_id}": "<proto-1@partner.test>"})
    res = c.eom()
    c.quit()
    line = labsmtp.wait_log_line({"LAB_LOG": k.log}, qid, 5) if qid_at_mail else None
    return neg, steps, res, (labsmtp.parse_log_line(line) if line else None)


def main():
    suite = Suite()
    tmp = tempfile.mkdtemp(prefix="t-sendmail-macros.")
    os.chmod(tmp, 0o755)
    state = {}
    suite.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))

    def stop():
        if "k" in state:
            stop_pid(state["k"].pid)
            state["k"].proc.wait(5)
    suite.cleanups.append(stop)

    @suite.case("kmilter starts")
    def _():
        state["k"] = tk.Kmilter(tmp)
        check(state["k"].ready(), "socket never answered; log: %s" % state["k"].log_text()[-500:])

    def k():
        check("k" in state and state["k"].alive(), "kmilter is not running")
        return state["k"]

    @suite.case("negotiation as Sendmail 8.17 offers it: kmilter asks for i at MAIL FROM "
                "and end of message, {auth_authen}, {daemon_name}")
    def _():
        c = mc.MilterClient(k().sock, timeout=15)
        neg = c.negotiate()
        c.close()
        check(neg.actions & mc.F_SETSYMLIST, "kmilter did not keep SETSYMLIST: %r" % neg)
        check_eq(sorted(neg.macros.get("envfrom", [])), ["i", "{auth_authen}"], "envfrom list")
        check_eq(neg.macros.get("eom"), ["i"], "end-of-message list")
        check_eq(neg.macros.get("connect"), ["{daemon_name}"], "connect list")

    @suite.case("Sendmail's default macros, i only at MAIL FROM, mixed-case queue id: "
                "the log line carries it, empty {auth_authen} is no login (direction pass)")
    def _():
        # An MTA that ignores the lists kmilter asks for: Sendmail's own.
        neg, steps, res, f = sendmail_message(k(), SM_QID, actions=mc.F_ALL & ~mc.F_SETSYMLIST)
        protocases.assert_passed(steps, res)
        check(f is not None, "no log line for %s" % SM_QID)
        check_eq(f.get("direction"), "pass", "direction= (an empty {auth_authen} trusted?)")
        check_eq(f.get("result"), "ok", "result=")
        check(WARN not in k().log_text(), "warned about a missing queue id")

    @suite.case("Sendmail's macros with {auth_authen} set: an authenticated outside "
                "client's message for outside recipients is outbound")
    def _():
        qid = "6B1AaX3O026644"
        _, steps, res, f = sendmail_message(
            k(), qid, {"{auth_type}": "PLAIN", "{auth_authen}": "alice@example.com",
                       "{auth_ssf}": "0"}, sender="<alice@example.com>")
        check(f is not None, "no log line for %s" % qid)
        check_eq(f.get("direction"), "outbound", "direction= with {auth_authen}")

    @suite.case("no i at all (Sendmail with i left out of Milter.macros.envfrom): NOQUEUE "
                "and one warning naming both MTAs' settings, once")
    def _():
        km = k()
        for n in range(2):
            _, steps, res, _f = sendmail_message(km, "", actions=mc.F_ALL & ~mc.F_SETSYMLIST,
                                                 qid_at_mail=False)
            protocases.assert_passed(steps, res)
        check(wait_for(lambda: km.log_text().count("NOQUEUE: from=") >= 2, 5),
              "no NOQUEUE log lines: %s" % km.log_text()[-400:])
        text = km.log_text()
        check_eq(text.count(WARN), 1, "warnings about the missing queue id")
        check("confMILTER_MACROS_ENVFROM" in text and "milter_mail_macros" in text,
              "the warning does not name the settings")

    @suite.case("kmilter survived and stops on SIGTERM")
    def _():
        check(k().alive(), "kmilter is not running")
        check(stop_pid(k().pid, 15), "still running 15s after SIGTERM")

    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
