#!/bin/sh
# t-lab - the lab itself: usage errors, the generated Postfix instance, two
# labs at once, Redis access rules, milter-down tempfail, repeated up/down,
# and that /etc/postfix is never touched.  Uses the null milter so that it
# runs before kmilter exists.
. "$(dirname "$0")/../lib/suite.sh"
LAB=$KM_TOP/tests/lab
PY=/usr/bin/python3
SMTP="$PY $KM_TOP/tests/lib/labsmtp.py"
. "$KM_TOP/tests/lablib/common.sh"	# lab_pid_alive, lab_wait_until
# absent PATTERN FILE...: every FILE exists and none holds PATTERN; a glob
# that matched nothing or a grep error (status 2) is not "absent"
absent() {
	_pat=$1; shift
	[ $# -gt 0 ] || return 1
	for _f; do [ -f "$_f" ] || { echo "absent: no file $_f" >&2; return 1; }; done
	grep -q -- "$_pat" "$@"
	[ $? -eq 1 ]
}

suite_need_built "$KM_BUILD/tools/nullmilter"
base=$(mktemp -d /tmp/t-lab.XXXXXX)
chmod 0755 "$base"
A=$base/a B=$base/b
cleanup() {
	"$LAB" down "$A" >/dev/null 2>&1
	"$LAB" down "$B" >/dev/null 2>&1
	rm -rf "$base"
}
trap cleanup EXIT INT TERM

etc_sum() { find /etc/postfix -type f -exec md5sum {} + 2>/dev/null | sort | md5sum; }
etc_before=$(etc_sum)
export LAB_MILTER=null LAB_KM=0

# --- usage and bad options ------------------------------------------------
"$LAB" >/dev/null 2>"$base/err"; rc=$?
if [ $rc = 2 ] && grep -q usage "$base/err"; then pass "no arguments: usage, exit 2"
else fail "no arguments: usage, exit 2" "rc=$rc"; fi
"$LAB" frobnicate "$A" >/dev/null 2>"$base/err"; rc=$?
if [ $rc = 2 ]; then pass "unknown command: exit 2"; else fail "unknown command: exit 2" "rc=$rc"; fi
LAB_MILTER=bogus "$LAB" up "$A" >/dev/null 2>"$base/err"; rc=$?
if [ $rc != 0 ] && grep -q "LAB_MILTER must be" "$base/err" && [ ! -d "$A/postfix" ]; then
	pass "LAB_MILTER=bogus: clear error, nothing started"
else fail "LAB_MILTER=bogus: clear error, nothing started" "rc=$rc $(cat "$base/err")"; fi
LAB_PORT_BASE=12x "$LAB" up "$A" >/dev/null 2>"$base/err"; rc=$?
if [ $rc != 0 ] && grep -q "LAB_PORT_BASE" "$base/err"; then pass "LAB_PORT_BASE=12x: clear error"
else fail "LAB_PORT_BASE=12x: clear error" "rc=$rc"; fi
mkdir -p "$base/closed/lab" && chmod 0700 "$base/closed"
"$LAB" up "$base/closed/lab" >/dev/null 2>"$base/err"; rc=$?
if [ $rc != 0 ] && grep -q "not searchable" "$base/err"; then pass "unreachable parent dir: clear error"
else fail "unreachable parent dir: clear error" "rc=$rc $(cat "$base/err")"; fi
"$LAB" down "$base/closed/lab" >/dev/null 2>&1

# --- one lab up -------------------------------------------------------------
out=$("$LAB" up "$A" 2>"$base/err"); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "^lab: up in [0-9.]*s"; then pass "up (null milter): timing line: $out"
else fail "up (null milter)" "rc=$rc $(tail -5 "$base/err")"; exit 1; fi

missing=""
for v in LAB_DIR LAB_SMTP_HOST LAB_SMTP_PORT LAB_OUT LAB_CONF LAB_LOG LAB_KMCTL \
	 LAB_MILTER_SOCK LAB_KMILTER_PID_FILE LAB_POSTFIX_CONF LAB_REDIS LAB_REDIS_PASSWORD_FILE \
	 LAB_KM_A LAB_KM_B LAB_CA_CERT; do
	grep -q "^$v=" "$A/env" || missing="$missing $v"
done
( . "$A/env" && [ "$LAB_DIR" = "$A" ] && [ "$LAB_SMTP_HOST" = 127.0.0.1 ] ) || missing="$missing (values)"
if [ -z "$missing" ]; then pass "env names every variable"; else fail "env names every variable" "missing:$missing"; fi
. "$A/env"

if postfix -c "$LAB_POSTFIX_CONF" check >"$base/chk" 2>&1 && [ ! -s "$base/chk" ]; then
	pass "postfix -c DIR check is clean"
else fail "postfix -c DIR check is clean" "$(head -3 "$base/chk")"; fi

pc() { postconf -c "$LAB_POSTFIX_CONF" -h "$1"; }
bad=""
[ "$(pc inet_interfaces)" = 127.0.0.1 ] || bad="$bad inet_interfaces"
[ "$(pc mydestination)" = "" ] || bad="$bad mydestination"
[ "$(pc milter_default_action)" = tempfail ] || bad="$bad milter_default_action"
[ "$(pc smtpd_milters)" = "unix:$LAB_MILTER_SOCK" ] || bad="$bad smtpd_milters"
[ "$(pc queue_directory)" = "$LAB_POSTFIX_CONF/queue" ] || bad="$bad queue_directory"
chroots=$(postconf -c "$LAB_POSTFIX_CONF" -F '*/*/chroot' | grep -v '= n$')
[ -z "$chroots" ] || bad="$bad chroot:$chroots"
if [ -z "$bad" ]; then pass "main.cf/master.cf: loopback, relay-only, milter, no chroot"
else fail "main.cf/master.cf" "$bad"; fi

listen=$(ss -Hltnp 2>/dev/null | grep -E "pid=($(cat "$A"/pids/*.pid | paste -sd'|'))," | awk '{print $4}')
if [ -n "$listen" ] && ! echo "$listen" | grep -qv '^127\.0\.0\.1:'; then
	pass "every lab listener is on 127.0.0.1 ($(echo "$listen" | tr '\n' ' '))"
else fail "every lab listener is on 127.0.0.1" "$listen"; fi

if runuser -u kmilter -- env REDISCLI_AUTH="$(cat "$LAB_REDIS_PASSWORD_FILE")" \
	redis-cli -s "$LAB_REDIS" ping 2>/dev/null | grep -q PONG; then
	pass "redis: user kmilter reaches the socket with the password"
else fail "redis: user kmilter reaches the socket with the password"; fi
noauth=$(redis-cli -s "$LAB_REDIS" ping 2>&1)
if echo "$noauth" | grep -q NOAUTH; then pass "redis: refuses commands without AUTH"
else fail "redis: refuses commands without AUTH" "$noauth"; fi
if runuser -u nobody -- redis-cli -s "$LAB_REDIS" ping >/dev/null 2>&1; then
	fail "redis: other users cannot reach the socket"
else pass "redis: other users cannot reach the socket"; fi

q=$($SMTP send "$A" alice@partner.test bob@example.com 2>"$base/err") &&
	f=$($SMTP wait "$A" "$q" 2>>"$base/err")
if [ -n "${f:-}" ] && grep -q "^X-Rcpt-Args: <bob@example.com>" "$f"; then
	pass "example.com recipient is relayed to the sink ($q)"
else fail "example.com recipient is relayed to the sink" "$(cat "$base/err")"; fi

# --- a second lab at the same time -------------------------------------------
if LAB_REDIS=0 "$LAB" up "$B" >/dev/null 2>"$base/err"; then
	pb=$(. "$B/env"; echo "$LAB_SMTP_PORT")
	qb=$($SMTP send "$B" alice@partner.test dave@example.org) &&
		fb=$($SMTP wait "$B" "$qb")
	if [ "$pb" != "$LAB_SMTP_PORT" ] && [ -n "${fb:-}" ] && [ "${fb#"$B/out/"}" != "$fb" ] &&
	   absent "dave@example.org" "$A"/out/*; then
		pass "two labs at once: own ports, own out dirs"
	else fail "two labs at once" "ports $pb/$LAB_SMTP_PORT file ${fb:-none}"; fi
else fail "two labs at once" "$(tail -3 "$base/err")"; fi
"$LAB" down "$B" >/dev/null 2>&1

# --- up twice refused; milter down gives tempfail; restart-milter ------------
if "$LAB" up "$A" >/dev/null 2>"$base/err"; then fail "up on a running lab is refused"
elif grep -q "running lab" "$base/err"; then pass "up on a running lab is refused"
else fail "up on a running lab is refused" "$(cat "$base/err")"; fi

mpid=$(cat "$A/pids/milter.pid")
kill "$mpid"
lab_wait_until 10 "the killed milter (pid $mpid) gone" eval '! lab_pid_alive "$mpid"'
if $SMTP send "$A" alice@partner.test bob@example.org >/dev/null 2>"$base/err"; then
	fail "milter down: Postfix tempfails (milter_default_action)" "message accepted"
elif grep -q "451" "$base/err"; then pass "milter down: Postfix tempfails with 451"
else fail "milter down: Postfix tempfails" "$(tail -1 "$base/err")"; fi
if "$LAB" restart-milter "$A" >/dev/null 2>"$base/err" &&
   q=$($SMTP send "$A" alice@partner.test bob@example.org 2>>"$base/err") &&
   $SMTP wait "$A" "$q" >/dev/null 2>>"$base/err"; then
	pass "restart-milter: mail flows again"
else fail "restart-milter: mail flows again" "$(tail -3 "$base/err")"; fi

# --- down, again, and up/down in the same dir ----------------------------------
pids=$(cat "$A"/pids/*.pid)
master=$(cat "$A/postfix/queue/pid/master.pid" | tr -dc 0-9)
"$LAB" down "$A" >/dev/null 2>&1
alive=""
for p in $pids $master; do lab_pid_alive "$p" && alive="$alive $p"; done
if [ -z "$alive" ] && ! $PY -c "import socket; socket.create_connection(('127.0.0.1', $LAB_SMTP_PORT), 1)" 2>/dev/null; then
	pass "down: every recorded pid and the postfix master are gone, port closed"
else fail "down: everything gone" "alive:$alive"; fi
if "$LAB" down "$A" >/dev/null 2>&1; then pass "down twice is harmless"; else fail "down twice is harmless"; fi
ok=1
for i in 1 2; do
	"$LAB" up "$A" >/dev/null 2>"$base/err" || { ok=0; break; }
	q=$($SMTP send "$A" alice@partner.test bob@example.org 2>>"$base/err") || ok=0
	$SMTP wait "$A" "$q" >/dev/null 2>>"$base/err" || ok=0
	"$LAB" down "$A" >/dev/null 2>&1
done
if [ $ok = 1 ]; then pass "up/down twice more in the same dir"; else fail "repeated up/down" "$(tail -3 "$base/err")"; fi

# --- two organizations: up-pair ------------------------------------------------
P=$base/pair
out=$("$LAB" up-pair "$P" 2>"$base/err"); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "^lab: pair up in [0-9.]*s"; then
	pass "up-pair: $(echo "$out" | tail -1)"
else fail "up-pair" "rc=$rc $(tail -5 "$base/err")"; fi
va=$(. "$P/a/env" && echo "$LAB_ORG $LAB_PEER_DOMAIN $LAB_SMTP_PORT $LAB_PEER_SMTP_PORT $LAB_PEER_CA")
vb=$(. "$P/b/env" && echo "$LAB_ORG $LAB_PEER_DOMAIN $LAB_SMTP_PORT $LAB_PEER_SMTP_PORT $LAB_PEER_CA")
set -- $va; sa=$3
set -- $vb; sb=$3
if [ "$va" = "example.com example.net $sa $sb $P/b/orgca/ca.crt" ] &&
   [ "$vb" = "example.net example.com $sb $sa $P/a/orgca/ca.crt" ] &&
   grep -q "ca_file = \"$P/b/orgca/ca.crt\"" "$P/a/kmilter/kmilter.conf" &&
   grep -q 'internal_domains = \[ "example.net" \]' "$P/b/kmilter/kmilter.conf" &&
   [ "$(postconf -c "$P/b/postfix" -h myhostname)" = mx.example.net ] &&
   ! cmp -s "$P/a/orgca/ca.crt" "$P/b/orgca/ca.crt"; then
	pass "pair: each org names its domain, its peer's port and CA"
else fail "pair: env and config" "a: $va; b: $vb"; fi
# pair_hop FROMDIR TODIR SENDER RCPT: relayed to the peer, delivered there
# from 127.0.0.2 (an outside client for the peer), never in FROMDIR's out
pair_hop() {
	_q=$($SMTP send "$1" "$3" "$4" 2>>"$base/err") &&
		_q2=$($SMTP relayed "$1" "$_q" 2>>"$base/err") &&
		_f=$($SMTP wait "$2" "$_q2" 2>>"$base/err") &&
		grep -q "^X-Rcpt-Args: <$4>" "$_f" &&
		grep -q "^Received: from mx\.[a-z.]* (unknown \[127\.0\.0\.2\])" "$_f" &&
		{ [ -z "$(ls "$1/out")" ] || absent "$4" "$1"/out/*; }
}
if pair_hop "$P/a" "$P/b" alice@example.com carol@example.net &&
   pair_hop "$P/b" "$P/a" bob@example.net dave@example.com; then
	pass "pair: each org relays the other's domain to it, from 127.0.0.2"
else fail "pair: relaying between the orgs" "$(tail -3 "$base/err")"; fi
q=$($SMTP send "$P/a" alice@example.com erin@example.org 2>"$base/err") &&
	f=$($SMTP wait "$P/a" "$q" 2>>"$base/err")
if [ -n "${f:-}" ] && absent "erin@example.org" "$P"/b/out/*; then
	pass "pair: other domains still go to the org's own sink"
else fail "pair: other domains" "$(tail -3 "$base/err")"; fi
if "$LAB" up "$P" >/dev/null 2>"$base/err"; then fail "up on a pair dir is refused"
elif grep -q "lab pair" "$base/err"; then pass "up on a pair dir is refused"
else fail "up on a pair dir is refused" "$(cat "$base/err")"; fi
pids=$(cat "$P"/a/pids/*.pid "$P"/b/pids/*.pid)
st=$("$LAB" status "$P" 2>&1)
if [ "$(echo "$st" | grep -c ' running$')" = "$(echo "$pids" | wc -w)" ]; then
	pass "status on a pair dir shows both orgs"
else fail "status on a pair dir" "$st"; fi
"$LAB" down "$P" >/dev/null 2>&1
alive=""
for p in $pids; do lab_pid_alive "$p" && alive="$alive $p"; done
if [ -z "$alive" ]; then pass "down on a pair dir stops both orgs"
else fail "down on a pair dir" "alive:$alive"; fi

if [ "$(etc_sum)" = "$etc_before" ]; then pass "/etc/postfix untouched"
else fail "/etc/postfix untouched"; fi

suite_ok
