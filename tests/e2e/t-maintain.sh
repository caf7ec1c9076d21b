#!/bin/bash
# t-maintain.sh - kmctl maintain (automatic renewal, kmctl/cmd_maintain.c,
# keymodel_renew_due()) and kmctl list --expiring, against two real PyKMIP
# servers on 127.0.0.1 (the lab's KM, tests/lablib/km.sh).
# Env: KM_TOP, KM_BUILD, KM_PORT_BASE (default 27000 + pid % 1000 * 10),
#      KM_MAINT_N (users for the figure, default 100), KM_MAINT_DUE (of them
#      due, default 10).
# Prints PASS/FAIL lines and a FIGURE line.
. "$(dirname "$0")/../lib/suite.sh"
kmctl=$build/kmctl
probe=$build/tools/keymodel-probe
. "$top/tests/lablib/km.sh"

suite_need_built "$kmctl" "$probe"
suite_need_cmd /usr/bin/pykmip-server

. "$top/tests/lablib/kmpair.sh"
kmpair_up t-maintain 27000
# enroll_all DAYS ADDR...: enroll each, 4 at a time
enroll_all() {
	_d=$1; shift
	printf '%s\n' "$@" | xargs -P 4 -I{} $K enroll {} --days "$_d" >/dev/null 2>"$lab/enroll.err" ||
	    { echo "FAIL setup: enroll: $(head -c 300 "$lab/enroll.err")"; exit 1; }
}
printf 'Subject: test\n\nsecret text for the test\n' > "$lab/msg.txt"
mkdir -p "$lab/k"
$K keygen >/dev/null 2>&1 || { echo "FAIL setup: keygen"; exit 1; }

# --- due (10 days left) and not due (default 39 months)
enroll_all 10 due1@example.com due2@example.com
enroll_all 1180 fine@example.com
run $K signing-enroll due1@example.com --days 5
[ $rc = 0 ] || fail setup_signing "$(why)"
run $K signing-enroll fine@example.com
[ $rc = 0 ] || fail setup_signing "$(why)"
$K export-cert due1@example.com > "$lab/due1-old.pem" 2>/dev/null
openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/old.msg" \
    "$lab/due1-old.pem" 2>/dev/null
fine_before=$($K export-cert fine@example.com 2>/dev/null | openssl x509 -noout -fingerprint)

run $K list --expiring 30
if [ $rc = 0 ] && has '^due1@example.com key level default generations 1 current 1 expires ' &&
    has '^due2@example.com key' && ! has '^fine@example.com'; then pass list_expiring
else fail list_expiring "$(why)"; fi
run $K list
if [ $rc = 0 ] && has '^fine@example.com key level default generations 1 current 1 expires 20'; then
	pass list_all
else fail list_all "$(why)"; fi
run $K list --expiring x
if [ $rc = 2 ] && grep -q 'bad --expiring' "$err"; then pass list_expiring_bad
else fail list_expiring_bad "$(why)"; fi

# --- maintain: the due ones renewed, the others untouched
run $K maintain
if [ $rc = 0 ] && has '^renewed due1@example.com: generation 1 (expires 20[0-9-]*) -> 2$' &&
    has '^renewed due2@example.com: generation 1' && ! has 'fine@example.com' &&
    has '^maintain: 3 users, 2 renewed, 0 renewed elsewhere, 0 need attention, 0 failed; signing keys: 1 renewed, 0 deleted, 1 kept, 0 failed$'; then
	pass maintain_renews_due
else fail maintain_renews_due "$(why)"; fi
if has '^signing renewed due1@example.com: the certificate expiring 20'; then pass maintain_signing
else fail maintain_signing "$(why)"; fi
run $P signload due1@example.com
if [ $rc = 0 ]; then pass signing_key_loads
else fail signing_key_loads "$(why)"; fi
if [ "$(gens due1@example.com)" = 1/2 ] && grep -q 'generation 2 state Active' "$lab/show" &&
    grep -q 'generation 1 state Deactivated' "$lab/show"; then pass new_generation_current
else fail new_generation_current "$(cat "$lab/show")"; fi
if [ "$(gens fine@example.com)" = 1/1 ] &&
    [ "$($K export-cert fine@example.com 2>/dev/null | openssl x509 -noout -fingerprint)" = "$fine_before" ]; then
	pass not_due_untouched
else fail not_due_untouched "$(gens fine@example.com)"; fi
$K export-cert due1@example.com > "$lab/due1-new.pem" 2>/dev/null
ndays=$(( ( $(date -d "$(openssl x509 -in "$lab/due1-new.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s) ) / 86400 ))
if ! cmp -s "$lab/due1-old.pem" "$lab/due1-new.pem" && [ "$ndays" -ge 1180 ]; then
	pass renewed_cert_full_validity
else fail renewed_cert_full_validity "$ndays days"; fi
run $P keys due1@example.com "$lab/k"
if [ $rc = 0 ] && openssl cms -decrypt -in "$lab/old.msg" -inkey "$lab/k/gen1.key" \
    2>/dev/null | cmp -s - "$lab/msg.txt"; then pass old_generation_decrypts
else fail old_generation_decrypts "$(why)"; fi

# --- idempotent
run $K maintain
if [ $rc = 0 ] && ! has '^renewed' && ! has '^signing' &&
    has '^maintain: 3 users, 0 renewed, 0 renewed elsewhere, 0 need attention, 0 failed; signing keys: 0 renewed, 0 deleted, 2 kept, 0 failed$' &&
    [ "$(gens due1@example.com)" = 1/2 ]; then pass second_run_changes_nothing
