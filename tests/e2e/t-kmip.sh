#!/bin/sh
# t-kmip.sh - kmilter's KMIP client (keyclient/kmip.c via kmip-probe) against
# two real PyKMIP servers and a hostile server, all on 127.0.0.1.
# Env: KM_TOP (repo root), KM_BUILD (build dir with tools/kmip-probe),
#      KM_PORT_BASE (default 27000 + pid % 1000 * 10).
. "$(dirname "$0")/../lib/suite.sh"
probe=$build/tools/kmip-probe
hostile=$top/tests/tools/kmip-hostile.py
. "$top/tests/lablib/km.sh"
. "$top/tests/lablib/common.sh"		# lab_wait_until: waits for events

suite_need_built "$probe"
suite_need_cmd /usr/bin/pykmip-server

lab=$(mktemp -d /tmp/t-kmip.XXXXXX)
base=${KM_PORT_BASE:-$((27000 + $$ % 1000 * 10))}
p1=$base p2=$((base + 1)) ph=$((base + 2))
hpid=""
cleanup() {
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null
	km_stop "$lab" km1
	km_stop "$lab" km2
	rm -rf "$lab"
}
trap cleanup EXIT INT TERM

km_pki "$lab" || { echo "FAIL pki"; exit 1; }
km_start "$lab" km1 "$p1" || { echo "FAIL start km1"; exit 1; }
km_start "$lab" km2 "$p2" || { echo "FAIL start km2"; exit 1; }
pki=$lab/pki
P1="$probe -n km1 -p $p1 -C $pki/ca.crt -c $pki/kmilter.crt -k $pki/kmilter.key"
P2="$probe -n km2 -p $p2 -C $pki/ca.crt -c $pki/kmilter.crt -k $pki/kmilter.key"
PI="$probe -n km1 -p $p1 -C $pki/ca.crt -c $pki/intruder.crt -k $pki/intruder.key"
out=$lab/out err=$lab/err

# run CMD...: stdout in $out, stderr in $err, status in $rc
run() { "$@" >"$out" 2>"$err"; rc=$?; }
# uid_of: the uid= line of $out
uid_of() { sed -n 's/^uid=//p' "$out" | head -1; }
has() { grep -q -- "$1" "$out"; }
err_has() { grep -q -- "$1" "$err"; }

# --- test objects
openssl x509 -in "$pki/kmilter.crt" -outform DER -out "$lab/cert.der"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -outform DER -out "$lab/key.der"
head -c 48 /dev/urandom > "$lab/share.bin"

run $P1 versions
if [ $rc = 0 ] && has '^version=1.2$'; then pass versions; else fail versions "$(cat "$err")"; fi

run $P1 register cert "kmilter:cert:alice@example.com" "$lab/cert.der" kmilter
cert_uid=$(uid_of)
run $P1 get "$cert_uid" "$lab/cert.out"
if [ $rc = 0 ] && has '^type=Certificate' && cmp -s "$lab/cert.der" "$lab/cert.out"; then
	pass register_get_certificate
else fail register_get_certificate "$(cat "$err")"; fi

run $P1 register key "kmilter:enc-key:alice@example.com" "$lab/key.der" kmilter 40
key_uid=$(uid_of)
run $P1 get "$key_uid" "$lab/key.out"
if [ $rc = 0 ] && has '^type=PrivateKey' && cmp -s "$lab/key.der" "$lab/key.out"; then
	pass register_get_private_key
else fail register_get_private_key "$(cat "$err")"; fi

run $P1 register secret "kmilter:share:alice@example.com" "$lab/share.bin" kmilter 8
s_uid=$(uid_of)
run $P1 get "$s_uid" "$lab/share.out"
if [ $rc = 0 ] && has '^type=SecretData len=48' && cmp -s "$lab/share.bin" "$lab/share.out"; then
	pass register_get_secret_data
else fail register_get_secret_data "$(cat "$err")"; fi

run $P1 attrs "$s_uid"
if [ $rc = 0 ] && has '^state=PreActive$' && has '^type=SecretData$' &&
    has '^name=kmilter:share:alice@example.com$' && has '^group=kmilter$' &&
    has '^usage_mask=8$' && ! has '^initial_date=0$'; then
	pass get_attributes
else fail get_attributes "$(cat "$out" "$err")"; fi

run $P1 locate name=kmilter:share:alice@example.com
if [ $rc = 0 ] && has '^count=1$' && has "^uid=$s_uid\$"; then pass locate_by_name
else fail locate_by_name "$(cat "$out" "$err")"; fi

run $P1 locate name=kmilter:share:alice@example.com type=cert
if [ $rc = 0 ] && has '^count=0$'; then pass locate_name_and_wrong_type
else fail locate_name_and_wrong_type "$(cat "$out")"; fi

run $P1 locate group=kmilter type=key
if [ $rc = 0 ] && has '^count=1$' && has "^uid=$key_uid\$"; then pass locate_by_group_and_type
else fail locate_by_group_and_type "$(cat "$out" "$err")"; fi

