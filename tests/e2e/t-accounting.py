#!/usr/bin/python3
"""t-accounting - the load harness's accounting (tests/e2e/load/loadlib.py
account()) catches what it must: t-load, t-faults, t-security and the soak
trust it to say that every accepted message was delivered once and right.

A small lab with the null milter (no KM, no Redis).  Pass-through mail is
sent and accounted for (clean); then the smtp-sink is stopped and two more
messages are sent: account() must report them as still queued (never
content-checked), report Postfix's queue as not empty, and leave them out
of the per-kind counts; a check that refuses a delivery must make it a
wrong delivery, not a counted one.  With the sink back and the queue
flushed, the same messages account clean.
"""
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import loadlib as L  # noqa: E402
from ktest import BUILD, TOP, Suite, check, check_eq, skip  # noqa: E402

suite = Suite()
S = {}


def need(*keys):
    for k in keys:
        if k not in S:
            skip("an earlier step failed (no %s)" % k)


def sink(fn):
    """sink_stop / sink_start of tests/lablib/postfix.sh for the lab's sink."""
    lab = S["lab"]
    args = shlex.quote(lab.dir)
    if fn == "sink_start":
        args += " %s %s" % (lab.env["LAB_SINK_PORT"], shlex.quote(lab.env["LAB_OUT"]))
    script = ". %s/tests/lablib/common.sh; . %s/tests/lablib/postfix.sh; %s %s" % (
        shlex.quote(TOP), shlex.quote(TOP), fn, args)
    L.run(["/bin/sh", "-c", script], timeout=60)


def batch(n):
    return [L.plain_msg("x%d@elsewhere.example" % i, "y%d@partner.example" % i, 1500, "pass")
            for i in range(n)]


def send(msgs):
    L.send_all(S["env"], msgs, sessions=2)
    bad = [m for m in msgs if m.status != "accepted"]
    check(not bad, "not accepted: %s" % [m.reply for m in bad])


@suite.case("lab_up_null_milter")
def _():
    if not os.access(os.path.join(BUILD, "tools", "nullmilter"), os.X_OK):
        skip("%s/tools/nullmilter is not built (make tools)" % BUILD)
    lab = L.Lab("t-accounting", env_extra={"LAB_MILTER": "null", "LAB_KM": "0",
                                           "LAB_REDIS": "0"})
    S["lab"] = lab
    suite.cleanups.append(lab.down)
    lab.up()
    S["env"] = lab.env


@suite.case("delivered_mail_accounts_clean")
def _():
    need("env")
    msgs = batch(3)
    send(msgs)
    a = L.account(S["lab"], msgs, queue_wait=60)
    check(not a.problems(), "; ".join(a.problems()))
    check_eq(a.by_kind, {"pass": 3}, "checked deliveries by kind")
    S["first"] = msgs


@suite.case("sink_down_queued_mail_is_a_problem")
def _():
    need("first")
    lab = S["lab"]
    sink("sink_stop")
    late = batch(2)
    send(late)
    msgs = S["first"] + late
    a = L.account(lab, msgs, queue_wait=3)
    probs = "; ".join(a.problems())
    print("INFO with the sink down: %s" % a.summary(), flush=True)
    check(probs, "account() found no problem with 2 messages stuck in the queue")
    check_eq(sorted(m.token for m in a.still_queued), sorted(m.token for m in late),
             "still queued")
    check("still in Postfix's queue" in probs, "problems do not name the queued mail: %s" % probs)
    check("queue not empty" in probs, "problems do not say the queue is not empty: %s" % probs)
    check_eq(a.by_kind, {"pass": 3}, "checked deliveries by kind (queued ones are not)")
    S["late"] = late


@suite.case("a_refused_delivery_is_not_counted")
def _():
    need("first")
    msgs = S["first"]
    victim = msgs[0].token

    def picky(m, msg):
        return "refused %s" % m.token if m.token == victim else L.check_delivery(m, msg)
    a = L.account(S["lab"], msgs, queue_wait=1, check=picky)
    check_eq(a.bad, ["refused %s" % victim], "wrong deliveries")
    check_eq(a.by_kind.get("pass"), 2, "checked deliveries by kind")
    m = L.Msg(victim, "a@b", ["c@d"], b"", "nosuchkind", "")
    check(L.check_delivery(m, b"x\r\n\r\ny\r\n"), "check_delivery accepts an unknown kind")


@suite.case("sink_back_queue_drains_accounts_clean")
def _():
    need("late")
    lab = S["lab"]
    sink("sink_start")
    lab.flush()
    msgs = S["first"] + S["late"]
    a = L.account(lab, msgs, queue_wait=120)
    check(not a.problems(), "; ".join(a.problems()))
    check_eq(a.by_kind, {"pass": 5}, "checked deliveries by kind")


if __name__ == "__main__":
    sys.exit(suite.run())