else fail second_run_changes_nothing "$(why)"; fi

# --- a user at level enhanced: renewal needs the password, so it is only
# reported (and nothing changes)
printf 'pr0tect-pw\n' > "$lab/pw"; chmod 600 "$lab/pw"
run $K enroll prot@example.com --protect --password-file "$lab/pw" --days 10
[ $rc = 0 ] || fail setup_protect "$(why)"
run $K maintain
if [ $rc = 0 ] && has '^attention prot@example.com: generation 1 expires 20[0-9-]* at level enhanced' &&
    has '^maintain: 4 users, 0 renewed, 0 renewed elsewhere, 1 need attention, 0 failed;' &&
    [ "$(gens prot@example.com)" = 1/1 ]; then pass enhanced_reported_not_renewed
else fail enhanced_reported_not_renewed "$(why)"; fi

# --- two maintains at once: each address renewed once
race=""
for i in 1 2 3 4 5 6 7 8; do race="$race race$i@example.com"; done
enroll_all 10 $race
$K maintain >"$lab/m1.out" 2>"$lab/m1.err" & m1=$!
$K maintain >"$lab/m2.out" 2>"$lab/m2.err" & m2=$!
wait $m1; rc1=$?
wait $m2; rc2=$?
ok=1 detail=""
for a in $race; do
	n=$(cat "$lab/m1.out" "$lab/m2.out" | grep -c "^renewed $a:")
	g=$(gens "$a")
	[ "$n" = 1 ] && [ "$g" = 1/2 ] || { ok=0; detail="$detail $a renewed=$n gens=$g"; }
done
if [ $ok = 1 ] && [ $rc1 = 0 ] && [ $rc2 = 0 ]; then pass concurrent_once_each
else fail concurrent_once_each "rc $rc1 $rc2:$detail $(tail -c 300 "$lab/m1.err" "$lab/m2.err")"; fi
grep -h '^maintain:' "$lab/m1.out" "$lab/m2.out" | sed 's/^/  /'

# --- an expired signing key of an address no longer enrolled is deleted;
# one of an enrolled address is replaced.  Expired certificates are made
# by rewriting the stored certificate file (the key stays; maintain reads
# only the certificate to decide).
expire_signing() {	# ADDR: its signing certificate file now expired
	_before=$(ls "$lab/state/signing")
	$K signing-enroll "$1" --yes >/dev/null || return 1
	_f=$(ls "$lab/state/signing"/*.crt | while read -r f; do
		openssl x509 -in "$f" -noout -subject | grep -qE "CN *= *$1(,|\$)" && echo "$f"; done)
	[ -n "$_f" ] || return 1
	python3 - "$_f" "$lab/orgca.crt" "$lab/orgca.key" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
path, cacrt, cakey = sys.argv[1:]
old = x509.load_pem_x509_certificate(open(path, "rb").read())
ca = x509.load_pem_x509_certificate(open(cacrt, "rb").read())
key = serialization.load_pem_private_key(open(cakey, "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
b = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca.subject)
     .public_key(old.public_key()).serial_number(x509.random_serial_number())
     .not_valid_before(now - datetime.timedelta(days=30))
     .not_valid_after(now - datetime.timedelta(days=1)))
for e in old.extensions:
    b = b.add_extension(e.value, e.critical)
c = b.sign(key, hashes.SHA256())
open(path, "wb").write(c.public_bytes(serialization.Encoding.PEM) +
    ca.public_bytes(serialization.Encoding.PEM))
PY
}
if expire_signing gone@example.com 2>"$lab/expire.err" &&
    expire_signing due2@example.com 2>>"$lab/expire.err"; then
	nfiles=$(ls "$lab/state/signing" | wc -l)
	run $K maintain
	if [ $rc = 0 ] && has '^signing deleted gone@example.com: expired 20[0-9-]*, not enrolled$' &&
	    has '^signing renewed due2@example.com: the certificate expired 20' &&
	    [ "$(ls "$lab/state/signing" | wc -l)" = $((nfiles - 2)) ]; then
		pass signing_expired_deleted_or_replaced
	else fail signing_expired_deleted_or_replaced "$(why) files $nfiles -> $(ls "$lab/state/signing" | wc -l)"; fi
	run $P signload due2@example.com
	if [ $rc = 0 ]; then pass signing_replaced_loads; else fail signing_replaced_loads "$(why)"; fi
else fail signing_expired_setup "no expired signing certificate: $(tail -c 400 "$lab/expire.err")"; fi

# --- figure: N users, M of them due
N=${KM_MAINT_N:-100} M=${KM_MAINT_DUE:-10}
users="" due=""
for i in $(seq 1 $((N - 12 - M))); do users="$users u$i@example.com"; done
for i in $(seq 1 "$M"); do due="$due d$i@example.com"; done
t0=$(now_ms)
[ -z "$users" ] || enroll_all 1180 $users
enroll_all 10 $due
t1=$(now_ms)
run $K maintain
t2=$(now_ms)
total=$(sed -n 's/^maintain: \([0-9]*\) users.*/\1/p' "$out")
if [ $rc = 0 ] && has "^maintain: $total users, $M renewed, 0 renewed elsewhere"; then
	pass maintain_figure_run
else fail maintain_figure_run "$(why)"; fi
echo "FIGURE kmctl maintain: $((t2 - t1)) ms for $total users, $M due (enrolling them took $((t1 - t0)) ms)"

suite_ok
