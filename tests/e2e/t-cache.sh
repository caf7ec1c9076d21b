#!/bin/sh
# t-cache.sh - the Redis (L2) key cache against a real redis-server, through
# tests/tools/cache-probe: miss/hit over unix socket and TCP with AUTH,
# sealing (no addresses in Redis, tamper, copied entries, wrong key), TTL,
# negative entries, invalidation over PUBLISH, a Redis killed and restarted
# mid-run, and a fake Redis that never answers.
. "$(dirname "$0")/../lib/suite.sh"
probe=$build/tools/cache-probe
. "$top/tests/lablib/common.sh"		# lab_wait_until: waits for events
check() { if [ "$2" = 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }

suite_need_built "$probe"
suite_need_cmd redis-server

D=$(mktemp -d /tmp/t-cache.XXXXXX)
chmod 700 "$D"
redis_pid=""
fake_pid=""
cleanup() {
	[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
	[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
	[ -n "${sub_pid:-}" ] && kill "$sub_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port - a TCP port on 127.0.0.1 that nothing listens on
free_port() {
	p=$(( 20000 + ($$ + $1 * 7919) % 30000 ))
	while ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; do p=$((p + 1)); done
	echo "$p"
}
port=$(free_port 1)
pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
sock=$D/redis.sock
cat > "$D/redis.conf" <<EOF
bind 127.0.0.1
protected-mode yes
port $port
unixsocket $sock
unixsocketperm 700
pidfile $D/redis.pid
dir $D
logfile $D/redis.log
daemonize no
save ""
appendonly no
databases 4
requirepass $pw
EOF

# redis_up - start redis-server and wait until it answers
redis_up() {
	rm -f "$sock"
	redis-server "$D/redis.conf" </dev/null >/dev/null 2>&1 &
	redis_pid=$!
	if ! lab_wait_until 10 "redis-server (pid $redis_pid) answering PING" redis_pong; then
		echo "FAIL setup: redis did not start"; tail "$D/redis.log"; exit 1
	fi
}
redis_pong() { [ "$(rcli ping 2>/dev/null)" = PONG ]; }
# subscribed - true when one client listens on the invalidation channel
subscribed() { [ "$(rcli pubsub numsub kmilter:invalidate 2>/dev/null | tail -1)" = 1 ]; }
# wait_subscribed NAME - wait for the probe's subscription, else FAIL NAME
wait_subscribed() {
	lab_wait_until 10 "the subscriber listening on kmilter:invalidate" subscribed 2>"$D/wait.err" ||
		fail "$1" "$(cat "$D/wait.err"; cat "$D/sub.err")"
}
# progress FIELD - the latest count FIELD of the loop's progress file
progress() { tail -1 "$D/loop.progress" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# progress_at_least FIELD N - true when the loop counted N of FIELD
progress_at_least() { [ "$(progress "$1")" -ge "$2" ] 2>/dev/null; }
# redis_down - kill redis-server by pid (SIGKILL: a crash) and wait
redis_down() {
	kill -9 "$redis_pid" 2>/dev/null
	wait "$redis_pid" 2>/dev/null
	redis_pid=""
}
rcli() { REDISCLI_AUTH=$pw redis-cli -s "$sock" "$@"; }
# P - the probe over the unix socket; PT - over TCP
P()  { KM_REDIS_PASSWORD=$pw "$probe" -s "$sock" -k "$D/seal.key" -b 300 -B 1000 "$@"; }
PT() { KM_REDIS_PASSWORD=$pw "$probe" -H 127.0.0.1 -p "$port" -k "$D/seal.key" -b 300 -B 1000 "$@"; }
# now_ms - wall clock in ms
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

redis_up

# --- seal key file -----------------------------------------------------
"$probe" keygen "$D/seal.key"
check keygen_mode_0600 "$([ "$(stat -c %a "$D/seal.key")" = 600 ] && [ "$(stat -c %s "$D/seal.key")" = 32 ]; echo $?)"
"$probe" keygen "$D/seal.key" 2>"$D/err"; rc=$?
check keygen_no_overwrite "$([ $rc = 2 ] && grep -q exists "$D/err"; echo $?)"
cp -p "$D/seal.key" "$D/loose.key"; chmod 644 "$D/loose.key"
"$probe" -k "$D/loose.key" hash a@b >/dev/null 2>"$D/err"; rc=$?
check key_file_mode_refused "$([ $rc = 2 ] && grep -q "group or world" "$D/err"; echo $?)"

# --- miss then hit, unix socket and TCP ---------------------------------
out=$(P get cert alice@example.org | head -1)
check miss_unix "$([ "$out" = permfail ]; echo $?)" "$out"
out=$(P put cert alice@example.org alice-cert-PEM 60)
check put_unix "$([ "$out" = ok ]; echo $?)" "$out"
out=$(P get cert Alice@Example.org | head -1)
check hit_unix_case_insensitive "$([ "$out" = "ok alice-cert-PEM" ]; echo $?)" "$out"
out=$(PT get cert alice@example.org | head -1)
check hit_tcp "$([ "$out" = "ok alice-cert-PEM" ]; echo $?)" "$out"
out=$(PT put enckey bob@example.org bob-wrapped-key 60)
out2=$(P get enckey bob@example.org | head -1)
check put_tcp_get_unix "$([ "$out" = ok ] && [ "$out2" = "ok bob-wrapped-key" ]; echo $?)" "$out $out2"
out=$(P get signkey alice@example.org | head -1)
check kinds_are_separate "$([ "$out" = permfail ]; echo $?)" "$out"

# --- what Redis sees ----------------------------------------------------
name=$(P name cert alice@example.org)
keys=$(rcli --scan --pattern '*')
bad=0
for k in $keys; do echo "$k" | grep -Eq '^km:[0-9a-f]{64}$' || bad=1; done
echo "$keys" | grep -qi -e alice -e bob -e example && bad=1
rcli --raw get "$name" | grep -q alice-cert && bad=1
check redis_sees_no_address_or_value "$bad" "$keys"
ttl=$(rcli ttl "$name")
check entry_has_ttl "$([ "$ttl" -gt 0 ] && [ "$ttl" -le 60 ]; echo $?)" "ttl=$ttl"

# --- TTL expiry ---------------------------------------------------------
# Time passing is the thing tested: poll until the entry (TTL 2 s) is gone
# and measure when, from before the put.  Redis drops it 2000 ms after the
# SET; the sealed expiry inside is whole seconds (time() + 2, expired once
# time() reaches it), so the probe calls it gone after 1000-2000 ms
# (measured 1924).  Bounds: over 1000 ms (a TTL cut to 1 s or taken as
# 0 fails) and under 2700 ms, 2000 plus 700 for the 50 ms polls on a
# loaded machine (a TTL ignored or doubled fails).
t0=$(now_ms)
P put cert short@example.org soon-gone 2 >/dev/null
out=$(P get cert short@example.org | head -1)
gone() { [ "$(P get cert short@example.org | head -1)" = permfail ]; }
lab_wait_until 5 "the 2 s entry expiring" gone 2>"$D/wait.err"; rc=$?
gone_ms=$(( $(now_ms) - t0 ))
echo "FIGURE t-cache entry with TTL 2 s gone after ${gone_ms} ms"
check ttl_expiry "$([ "$out" = "ok soon-gone" ] && [ $rc = 0 ] && [ "$gone_ms" -gt 1000 ] && [ "$gone_ms" -lt 2700 ]; echo $?)" "$out / gone after ${gone_ms} ms (want 1000..2700) $(cat "$D/wait.err")"

# --- negative entries ---------------------------------------------------
out=$(P putneg cert nobody@example.org 30)
out2=$(P get cert nobody@example.org | head -1)
out3=$(P get enckey nobody@example.org | head -1)
check negative_entry "$([ "$out" = ok ] && [ "$out2" = "ok negative" ] && [ "$out3" = permfail ]; echo $?)" "$out2 / $out3"
P put cert nobody@example.org enrolled-now 30 >/dev/null
out=$(P get cert nobody@example.org | head -1)
check positive_replaces_negative "$([ "$out" = "ok enrolled-now" ]; echo $?)" "$out"

# --- a flipped bit in a stored entry -------------------------------------
P put cert tamper@example.org tamper-value 60 >/dev/null
tname=$(P name cert tamper@example.org)
bit=$(( 8 * 20 + 3 ))
old=$(rcli getbit "$tname" $bit)
rcli setbit "$tname" $bit $((1 - old)) >/dev/null
out=$(P get cert tamper@example.org 2>"$D/err" | head -1)
ex=$(rcli exists "$tname")
check tampered_entry_deleted_as_miss "$([ "$out" = permfail ] && [ "$ex" = 0 ] && grep -q "bad entry $tname.*authentication failed" "$D/err"; echo $?)" "$out exists=$ex $(cat "$D/err")"
check bad_entry_log_has_no_address "$(grep -qi tamper@ "$D/err"; [ $? = 1 ]; echo $?)"

# --- truncated and garbage entries ---------------------------------------
printf '\001short' | rcli -x set "$tname" >/dev/null
out=$(P get cert tamper@example.org 2>"$D/err" | head -1)
check truncated_entry_refused "$([ "$out" = permfail ] && grep -q truncated "$D/err" && [ "$(rcli exists "$tname")" = 0 ]; echo $?)" "$out $(cat "$D/err")"
rcli set "$tname" "not a sealed value at all, just text" >/dev/null
out=$(P get cert tamper@example.org 2>"$D/err" | head -1)
check garbage_entry_refused "$([ "$out" = permfail ] && grep -q "version" "$D/err"; echo $?)" "$out $(cat "$D/err")"
rcli del "$tname" >/dev/null; rcli lpush "$tname" x >/dev/null
out=$(P get cert tamper@example.org 2>"$D/err" | head -1)
check wrong_type_entry_deleted "$([ "$out" = permfail ] && [ "$(rcli exists "$tname")" = 0 ] && grep -q "GET refused" "$D/err"; echo $?)" "$out $(cat "$D/err")"
rcli del "$tname" >/dev/null

# --- an entry copied under another name -----------------------------------
P put cert mallory@example.org mallory-cert 60 >/dev/null
P put cert victim@example.org victim-cert 60 >/dev/null
mname=$(P name cert mallory@example.org)
vname=$(P name cert victim@example.org)
rcli copy "$mname" "$vname" replace >/dev/null
out=$(P get cert victim@example.org 2>"$D/err" | head -1)
out2=$(P get cert mallory@example.org | head -1)
check copied_entry_refused "$([ "$out" = permfail ] && [ "$out2" = "ok mallory-cert" ] && grep -q "authentication failed" "$D/err"; echo $?)" "$out / $out2"
# the same with RENAME of a kind onto another kind of the same address
P put signcert victim@example.org victim-sign 60 >/dev/null
rcli rename "$(P name signcert victim@example.org)" "$(P name cert victim@example.org)" >/dev/null
out=$(P get cert victim@example.org 2>/dev/null | head -1)
check renamed_kind_refused "$([ "$out" = permfail ]; echo $?)" "$out"

# --- another seal key ---------------------------------------------------
"$probe" keygen "$D/other.key"
PO() { KM_REDIS_PASSWORD=$pw "$probe" -s "$sock" -k "$D/other.key" "$@"; }
out=$(PO get cert alice@example.org | head -1)
check other_key_sees_other_names "$([ "$out" = permfail ]; echo $?)" "$out"
PO put cert alice@example.org forged-by-other-key 60 >/dev/null
rcli rename "$(PO name cert alice@example.org)" "$(P name cert alice@example.org)" >/dev/null
out=$(P get cert alice@example.org 2>"$D/err" | head -1)
check other_key_entry_refused "$([ "$out" = permfail ] && grep -q "authentication failed" "$D/err"; echo $?)" "$out"

# --- AUTH and SELECT ----------------------------------------------------
out=$("$probe" -s "$sock" -k "$D/seal.key" loop 20 0 cert alice@example.org 2>"$D/err")
check no_password_tempfail "$(echo "$out" | grep -q "tempfail=20 " && grep -q NOAUTH "$D/err" && [ "$(grep -c unavailable "$D/err")" = 1 ]; echo $?)" "$out $(cat "$D/err")"
out=$(KM_REDIS_PASSWORD=wrong-Secret-123 "$probe" -H 127.0.0.1 -p "$port" -k "$D/seal.key" get cert alice@example.org 2>"$D/err" | head -1)
check wrong_password_tempfail "$([ "$out" = tempfail ] && grep -q "AUTH refused" "$D/err" && ! grep -q wrong-Secret "$D/err"; echo $?)" "$out $(cat "$D/err")"
P -d 2 put cert db@example.org in-db-2 60 >/dev/null
out=$(P -d 2 get cert db@example.org | head -1)
out2=$(P get cert db@example.org | head -1)
check select_database "$([ "$out" = "ok in-db-2" ] && [ "$out2" = permfail ] && [ "$(rcli -n 2 dbsize)" = 1 ]; echo $?)" "$out / $out2"

# --- four threads share one handle (the connection pool) --------------------
out=$(P threads 4 500 2>&1)
check threads_share_pool "$([ "$out" = "rounds=2000 errors=0" ]; echo $?)" "$out"
clients=$(rcli client list | grep -c .)
check pool_connections_closed "$([ "$clients" = 1 ]; echo $?)" "clients=$clients"

# --- malformed arguments ------------------------------------------------
out=$(P get Cert alice@example.org | head -1)
out2=$(P get cert "" | head -1)
out3=$(P put cert a@b x 0 | head -1)
check malformed_arguments "$([ "$out" = malformed ] && [ "$out2" = malformed ] && [ "$out3" = malformed ]; echo $?)" "$out / $out2 / $out3"

# --- invalidation: DEL every kind + PUBLISH the hash ------------------------
P put cert carol@example.org c1 60 >/dev/null
P put enckey carol@example.org c2 60 >/dev/null
P put cert dave@example.org d1 60 >/dev/null
P subscribe 1 5 > "$D/sub.out" 2>"$D/sub.err" &
sub_pid=$!
wait_subscribed publish_subscriber_listening
t0=$(now_ms)
out=$(P invalidate Carol@example.org)
wait "$sub_pid"; src=$?
sub_pid=""
t1=$(now_ms)
hash=$(P hash carol@example.org)
g1=$(P get cert carol@example.org | head -1)
g2=$(P get enckey carol@example.org | head -1)
g3=$(P get cert dave@example.org | head -1)
check invalidate_deletes_every_kind "$([ "$out" = ok ] && [ "$g1" = permfail ] && [ "$g2" = permfail ] && [ "$g3" = "ok d1" ]; echo $?)" "$out $g1 $g2 $g3"
check publish_reaches_subscriber "$([ $src = 0 ] && grep -qx "invalidate $hash" "$D/sub.out"; echo $?)" "$(cat "$D/sub.out")"
check publish_within_1s "$([ $((t1 - t0)) -lt 1000 ]; echo $?)" "$((t1 - t0)) ms"
rcli publish kmilter:invalidate "carol@example.org" >/dev/null
check published_hash_not_address "$(grep -q carol "$D/sub.out"; [ $? = 1 ]; echo $?)"

# --- subscriber survives a malformed message and a Redis restart -----------
P subscribe 2 10 > "$D/sub.out" 2>"$D/sub.err" &
sub_pid=$!
wait_subscribed reconnect_subscriber_listening
rcli publish kmilter:invalidate "not-a-hash" >/dev/null
P invalidate erin@example.org >/dev/null
redis_down
# the event: the subscriber saw its connection go (health_fail logs it)
lab_wait_until 10 "the subscriber noticing Redis gone (\"unavailable\" on its stderr)" \
	grep -q unavailable "$D/sub.err" 2>"$D/wait.err" ||
	fail subscriber_sees_outage "$(cat "$D/wait.err" "$D/sub.err")"
redis_up
wait_subscribed subscriber_listening_again
P invalidate frank@example.org >/dev/null
wait "$sub_pid"; src=$?
sub_pid=""
check subscriber_ignores_malformed "$(grep -q "malformed invalidation" "$D/sub.err" && { grep -q not-a-hash "$D/sub.out"; [ $? = 1 ]; }; echo $?)" "$(cat "$D/sub.err")"
check subscriber_reconnects "$([ $src = 0 ] && grep -qx reset "$D/sub.out" && grep -qx "invalidate $(P hash frank@example.org)" "$D/sub.out"; echo $?)" "$(cat "$D/sub.out")"

# --- Redis killed mid-run and restarted ---------------------------------------
# 400 lookups 10 ms apart (~4 s+); Redis dies once 60 have been answered and
# returns once 25 have failed (the progress file counts them).
P -c 100 -t 100 -b 200 -B 800 -P "$D/loop.progress" loop 400 10 cert loop@example.org \
	> "$D/loop.out" 2>"$D/loop.err" &
loop_pid=$!
lab_wait_until 10 "60 lookups answered before the outage" progress_at_least ok 60 2>"$D/wait.err" ||
	fail outage_loop_started "$(cat "$D/wait.err") $(tail -1 "$D/loop.progress" 2>/dev/null)"
redis_down
lab_wait_until 10 "25 lookups failing while Redis is down" progress_at_least tempfail 25 2>"$D/wait.err" ||
	fail outage_seen_by_loop "$(cat "$D/wait.err") $(tail -1 "$D/loop.progress" 2>/dev/null)"
redis_up
wait "$loop_pid"
res=$(cat "$D/loop.out")
get() { echo "$res" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check outage_calls_tempfail "$([ "$(get tempfail)" -gt 20 ] && [ "$(get ok)" -gt 50 ]; echo $?)" "$res $(cat "$D/loop.err")"
check outage_calls_fast "$([ "$(get max_ms)" -lt 250 ]; echo $?)" "$res"
check caching_resumes "$([ "$(get last)" = ok ] && [ "$(get back_ms)" -gt 0 ]; echo $?)" "$res"
check outage_logged_once "$([ "$(grep -c 'unavailable' "$D/loop.err")" = 1 ] && [ "$(grep -c 'is back' "$D/loop.err")" = 1 ]; echo $?)" "$(cat "$D/loop.err")"

# --- Redis down from the start: every call fails fast --------------------------
redis_down
out=$(P -c 200 loop 200 0 cert x@example.org 2>"$D/err")
get() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check down_fails_fast "$([ "$(get tempfail)" = 200 ] && [ "$(get total_ms)" -lt 500 ] && [ "$(grep -c unavailable "$D/err")" = 1 ]; echo $?)" "$out"
redis_up

# --- a fake Redis that accepts and never answers ---------------------------
fport=$(free_port 2)
/usr/bin/python3 - "$fport" > "$D/fake.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)        # read nothing, answer nothing
EOF
fake_pid=$!
lab_wait_until 10 "the fake Redis listening (\"ready\")" grep -q ready "$D/fake.out" 2>"$D/wait.err" ||
	fail fake_redis_started "$(cat "$D/wait.err" "$D/fake.out")"
PF() { "$probe" -H 127.0.0.1 -p "$fport" -k "$D/seal.key" -c 200 -t 300 "$@"; }
t0=$(now_ms)
out=$(PF get cert alice@example.org 2>"$D/err")
t1=$(now_ms)
st=$(echo "$out" | head -1); ms=$(echo "$out" | sed -n 's/^ms=//p')
check silent_redis_tempfail "$([ "$st" = tempfail ] && grep -q "command timeout" "$D/err"; echo $?)" "$out $(cat "$D/err")"
check silent_redis_within_timeout "$([ "$ms" -ge 250 ] && [ "$ms" -lt 600 ] && [ $((t1 - t0)) -lt 1500 ]; echo $?)" "ms=$ms wall=$((t1 - t0))"
out=$(KM_REDIS_PASSWORD=$pw PF loop 50 0 cert alice@example.org 2>/dev/null)
get() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check silent_redis_backoff "$([ "$(get tempfail)" = 50 ] && [ "$(get total_ms)" -lt 700 ]; echo $?)" "$out"
kill "$fake_pid"; wait "$fake_pid" 2>/dev/null; fake_pid=""

# --- the latency figures (informational, and an end-to-end sanity check) ------
out=$(P bench 10000 2>&1)
echo "$out" | sed 's/^/    /'
check bench_runs "$(echo "$out" | grep -q '^errors=0'; echo $?)" "$out"

suite_ok
