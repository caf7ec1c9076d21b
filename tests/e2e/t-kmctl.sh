#!/bin/bash
# t-kmctl.sh - the key model (keyclient/keymodel.c), the signing store
# (signstore.c) and kmctl against two real PyKMIP servers on 127.0.0.1.
# Env: KM_TOP (repo root), KM_BUILD (build dir), KM_PORT_BASE (default
#      29000 + pid % 1000 * 10), KM_BENCH_N (default 50).
# bash, not sh: tests/lablib/km.sh km_stop uses "kill -- -PGID", which dash
# does not support, so under dash a stopped server keeps running.
# Prints PASS/FAIL/SKIP lines and FIGURE lines (timings).
. "$(dirname "$0")/../lib/suite.sh"
kmctl=$build/kmctl
probe=$build/tools/keymodel-probe
. "$top/tests/lablib/km.sh"

suite_need_built "$kmctl" "$probe"
suite_need_cmd /usr/bin/pykmip-server

. "$top/tests/lablib/kmpair.sh"
kmpair_up t-kmctl 29000
# absent PATTERN FILE...: every FILE exists and none holds PATTERN; a glob
# that matched nothing or a grep error (status 2) is not "absent"
absent() {
	_pat=$1; shift
	[ $# -gt 0 ] || return 1
	for _f; do [ -f "$_f" ] || { echo "absent: no file $_f" >&2; return 1; }; done
	grep -q -- "$_pat" "$@"
	[ $? -eq 1 ]
}
err_has() { grep -q -- "$1" "$err"; }
why() { echo "rc=$rc $(head -c 400 "$err")"; }
printf 'Subject: test\n\nsecret text for the test\n' > "$lab/msg.txt"
mkdir -p "$lab/k"

# --- ping and keygen
run $K ping
if [ $rc = 0 ] && grep -q '^km1 127.0.0.1:.*: OK KMIP' "$out" &&
    grep -q '^km2 127.0.0.1:.*: OK KMIP' "$out"; then pass ping
else fail ping "$(why)"; fi

run $K keygen
if [ $rc = 0 ] && has created && [ "$(stat -c %a "$lab/state/gateway.key")" = 600 ] &&
    [ "$(stat -c %s "$lab/state/gateway.key")" = 32 ]; then
	run $K keygen
	if [ $rc = 0 ] && has 'exists, kept'; then pass keygen
	else fail keygen "second run: $(why)"; fi
else fail keygen "$(why)"; fi

# --- enroll
t0=$(now_ms)
run $K enroll alice@example.com
t1=$(now_ms)
if [ $rc = 0 ] && has 'generation 1 is Active'; then pass enroll
else fail enroll "$(why)"; fi
echo "FIGURE enroll alice@example.com rsa2048: $((t1 - t0)) ms (whole kmctl run)"

run $K enroll alice@example.com
if [ $rc = 1 ] && err_has 'already enrolled'; then pass enroll_twice_refused
else fail enroll_twice_refused "$(why)"; fi

run $K show alice@example.com
if [ $rc = 0 ] && has 'generation 1 state Active key escrowed protection default type RSA-2048' &&
    has 'sha256 [0-9A-F][0-9A-F]:' && ! grep -qi 'private' "$out"; then pass show
else fail show "$(why) $(head -3 "$out")"; fi

run $K export-cert alice@example.com
cp "$out" "$lab/alice1.pem"
if [ $rc = 0 ] && openssl verify -CAfile "$lab/orgca.crt" -purpose smimeencrypt \
    "$lab/alice1.pem" >/dev/null 2>&1; then pass export_cert_verifies
else fail export_cert_verifies "$(why)"; fi
text=$(openssl x509 -in "$lab/alice1.pem" -noout -text 2>/dev/null)
case $text in
*"email:alice@example.com"*"E-mail Protection"*|*"E-mail Protection"*"email:alice@example.com"*)
	if echo "$text" | grep -q 'Key Encipherment' &&
	    echo "$text" | grep -q 'Subject Key Identifier' &&
	    echo "$text" | grep -q 'Authority Key Identifier' &&
	    openssl x509 -in "$lab/alice1.pem" -noout -subject | grep -q 'CN *= *alice@example.com'; then
		pass cert_profile
	else fail cert_profile "key usage / SKI / AKI / CN missing"; fi ;;
