#!/bin/bash
# t-ban.sh - kmctl revoke --ban / unban and kmctl retire-gateway (issue 17
# item 5) against two real PyKMIP servers on 127.0.0.1: the ban is an
# Active kmilter:ban:ADDR object on BOTH servers and holds while either
# server has it; it bars kmctl enroll (also --force), import and
# signing-enroll until unban; retire-gateway revokes in the KM every
# signing certificate the gateway recorded and refuses the name from then
# on.  (The milter's side: t-ban.py.)
# Env: KM_TOP, KM_BUILD, KM_PORT_BASE (default 32000 + pid % 1000 * 10).
# Prints PASS/FAIL lines and FIGURE lines (timings).
. "$(dirname "$0")/../lib/suite.sh"
kmctl=$build/kmctl
probe=$build/tools/keymodel-probe
ksprobe=$build/tools/keystore-probe
kprobe=$build/tools/kmip-probe
. "$top/tests/lablib/km.sh"

suite_need_built "$kmctl" "$probe" "$kprobe" "$ksprobe"
suite_need_cmd /usr/bin/pykmip-server openssl

. "$top/tests/lablib/kmpair.sh"
kmpair_up t-ban 32000
why() { echo "rc=$rc $(head -c 400 "$err")"; }
err_has() { grep -q -- "$1" "$err"; }
# kp PORT ARGS... - kmip-probe against the server on PORT, as kmilter
kp() { _p=$1; shift; "$kprobe" -p "$_p" -C "$pki/ca.crt" -c "$pki/kmilter.crt" \
    -k "$pki/kmilter.key" "$@"; }
# count PORT NAME STATE - how many objects of NAME in STATE on PORT
count() { kp "$1" locate "name=$2" "state=$3" 2>/dev/null | grep -c '^uid='; }
gw=$(hostname)		# milter.gateway_name "" = the host name

# --- revoke --ban of a user never enrolled: the ban alone, on both servers
t0=$(date +%s%3N)
run $K revoke eve@example.com --ban
t1=$(date +%s%3N)
echo "FIGURE kmctl revoke --ban of an address never enrolled: $((t1 - t0)) ms (whole kmctl run)"
if [ $rc = 0 ] && has 'banned from enrollment' &&
    [ "$(count $p1 kmilter:ban:eve@example.com active)" = 1 ] &&
    [ "$(count $p2 kmilter:ban:eve@example.com active)" = 1 ]
then pass ban_on_both_servers
else fail ban_on_both_servers "$(why) $(cat "$out")"; fi

run $K revoke eve@example.com --ban
if [ $rc = 0 ] && has 'already banned' &&
    [ "$(count $p1 kmilter:ban:eve@example.com active)" = 1 ]
then pass ban_twice_one_mark
else fail ban_twice_one_mark "$(why)"; fi

run $K enroll eve@example.com
if [ $rc = 1 ] && err_has 'eve@example.com is banned'; then pass ban_refuses_enroll
else fail ban_refuses_enroll "$(why)"; fi

run $K enroll Eve@EXAMPLE.com --force
if [ $rc = 1 ] && err_has 'is banned'; then pass ban_refuses_enroll_force_and_case
else fail ban_refuses_enroll_force_and_case "$(why)"; fi

run $K signing-enroll eve@example.com --yes
r1=$rc
cp "$err" "$lab/err.eve"
run $P signload eve@example.com		# no key made on disk either
if [ $r1 = 1 ] && grep -q 'is banned' "$lab/err.eve" && [ $rc = 3 ]
then pass ban_refuses_signing_enroll
else fail ban_refuses_signing_enroll "rc=$r1 $(head -c 300 "$lab/err.eve") signload rc=$rc"; fi

# import of a PKCS#12 for eve: refused too
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$lab/eve.key" -out "$lab/eve.crt" \
    -days 30 -subj "/CN=eve@example.com" -addext "subjectAltName=email:eve@example.com" \
    -addext "keyUsage=keyEncipherment,digitalSignature" \
    -addext "extendedKeyUsage=emailProtection" 2>/dev/null
openssl pkcs12 -export -in "$lab/eve.crt" -inkey "$lab/eve.key" -passout pass:pw12345678 \
    -out "$lab/eve.p12" 2>/dev/null
printf 'pw12345678\n' > "$lab/eve.pw"
run $K import eve@example.com "$lab/eve.p12" --password-file "$lab/eve.pw"
if [ $rc = 1 ] && err_has 'is banned'; then pass ban_refuses_import
else fail ban_refuses_import "$(why)"; fi

# a ban that reached one server only holds (fail safe): take A's away
uid=$(kp $p1 locate name=kmilter:ban:eve@example.com state=active | sed -n 's/^uid=//p')
kp $p1 revoke "$uid" cessation >/dev/null 2>&1 && kp $p1 destroy "$uid" >/dev/null 2>&1
run $K enroll eve@example.com
if [ "$(count $p1 kmilter:ban:eve@example.com active)" = 0 ] && [ $rc = 1 ] &&
    err_has 'is banned'
then pass ban_on_one_server_holds
else fail ban_on_one_server_holds "$(why)"; fi
run $K revoke eve@example.com --ban		# completes it
if [ $rc = 0 ] && [ "$(count $p1 kmilter:ban:eve@example.com active)" = 1 ]
then pass ban_again_completes
else fail ban_again_completes "$(why)"; fi