run $P1 locate name=nobody@example.com
if [ $rc = 0 ] && has '^count=0$'; then pass locate_unknown_name_is_empty
else fail locate_unknown_name_is_empty "$(cat "$out")"; fi

run $P1 locate name=kmilter:share:alice@example.com state=active
a0=$(grep -c '^uid=' "$out")
run $P1 activate "$s_uid"
r1=$rc
run $P1 locate name=kmilter:share:alice@example.com state=active
if [ "$a0" = 0 ] && [ $r1 = 0 ] && has "^uid=$s_uid\$"; then pass activate_and_locate_active
else fail activate_and_locate_active "a0=$a0 r1=$r1"; fi

run $P1 activate "$s_uid"
if [ $rc = 2 ] && err_has 'server km1: Activate: PERMISSION_DENIED'; then pass second_activate_permfail
else fail second_activate_permfail "rc=$rc $(cat "$err")"; fi

run $P1 destroy "$s_uid"
if [ $rc = 2 ] && err_has 'Destroy: PERMISSION_DENIED: Object is active'; then pass destroy_active_refused
else fail destroy_active_refused "rc=$rc $(cat "$err")"; fi

run $PI locate name=kmilter:share:alice@example.com
c1=$(grep -c '^uid=' "$out")
run $PI get "$s_uid"
if [ "$c1" = 0 ] && [ $rc = 2 ] && err_has 'PERMISSION_DENIED'; then pass intruder_cannot_see
else fail intruder_cannot_see "c1=$c1 rc=$rc $(cat "$err")"; fi

run $P1 revoke "$s_uid" compromise
r1=$rc
run $P1 get "$s_uid" "$lab/share.out2"
r2=$rc
run $P1 attrs "$s_uid"
if [ $r1 = 0 ] && [ $r2 = 0 ] && cmp -s "$lab/share.bin" "$lab/share.out2" &&
    has '^state=Compromised$'; then
	pass compromised_get_returns_bytes_state_says_compromised
else fail compromised_get_returns_bytes_state_says_compromised "r1=$r1 r2=$r2"; fi

run $P1 locate name=kmilter:share:alice@example.com state=active
if [ $rc = 0 ] && has '^count=0$'; then pass compromised_not_located_as_active
else fail compromised_not_located_as_active "$(cat "$out")"; fi

run $P1 destroy "$s_uid"
r1=$rc
run $P1 get "$s_uid"
if [ $r1 = 0 ] && [ $rc = 2 ] && err_has "server km1: Get: ITEM_NOT_FOUND"; then
	pass destroy_then_get_item_not_found
else fail destroy_then_get_item_not_found "r1=$r1 rc=$rc $(cat "$err")"; fi

run $P1 activate "$cert_uid"
run $P1 revoke "$cert_uid" cessation
r1=$rc
run $P1 attrs "$cert_uid"
if [ $r1 = 0 ] && has '^state=Deactivated$'; then pass revoke_cessation_deactivates
else fail revoke_cessation_deactivates "r1=$r1 $(cat "$out" "$err")"; fi

run $P1 revoke "$key_uid" cessation
if [ $rc = 2 ] && err_has 'Revoke: ILLEGAL_OPERATION'; then pass revoke_cessation_preactive_refused
else fail revoke_cessation_preactive_refused "rc=$rc $(cat "$err")"; fi

# the second server has its own database: same object names, other uids
run $P2 register secret "kmilter:share:alice@example.com" "$lab/cert.der"
k2=$(uid_of)
run $P2 get "$k2" "$lab/km2.out"
r1=$rc
run $P2 locate name=kmilter:share:alice@example.com
if [ $r1 = 0 ] && cmp -s "$lab/cert.der" "$lab/km2.out" && has '^count=1$'; then
	pass second_server_independent
else fail second_server_independent "$(cat "$err")"; fi

run $P1 -H localhost versions
if [ $rc = 0 ]; then pass host_name_localhost_verifies; else fail host_name_localhost_verifies "$(cat "$err")"; fi

run $probe -p "$p1" -C "$pki/other-ca.crt" -c "$pki/kmilter.crt" -k "$pki/kmilter.key" versions
if [ $rc = 2 ] && err_has 'certificate verification failed'; then pass wrong_ca_refused
else fail wrong_ca_refused "rc=$rc $(cat "$err")"; fi

cp "$pki/kmilter.key" "$lab/loose.key"; chmod 644 "$lab/loose.key"
run $probe -p "$p1" -C "$pki/ca.crt" -c "$pki/kmilter.crt" -k "$lab/loose.key" versions
if [ $rc = 2 ] && err_has 'group or world accessible (mode 0644)'; then pass loose_key_file_refused
else fail loose_key_file_refused "rc=$rc $(cat "$err")"; fi