*)	fail cert_profile "SAN or EKU missing" ;;
esac
days=$(( ( $(date -d "$(openssl x509 -in "$lab/alice1.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s) ) / 86400 ))
if [ "$days" -ge 1180 ] && [ "$days" -le 1187 ]; then pass cert_39_months
else fail cert_39_months "$days days"; fi

# --- the key comes back from two shares and decrypts
openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/enc1.msg" "$lab/alice1.pem" 2>/dev/null
run $P keys alice@example.com "$lab/k"
if [ $rc = 0 ] && has '^generation 1 state Active enhanced 0 key matches-cert' &&
    [ "$(stat -c %a "$lab/k/gen1.key")" = 600 ] &&
    openssl cms -decrypt -in "$lab/enc1.msg" -inkey "$lab/k/gen1.key" \
    -recip "$lab/k/gen1.crt" 2>/dev/null | cmp -s - "$lab/msg.txt"; then
	pass keys_combine_and_decrypt
else fail keys_combine_and_decrypt "$(why)"; fi

# --- renew: two generations, the old one Deactivated, both decrypt
run $K renew alice@example.com
if [ $rc = 0 ] && has 'generation 2 is Active'; then pass renew
else fail renew "$(why)"; fi
run $K show alice@example.com
if [ $rc = 0 ] && has 'generation 2 state Active' && has 'generation 1 state Deactivated'; then
	pass renew_states
else fail renew_states "$(why) $(grep generation "$out")"; fi
$K export-cert alice@example.com > "$lab/alice2.pem" 2>/dev/null
if ! cmp -s "$lab/alice1.pem" "$lab/alice2.pem" &&
    openssl verify -CAfile "$lab/orgca.crt" -purpose smimeencrypt "$lab/alice2.pem" >/dev/null 2>&1; then
	pass export_cert_is_new_generation