run $K unban eve@example.com
if [ $rc = 0 ] && has 'ban lifted' &&
    [ "$(kp $p1 locate name=kmilter:ban:eve@example.com | grep -c '^uid=')" = 0 ] &&
    [ "$(kp $p2 locate name=kmilter:ban:eve@example.com | grep -c '^uid=')" = 0 ]
then pass unban_removes_both
else fail unban_removes_both "$(why)"; fi

run $K enroll eve@example.com
if [ $rc = 0 ] && has 'generation 1 is Active'; then pass unban_enroll_works
else fail unban_enroll_works "$(why)"; fi

run $K unban eve@example.com
if [ $rc = 0 ] && has 'was not banned'; then pass unban_not_banned
else fail unban_not_banned "$(why)"; fi

# --- revoke --ban of an enrolled user: every generation revoked, then banned
run $K revoke eve@example.com --ban
if [ $rc = 0 ] && has 'banned from enrollment' && has '1 generation revoked'; then
	run $K show eve@example.com
	if grep -q 'generation 1 state Compromised' "$out"; then pass revoke_ban_revokes
	else fail revoke_ban_revokes "show: $(head -c 300 "$out")"; fi
else fail revoke_ban_revokes "$(why)"; fi
run $K renew eve@example.com
if [ $rc != 0 ]; then pass revoke_ban_no_renew
else fail revoke_ban_no_renew "renewed a banned user"; fi

run $K revoke eve@example.com 1 --ban
if [ $rc = 2 ]; then pass ban_with_generation_is_usage
else fail ban_with_generation_is_usage "$(why)"; fi
run $K enroll eve@example.com --ban
if [ $rc = 2 ]; then pass ban_only_for_revoke
else fail ban_only_for_revoke "$(why)"; fi

# --- retire-gateway
run $K keygen
run $K enroll sig1@example.com
run $K signing-enroll sig1@example.com --yes
r1=$rc
run $K signing-enroll sig2@example.com --yes
if [ $r1 = 0 ] && [ $rc = 0 ] && has "recorded for gateway $gw" &&
    [ "$(count $p1 "kmilter:gwcert:$gw" active)" = 2 ] &&
    [ "$(count $p2 "kmilter:gwcert:$gw" active)" = 2 ]
then pass signing_certs_recorded_both_servers
else fail signing_certs_recorded_both_servers "$(why)"; fi

# a signing certificate kmctl maintain renews is recorded too
run $K signing-enroll sig1@example.com --yes --days 1
r1=$rc
run $K maintain --days 30
if [ $r1 = 0 ] && [ $rc = 0 ] && has 'signing renewed sig1@example.com' &&
    [ "$(count $p1 "kmilter:gwcert:$gw" active)" = 4 ] &&
    [ "$(count $p2 "kmilter:gwcert:$gw" active)" = 4 ]
then pass maintain_renewal_recorded
else fail maintain_renewal_recorded "$(why) $(head -c 300 "$out")"; fi

# FIGURE: what the signer lookup asks the KM on a cache miss (4 Locates)
run $P maysign sig1@example.com 20
if [ $rc = 0 ] && has 'may_sign: n=20'; then
	echo "FIGURE signer lookup's KM checks (retired + banned, both servers): $(sed 's/^may_sign: //' "$out")"
else fail maysign_figure "$(why)"; fi
t0=$(date +%s%3N)
run $K retire-gateway "$gw"
t1=$(date +%s%3N)
echo "FIGURE kmctl retire-gateway, 4 certificates: $((t1 - t0)) ms (whole kmctl run)"
if [ $rc = 0 ] && has '4 signing certificates revoked' &&
    has 'revoked: signing certificate of sig1@example.com' &&
    [ "$(count $p1 "kmilter:gwcert:$gw" active)" = 0 ] &&
    [ "$(count $p1 "kmilter:gwcert:$gw" compromised)" = 4 ] &&
    [ "$(count $p2 "kmilter:gwcert:$gw" compromised)" = 4 ] &&
    [ "$(count $p1 "kmilter:retired:$gw" active)" = 1 ] &&
    [ "$(count $p2 "kmilter:retired:$gw" active)" = 1 ]
then pass retire_revokes_in_km
else fail retire_revokes_in_km "$(why) $(cat "$out")"; fi

run $K retire-gateway "$gw"
if [ $rc = 0 ] && has '0 signing certificates revoked'; then pass retire_twice
else fail retire_twice "$(why)"; fi

run $K signing-enroll sig3@example.com --yes
r1=$rc
cp "$err" "$lab/err.sig3"
run $P signload sig3@example.com	# no key made on disk either
if [ $r1 = 1 ] && grep -q "gateway $gw is retired" "$lab/err.sig3" && [ $rc = 3 ] &&
    [ "$(count $p1 "kmilter:gwcert:$gw" active)" = 0 ]
then pass retired_refuses_signing_enroll
else fail retired_refuses_signing_enroll "$(why)"; fi

# the milter's signing-key lookup on this gateway refuses its own keys
run $P signload sig1@example.com	# the file is still there
r1=$rc
run $ksprobe -c "$conf" signer sig1@example.com
if [ $r1 = 0 ] && ! grep -q '^signer OK' "$out" && grep -q 'retired' "$out" "$err"
then pass retired_keys_not_used
else fail retired_keys_not_used "signload rc=$r1; $(why) $(head -c 200 "$out")"; fi

run $K retire-gateway 'bad name'
if [ $rc = 2 ]; then pass retire_bad_name
else fail retire_bad_name "$(why)"; fi

suite_ok