run $probe -p "$p1" -C "$pki/ca.crt" -c "$pki/kmilter.crt" -k "$pki/intruder.key" versions
if [ $rc = 2 ] && err_has 'mismatch'; then pass mismatched_key_refused
else fail mismatched_key_refused "rc=$rc $(cat "$err")"; fi

run $probe -p "$ph" -C "$pki/ca.crt" -c "$pki/kmilter.crt" -k "$pki/kmilter.key" -t 1000 versions
if [ $rc = 1 ] && err_has 'Connection refused'; then pass connection_refused_tempfail
else fail connection_refused_tempfail "rc=$rc $(cat "$err")"; fi

run $P2 get ""
if [ $rc = 2 ] && err_has 'bad unique identifier'; then pass empty_uid_refused
else fail empty_uid_refused "rc=$rc"; fi

run $P2 pool-get "$k2" 8 25 3
if [ $rc = 0 ] && has '^ok=200 fail=0'; then pass pool_8_threads_200_gets
else fail pool_8_threads_200_gets "$(cat "$out" "$err" | head -5)"; fi

# --- hostile server: a server cert for the wrong name first
( umask 077; openssl genrsa -out "$pki/wrong.key" 2048 2>/dev/null )
printf 'subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth\n' > "$lab/wrong.ext"
openssl req -new -key "$pki/wrong.key" -subj "/CN=wrong.example" 2>/dev/null |
    openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 30 \
    -extfile "$lab/wrong.ext" -out "$pki/wrong.crt" 2>/dev/null

# hostile MODE CERT: start the hostile server on $ph
hostile() {
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null && wait "$hpid" 2>/dev/null
	# the last server's READY must not count for this one
	rm -f "$lab/hostile.out"
	/usr/bin/python3 "$hostile" "$1" "$ph" "$pki/$2.crt" "$pki/$2.key" "$pki/ca.crt" \
	    >"$lab/hostile.out" 2>"$lab/hostile.err" &
	hpid=$!
	# its READY line (30 s: the machine may be loaded); a server that never
	# gets ready is a failure of its own, not a wrong answer
	lab_wait_until 30 "the hostile KMIP server ($1) printing READY" \
	    grep -qs READY "$lab/hostile.out" ||
	    fail "hostile_server_$1_ready" "$(cat "$lab/hostile.err")"
}
PH="$probe -n evil -p $ph -C $pki/ca.crt -c $pki/kmilter.crt -k $pki/kmilter.key"

hostile ok wrong
run $PH get 2
if [ $rc = 2 ] && err_has 'certificate verification failed for 127.0.0.1: IP address mismatch'; then
	pass wrong_ip_refused
else fail wrong_ip_refused "rc=$rc $(cat "$err")"; fi
run $PH -H localhost get 2
if [ $rc = 2 ] && err_has 'for localhost: hostname mismatch'; then pass wrong_host_name_refused
else fail wrong_host_name_refused "rc=$rc $(cat "$err")"; fi

hostile ok server
run $PH get 2
if [ $rc = 0 ] && has '^type=SecretData len=32'; then pass hostile_ok_control
else fail hostile_ok_control "rc=$rc $(cat "$err")"; fi

hostile silent server
t0=$(date +%s%N)
run $PH -T 700 get 2
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $rc = 1 ] && err_has 'read timed out after 700 ms' && [ $ms -lt 3000 ]; then
	pass silent_server_times_out
else fail silent_server_times_out "rc=$rc ${ms}ms $(cat "$err")"; fi

hostile closemid server
run $PH get 2
if [ $rc = 1 ] && err_has 'Get: read: connection closed by server'; then pass close_mid_response_tempfail
else fail close_mid_response_tempfail "rc=$rc $(cat "$err")"; fi

hostile garbage server
run $PH get 2
if [ $rc = 4 ] && err_has 'not a KMIP response message'; then pass garbage_is_proto
else fail garbage_is_proto "rc=$rc $(cat "$err")"; fi

hostile lying server
run $PH get 2
if [ $rc = 4 ] && err_has 'bad response: ttlv: item 0x420043 length 40 exceeds'; then pass lying_length_is_proto
else fail lying_length_is_proto "rc=$rc $(cat "$err")"; fi

hostile huge server
run $PH get 2
if [ $rc = 4 ] && err_has 'exceeds the limit of 1048576'; then pass huge_length_refused
else fail huge_length_refused "rc=$rc $(cat "$err")"; fi

hostile flaky server
run $PH repeat-get 2 1 0
if [ $rc = 0 ] && has '^connects=2$'; then pass eof_reconnects_once
else fail eof_reconnects_once "rc=$rc $(cat "$out" "$err")"; fi

hostile idleclose server
run $PH repeat-get 2 3 500
if [ $rc = 0 ] && has '^connects=3$'; then pass idle_closed_connection_reopened
else fail idle_closed_connection_reopened "rc=$rc $(cat "$out" "$err")"; fi

suite_ok