else fail export_cert_is_new_generation; fi
openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/enc2.msg" "$lab/alice2.pem" 2>/dev/null
rm -f "$lab"/k/*
run $P keys alice@example.com "$lab/k"
if [ $rc = 0 ] && [ "$(grep -c '^generation' "$out")" = 2 ] &&
    has '^generation 2 state Active' && has '^generation 1 state Deactivated' &&
    openssl cms -decrypt -in "$lab/enc1.msg" -inkey "$lab/k/gen1.key" 2>/dev/null | cmp -s - "$lab/msg.txt" &&
    openssl cms -decrypt -in "$lab/enc2.msg" -inkey "$lab/k/gen2.key" 2>/dev/null | cmp -s - "$lab/msg.txt"; then
	pass renew_both_decrypt
else fail renew_both_decrypt "$(why) $(cat "$out")"; fi

# --- odd case finds the same keys
run $P keys Alice@EXAMPLE.COM
if [ $rc = 0 ] && [ "$(grep -c '^generation' "$out")" = 2 ]; then pass odd_case_lookup
else fail odd_case_lookup "$(why)"; fi

# --- benchmark (warm connections), before any failure injection
n=${KM_BENCH_N:-50}
run $P bench alice@example.com "$n"
if [ $rc = 0 ]; then
	sed 's/^/FIGURE /' "$out"
	pass bench
else fail bench "$(why)"; fi

# --- revoke generation 1: Compromised and never returned
run $K revoke alice@example.com 1
if [ $rc = 0 ] && has '1 generation revoked'; then pass revoke_gen
else fail revoke_gen "$(why)"; fi
run $K show alice@example.com
if [ $rc = 0 ] && has 'generation 1 state Compromised' && has 'generation 2 state Active'; then
	pass revoke_state
else fail revoke_state "$(why)"; fi
run $P keys alice@example.com
if [ $rc = 0 ] && [ "$(grep -c '^generation' "$out")" = 1 ] && has '^generation 2 ' &&
    ! has '^generation 1 '; then pass revoked_not_returned
else fail revoked_not_returned "$(why) $(cat "$out")"; fi
run $K revoke alice@example.com 9
if [ $rc = 3 ] && err_has 'no generation 9'; then pass revoke_unknown_generation
else fail revoke_unknown_generation "$(why)"; fi

# --- import a PKCS#12 issued by another CA
openssl req -new -newkey rsa:2048 -nodes -keyout "$lab/bob.key" -subj "/CN=Bob" \
    -out "$lab/bob.csr" 2>/dev/null
printf 'subjectAltName=email:bob@example.com\nextendedKeyUsage=emailProtection\nkeyUsage=keyEncipherment\n' > "$lab/bob.ext"
openssl x509 -req -in "$lab/bob.csr" -CA "$pki/other-ca.crt" -CAkey "$pki/other-ca.key" \
    -CAcreateserial -days 365 -extfile "$lab/bob.ext" -out "$lab/bob.crt" 2>/dev/null
openssl pkcs12 -export -inkey "$lab/bob.key" -in "$lab/bob.crt" -passout pass:s3cret-pw \
    -out "$lab/bob.p12" 2>/dev/null
printf 's3cret-pw\n' > "$lab/pw"
printf 'wrong\n' > "$lab/badpw"
run $K import bob@example.com "$lab/bob.p12" --password-file "$lab/badpw"
if [ $rc = 1 ] && err_has 'wrong password' && ! err_has 'wrong$' ; then pass import_p12_wrong_password
else fail import_p12_wrong_password "$(why)"; fi
run $K import bob@example.com "$lab/bob.p12" --password-fd 3 3<"$lab/pw"
if [ $rc = 0 ] && has 'imported key and certificate as generation 1' &&
    ! grep -q s3cret "$out" "$err"; then pass import_p12
else fail import_p12 "$(why)"; fi
openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/encb.msg" "$lab/bob.crt" 2>/dev/null
run $P keys bob@example.com "$lab/k"
if [ $rc = 0 ] && has '^generation 1 state Active enhanced 0 key matches-cert' &&
    openssl cms -decrypt -in "$lab/encb.msg" -inkey "$lab/k/gen1.key" 2>/dev/null | cmp -s - "$lab/msg.txt"; then
	pass import_p12_keys
else fail import_p12_keys "$(why)"; fi
run $K import carol@example.com "$lab/bob.p12" --password-file "$lab/pw"
if [ $rc = 1 ] && err_has 'not issued to carol@example.com'; then pass import_wrong_address
else fail import_wrong_address "$(why)"; fi

# --- key files as Windows and NSS export them (issue 15): RC2-40 or 3DES
# certificate encryption, base64 armor; each imports and its key decrypts
# mail encrypted to its certificate; a wrong password is said as such
# mkp12 NAME ADDR [pkcs12 -export options]: $lab/NAME.p12 for ADDR (RSA)
mkp12() {
	_n=$1 _a=$2; shift 2
	openssl req -new -newkey rsa:2048 -nodes -keyout "$lab/$_n.key" -subj "/CN=$_n" \
	    -out "$lab/$_n.csr" 2>/dev/null
	printf 'subjectAltName=email:%s\nextendedKeyUsage=emailProtection\nkeyUsage=digitalSignature,keyEncipherment\n' \
	    "$_a" > "$lab/$_n.ext"
	openssl x509 -req -in "$lab/$_n.csr" -CA "$pki/other-ca.crt" -CAkey "$pki/other-ca.key" \
	    -CAcreateserial -days 365 -extfile "$lab/$_n.ext" -out "$lab/$_n.crt" 2>/dev/null &&
	openssl pkcs12 -export -inkey "$lab/$_n.key" -in "$lab/$_n.crt" -passout pass:s3cret-pw \
	    "$@" -out "$lab/$_n.p12"
}
# import_decrypts NAME ADDR FILE: import, show lists it, its key decrypts
import_decrypts() {
	run $K import "$2" "$3" --password-file "$lab/pw"
	if [ $rc != 0 ] || ! has 'imported key and certificate as generation 1'; then
		fail "import_$1" "$(why)"; return
	fi
	run $K show "$2"
	if [ $rc != 0 ] || ! has 'generation 1 state Active key escrowed' || has unusable; then
		fail "import_$1" "show: $(why) $(head -2 "$out")"; return
	fi
	openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/enc-$1.msg" \
	    "$lab/$1.crt" 2>/dev/null
	rm -f "$lab"/k/*
	run $P keys "$2" "$lab/k"
	if [ $rc = 0 ] && openssl cms -decrypt -in "$lab/enc-$1.msg" -inkey "$lab/k/gen1.key" \
	    2>/dev/null | cmp -s - "$lab/msg.txt"; then pass "import_$1"
	else fail "import_$1" "keys/decrypt: $(why)"; fi
}
mkp12 rc2 rc2@example.com -legacy 2>/dev/null
if openssl pkcs12 -in "$lab/rc2.p12" -info -noout -passin pass:s3cret-pw 2>&1 |
    grep -q 'pbeWithSHA1And40BitRC2-CBC'; then
	run $K import rc2@example.com "$lab/rc2.p12" --password-file "$lab/badpw"
	if [ $rc = 1 ] && err_has 'wrong password' && ! err_has 'password is right'; then
		pass import_rc2_wrong_password
	else fail import_rc2_wrong_password "$(why)"; fi
	import_decrypts rc2 rc2@example.com "$lab/rc2.p12"
else fail import_rc2 "openssl pkcs12 -export -legacy made no RC2-40 file"; fi
mkp12 des3 des3@example.com -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1 2>/dev/null
import_decrypts des3 des3@example.com "$lab/des3.p12"
# NSS itself (pk12util, as Thunderbird's backup): RC2-40 certificates, 3DES key
if command -v pk12util >/dev/null && command -v certutil >/dev/null; then
	mkp12 nss-in nss@example.com 2>/dev/null
	mkdir "$lab/nssdb" && certutil -N -d "sql:$lab/nssdb" --empty-password &&
	pk12util -i "$lab/nss-in.p12" -d "sql:$lab/nssdb" -W s3cret-pw -K "" >/dev/null 2>&1 &&
	pk12util -o "$lab/nss.p12" -n nss-in -d "sql:$lab/nssdb" -W s3cret-pw -K "" \
	    -C "PKCS #12 V2 PBE With SHA-1 And 40 Bit RC2 CBC" \
	    -c "PKCS #12 V2 PBE With SHA-1 And 3KEY Triple DES-CBC" >/dev/null 2>&1
	cp "$lab/nss-in.crt" "$lab/nss.crt"
	if openssl pkcs12 -in "$lab/nss.p12" -info -noout -legacy -passin pass:s3cret-pw 2>&1 |
	    grep -q 'Encrypted data: pbeWithSHA1And40BitRC2-CBC'; then
		import_decrypts nss nss@example.com "$lab/nss.p12"
	else fail import_nss "pk12util made no RC2-40 file"; fi
else fail import_nss "pk12util/certutil not installed (tests/install-deps: libnss3-tools)"; fi
mkp12 armored armored@example.com -legacy 2>/dev/null
{ echo '-----BEGIN PKCS12-----'; openssl base64 -in "$lab/armored.p12"
  echo '-----END PKCS12-----'; } > "$lab/armored.pem"
import_decrypts armored armored@example.com "$lab/armored.pem"

# --- certificates that cannot encrypt are refused at import (issue 15)
openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 \
    -out "$lab/dsa.param" 2>/dev/null
openssl genpkey -paramfile "$lab/dsa.param" -out "$lab/dsa.key" 2>/dev/null
openssl req -new -key "$lab/dsa.key" -subj "/CN=dsa" -out "$lab/dsa.csr" 2>/dev/null
printf 'subjectAltName=email:dsa@partner.example\nextendedKeyUsage=emailProtection\nkeyUsage=digitalSignature,keyEncipherment\n' > "$lab/dsa.ext"
openssl x509 -req -in "$lab/dsa.csr" -CA "$pki/other-ca.crt" -CAkey "$pki/other-ca.key" \
    -CAcreateserial -days 365 -extfile "$lab/dsa.ext" -out "$lab/dsa.crt" 2>/dev/null
openssl pkcs12 -export -inkey "$lab/dsa.key" -in "$lab/dsa.crt" -passout pass:s3cret-pw \
    -out "$lab/dsa.p12" 2>/dev/null
run $K import dsa@partner.example "$lab/dsa.crt"
if [ $rc = 1 ] && err_has 'cannot encrypt' && err_has 'DSA'; then
	run $K show dsa@partner.example
	if [ $rc = 3 ]; then pass import_dsa_cert_refused
	else fail import_dsa_cert_refused "stored anyway: $(why)"; fi
else fail import_dsa_cert_refused "$(why)"; fi
run $K import dsa@partner.example "$lab/dsa.p12" --password-file "$lab/pw"
if [ $rc = 1 ] && err_has 'cannot encrypt' && err_has 'DSA'; then pass import_dsa_p12_refused
else fail import_dsa_p12_refused "$(why)"; fi
# one put in the KM before (by hand here): kmctl show says it is unusable
run $P plantcert dsa@partner.example 1 "$lab/dsa.crt"
run $K show dsa@partner.example
if [ $rc = 0 ] && has 'generation 1 state Active key none' &&
    has 'unusable: cannot encrypt: a DSA key'; then pass show_unusable_cert
else fail show_unusable_cert "$(why) $(cat "$out")"; fi
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$lab/signonly.key" -days 365 \
    -subj "/CN=signonly" -addext "subjectAltName=email:signonly@partner.example" \
    -addext "keyUsage=critical,digitalSignature" -out "$lab/signonly.crt" 2>/dev/null
run $K import signonly@partner.example "$lab/signonly.crt"
if [ $rc = 1 ] && err_has 'lacks keyEncipherment'; then pass import_sign_only_rsa_refused
else fail import_sign_only_rsa_refused "$(why)"; fi

# --- import a correspondent's certificate alone (DER)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$lab/carol.key" -days 365 \
    -subj "/CN=carol@partner.example" -addext "subjectAltName=email:carol@partner.example" \
    -outform DER -out "$lab/carol.der" 2>/dev/null
run $K import carol@partner.example "$lab/carol.der"
if [ $rc = 0 ] && has 'imported certificate as generation 1'; then pass import_cert
else fail import_cert "$(why)"; fi
run $K export-cert carol@partner.example
if [ $rc = 0 ] && openssl x509 -in "$out" -outform DER 2>/dev/null | cmp -s - "$lab/carol.der"; then
	pass import_cert_exported
else fail import_cert_exported "$(why)"; fi
run $P keys carol@partner.example
if [ $rc = 3 ] && err_has 'no keys for carol@partner.example'; then pass import_cert_no_keys
else fail import_cert_no_keys "$(why)"; fi
run $K show carol@partner.example
if [ $rc = 0 ] && has 'generation 1 state Active key none'; then pass import_cert_show
else fail import_cert_show "$(why)"; fi
printf 'garbage' > "$lab/garbage"
run $K import dave@example.com "$lab/garbage"
if [ $rc = 1 ] && err_has 'not an X.509 certificate'; then pass import_garbage
else fail import_garbage "$(why)"; fi

# --- signing keys: local, sealed, hashed names
run $K signing-enroll alice@example.com
sd=$lab/state/signing
if [ $rc = 0 ] && has 'signing certificate sha256' && [ "$(stat -c %a "$sd")" = 700 ] &&
    [ "$(ls "$sd" | wc -l)" = 2 ] && ! ls "$sd" | grep -qi alice &&
    [ -z "$(find "$sd" -type f ! -perm 600)" ] &&
    ls "$sd" | grep -Eq '^[0-9a-f]{64}\.key$' &&
    absent 'PRIVATE KEY' "$sd"/*.key; then pass signing_enroll
else fail signing_enroll "$(why) $(ls -l "$sd" 2>&1)"; fi
scrt=$(ls "$sd"/*.crt 2>/dev/null | head -1)
if [ -n "$scrt" ] && openssl verify -CAfile "$lab/orgca.crt" -purpose smimesign "$scrt" >/dev/null 2>&1 &&
    openssl x509 -in "$scrt" -noout -text | grep -q 'Digital Signature'; then pass signing_cert_profile
else fail signing_cert_profile; fi
run $P signload alice@example.com
if [ $rc = 0 ] && has 'signing key really matches certificate' && has 'chain 1'; then pass signstore_load
else fail signstore_load "$(why)"; fi
run $P signload bob@example.com
if [ $rc = 3 ] && err_has 'no signing key for bob@example.com here'; then pass signstore_none
else fail signstore_none "$(why)"; fi
skey=$(ls "$sd"/*.key | head -1)
cp "$skey" "$lab/key.bak"
/usr/bin/python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(20); b = f.read(1); f.seek(20)
f.write(bytes([b[0] ^ 0x01])); f.close()' "$skey"
run $P signload alice@example.com
if [ $rc = 5 ] && err_has 'does not open'; then pass signstore_tampered
else fail signstore_tampered "$(why)"; fi
cp "$lab/key.bak" "$skey"; chmod 600 "$skey"

# --- a signing key is not replaced without --yes (or a "y" at the terminal)
sum_sd() { cat "$sd"/* | sha256sum; }
before=$(sum_sd)
run $K signing-enroll alice@example.com </dev/null
if [ $rc = 1 ] && err_has 'alice@example.com already has a signing key (sha256 ' &&
    err_has 'kept; --yes replaces it' && [ "$(sum_sd)" = "$before" ]; then pass signing_enroll_kept
else fail signing_enroll_kept "$(why)"; fi
run $K signing-enroll alice@example.com --yes </dev/null
if [ $rc = 0 ] && has 'signing certificate sha256' && [ "$(sum_sd)" != "$before" ] &&
    [ "$(ls "$sd" | wc -l)" = 2 ]; then pass signing_enroll_yes_replaces
else fail signing_enroll_yes_replaces "$(why)"; fi

# --- help and usage errors: exit 2 with what was wrong and the usage line
run $K --help
if [ $rc = 0 ] && has '^usage: kmctl \[-c config\] command' && has '^  list \[--expiring DAYS\]$' &&
    has '^  maintain \[--days N\]$' &&
    has '^  signing-enroll ADDR' && [ ! -s "$err" ]; then pass help
else fail help "$(why)"; fi
run $K enroll --help
if [ $rc = 0 ] && has '^usage: kmctl \[-c config\] enroll ADDR .*--force'; then pass help_command
else fail help_command "$(why)"; fi
usage_case() {	# NAME PATTERN ARGS...: exit 2, PATTERN and a usage line on stderr
	_n=$1 _p=$2; shift 2
	run $K "$@"
	if [ $rc = 2 ] && err_has "$_p" && err_has '^usage: kmctl '; then pass "usage_$_n"
	else fail "usage_$_n" "$(why)"; fi
}
usage_case extra_arg 'enroll: unexpected argument "bob@example.com"' enroll alice@example.com bob@example.com
usage_case no_arg 'show: no address given' show
usage_case no_command 'no command given'
usage_case unknown_command 'unknown command "enrol"' enrol alice@example.com
usage_case unknown_option 'renew: unknown option "--dayz"' renew alice@example.com --dayz 3
usage_case bad_days 'enroll: bad --days "0"' enroll alice@example.com --days 0
usage_case format_elsewhere 'show: --format is for stats' show alice@example.com --format prometheus
usage_case bad_format 'stats: unknown --format "xml"' stats --format xml

# --- addresses outside policy.internal_domains: refused unless --force
run $K enroll zed@outside.example
if [ $rc = 1 ] && err_has 'zed@outside.example is not in policy.internal_domains' &&
    err_has '--force'; then pass enroll_outside_refused
else fail enroll_outside_refused "$(why)"; fi
run $K show zed@outside.example
if [ $rc = 3 ]; then pass enroll_outside_nothing_made; else fail enroll_outside_nothing_made "$(why)"; fi
run $K signing-enroll zed@outside.example
if [ $rc = 1 ] && err_has 'not in policy.internal_domains' &&
    [ "$(ls "$sd" | wc -l)" = 2 ]; then pass signing_enroll_outside_refused
else fail signing_enroll_outside_refused "$(why)"; fi
run $K enroll zed@outside.example --force
if [ $rc = 0 ] && has 'generation 1 is Active'; then pass enroll_outside_force
else fail enroll_outside_force "$(why)"; fi

run $K list
if [ $rc = 0 ] && has '^alice@example.com key level default generations [0-9]* current [0-9]* expires 20[0-9-]*$' &&
    has '^zed@outside.example key level default generations 1 current 1 expires ' &&
    has '^carol@partner.example certificate-only$' && LC_ALL=C sort -c "$out" &&
    [ "$(cut -d' ' -f1 "$out" | sort -u | wc -l)" = "$(wc -l < "$out")" ]; then pass list
else fail list "$(why) $(head -c 300 "$out")"; fi

# --- flush: an invalidation Redis refuses to publish is an error
if command -v redis-server >/dev/null; then
	rs=$lab/redis.sock
	printf 'pw-%s\n' "$$" > "$lab/redis.pw"; chmod 600 "$lab/redis.pw"
	redis-server --port 0 --unixsocket "$rs" --unixsocketperm 700 --dir "$lab" --save '' \
	    --daemonize yes --pidfile "$lab/redis.pid" --logfile "$lab/redis.log" \
	    --user default on ">pw-$$" '~*' '&*' '+@all' '-publish' >/dev/null
	for _ in $(seq 100); do [ -S "$rs" ] && [ -s "$lab/redis.pid" ] && break; sleep 0.05; done
	conf_r=$lab/kmilter-redis.conf
	{ cat "$conf"; printf 'cache: { redis: { socket = "%s"; password_file = "%s"; }; };\n' \
	    "$rs" "$lab/redis.pw"; } > "$conf_r"
	run $kmctl -c "$conf_r" flush alice@example.com
	if [ $rc != 0 ] && err_has 'cache invalidation for alice@example.com not published'; then
		pass flush_unpublished_fails
	else fail flush_unpublished_fails "$(why)"; fi
	redis-cli -s "$rs" --user default --pass "pw-$$" --no-auth-warning \
	    ACL SETUSER default +publish >/dev/null
	run $kmctl -c "$conf_r" flush alice@example.com
	if [ $rc = 0 ]; then pass flush_published; else fail flush_published "$(why)"; fi
	kill "$(cat "$lab/redis.pid")"
else
	echo "SKIP flush_unpublished_fails: ci-unavailable: no redis-server"
fi

# --- malformed addresses and nobody
run $K show not-an-address
if [ $rc = 2 ] && err_has "^kmctl: show: malformed address: no '@'" &&
    err_has '^usage: kmctl \[-c config\] show ADDR'; then pass malformed_address
else fail malformed_address "$(why)"; fi
run $K enroll 'a b@example.com'
if [ $rc = 2 ] && err_has 'malformed address'; then pass malformed_address_space
else fail malformed_address_space "$(why)"; fi
run $P keys '@example.com'
if [ $rc = 5 ] && err_has 'empty local part'; then pass malformed_address_probe
else fail malformed_address_probe "$(why)"; fi
for c in show export-cert renew revoke; do
	run $K $c nobody@example.com
	if [ $rc = 3 ] && err_has 'no '; then pass "nobody_$c"
	else fail "nobody_$c" "$(why)"; fi
done
run $P keys nobody@example.com
if [ $rc = 3 ]; then pass nobody_keys; else fail nobody_keys "$(why)"; fi

# --- shares planted by hand: wrong length, and not combining into a key
run $P plant alice@example.com 7 1190 1200
run $P keys alice@example.com
if [ $rc = 5 ] && err_has 'generation 7 of alice@example.com: key shares differ in length'; then
	pass share_length_mismatch
else fail share_length_mismatch "$(why)"; fi
$K revoke alice@example.com 7 >/dev/null 2>&1
run $P plant alice@example.com 8 1190 1190
run $P keys alice@example.com
if [ $rc = 5 ] && err_has 'generation 8 of alice@example.com: the key shares do not combine'; then
	pass share_garbage
else fail share_garbage "$(why)"; fi
$K revoke alice@example.com 8 >/dev/null 2>&1
run $P keys alice@example.com
if [ $rc = 0 ] && [ "$(grep -c '^generation' "$out")" = 1 ]; then pass revoke_cleans_bad_generation
else fail revoke_cleans_bad_generation "$(why)"; fi

# --- more enrollments, for the figure
tot=0
for i in 1 2 3 4 5; do
	t0=$(now_ms); $K enroll "user$i@example.com" >/dev/null 2>&1; t1=$(now_ms)
	tot=$((tot + t1 - t0))
done
echo "FIGURE enroll: 5 users rsa2048, mean $((tot / 5)) ms per user (whole kmctl run)"
t0=$(now_ms); run $K enroll ec@example.com --key ec-p256; t1=$(now_ms)
if [ $rc = 0 ] && $K show ec@example.com 2>/dev/null | grep -q 'type EC-prime256v1'; then pass enroll_ec
else fail enroll_ec "$(why)"; fi
echo "FIGURE enroll ec-p256: $((t1 - t0)) ms"

# --- server B down: keys TEMPFAIL (4), certificate still from A
km_stop "$lab" km2
run $P keys alice@example.com
if [ $rc = 4 ] && err_has 'km2'; then pass keys_server_b_down
else fail keys_server_b_down "$(why)"; fi
run $P cert alice@example.com
if [ $rc = 0 ] && has 'CN=alice@example.com'; then pass cert_from_a_when_b_down
else fail cert_from_a_when_b_down "$(why)"; fi
run $K ping
if [ $rc = 4 ] && grep -q '^km1 .*OK' "$out" && grep -q '^km2 .*error' "$out"; then pass ping_b_down
else fail ping_b_down "$(why)"; fi
run $K renew alice@example.com
if [ $rc = 4 ]; then pass renew_b_down_refused; else fail renew_b_down_refused "$(why)"; fi

# --- server A down, B back: certificate from B
km_start "$lab" km2 "$p2" || fail restart_km2
km_stop "$lab" km1
run $P cert alice@example.com
if [ $rc = 0 ] && has 'CN=alice@example.com'; then pass cert_from_b_when_a_down
else fail cert_from_b_when_a_down "$(why)"; fi
run $K export-cert alice@example.com
if [ $rc = 0 ] && cmp -s "$out" "$lab/alice2.pem"; then pass export_cert_from_b
else fail export_cert_from_b "$(why)"; fi
run $P keys alice@example.com
if [ $rc = 4 ]; then pass keys_server_a_down; else fail keys_server_a_down "$(why)"; fi

# --- nothing secret in any output or log
if absent 's3cret-pw' "$lab"/km1/server.log "$lab"/km2/server.log "$lab"/km1/stdout.log \
    "$lab"/km2/stdout.log "$out" "$err" 2>"$lab/absent.err"; then
	pass no_secrets_in_logs
else fail no_secrets_in_logs "$(cat "$lab/absent.err")"; fi

suite_ok
