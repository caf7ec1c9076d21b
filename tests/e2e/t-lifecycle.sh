#!/bin/bash
# t-lifecycle.sh - bulk enrollment (kmctl enroll --from, kmctl/cmd_bulk.c)
# and the key lifecycle's failure cases against two real PyKMIP servers on
# 127.0.0.1 (tests/lablib/kmpair.sh): an enrollment killed half-way, a KM
# server that stops in the middle of an enrollment, a renewal (kmctl
# maintain) killed between its steps (keymodel_enroll_race.c).
# Kills happen at named steps through the test-only KMILTER_TEST_PAUSE knob
# (the process stops itself with SIGSTOP there); KMILTER_TEST_STALE_S=0
# stands for "600 s later" (when a Pre-Active leftover counts as crashed).
# Env: KM_TOP, KM_BUILD, KM_PORT_BASE (default 26000 + pid % 1000 * 10),
#      KM_BULK_N (users per bulk run for the FIGURE lines, default 20; 0:
#      no figures), KM_MAINT_DUE (of the users then, due for renewal for the
#      maintain FIGURE, default 5), KM_BULK_JOBS (the --jobs of each bulk
#      pass, default "1 4"), KM_IO_TIMEOUT_MS (kmpair.sh).
#      tests/bench/run --only lifecycle runs it with 1,000 and 100.
# bash: km_stop uses "kill -- -PGID".
. "$(dirname "$0")/../lib/suite.sh"
kmctl=$build/kmctl
probe=$build/tools/keymodel-probe
. "$top/tests/lablib/km.sh"

suite_need_built "$kmctl" "$probe"
suite_need_cmd /usr/bin/pykmip-server

. "$top/tests/lablib/kmpair.sh"
kmpair_up t-lifecycle 26000
# decrypts ADDR: a message encrypted to ADDR's current certificate opens
# with the key the KM gives back for it
decrypts() {
	rm -rf "$lab/k"; mkdir -p "$lab/k"
	$K export-cert "$1" > "$lab/cur.pem" 2>/dev/null || return 1
	openssl cms -encrypt -binary -aes256 -in "$lab/msg.txt" -out "$lab/enc.msg" \
	    "$lab/cur.pem" 2>/dev/null || return 1
	$P keys "$1" "$lab/k" >/dev/null 2>&1 || return 1
	for _k in "$lab"/k/gen*.key; do
		openssl cms -decrypt -in "$lab/enc.msg" -inkey "$_k" 2>/dev/null |
		    cmp -s - "$lab/msg.txt" && return 0
	done
	return 1
}
# paused CMD...: run CMD in the background with KMILTER_TEST_PAUSE=$step
# and wait (20 s at most) until it has stopped itself there; pid in $bg
paused() {
	KMILTER_TEST_PAUSE=$step "$@" >"$lab/bg.out" 2>"$lab/bg.err" &
	bg=$!
	_i=0
	while [ $_i -lt 200 ]; do
		grep -q "kmilter test pause: $step" "$lab/bg.err" 2>/dev/null &&
		    [ "$(awk '{print $3}' "/proc/$bg/stat" 2>/dev/null)" = T ] && return 0
		kill -0 "$bg" 2>/dev/null || return 1
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}
# killed: SIGKILL the paused process and reap it
killed() { kill -KILL "$bg"; wait "$bg" 2>/dev/null; }
printf 'Subject: test\n\nsecret text for the test\n' > "$lab/msg.txt"

# --- bulk: blank lines, comments, a duplicate in another case, a malformed
# address and an outside one; the good ones enrolled, the bad ones listed
cat > "$lab/users" <<'EOF'
# users of example.com

b1@example.com
  b2@example.com
b3@example.com
B1@Example.COM
not an address
b4@example.com
x@elsewhere.org
b5@example.com
   # indented comment
b6@example.com
EOF
run $K enroll --from "$lab/users" --jobs 3
ok=1
for i in 1 2 3 4 5 6; do
	has "^enrolled b$i@example.com: generation 1$" || ok=0
done
if [ $rc = 1 ] && [ $ok = 1 ] &&
    has '^enroll: 8 addresses, 6 enrolled, 0 already enrolled, 2 failed (' &&
    has '^failed addresses (run again to retry them):$' &&
    has '^  line 7: not an address: malformed address' &&
    has '^  line 9: x@elsewhere.org: not in policy.internal_domains'; then
	pass bulk_enrolls_and_lists_failures
else fail bulk_enrolls_and_lists_failures "$(why)"; fi
ok=1
for i in 1 2 3 4 5 6; do [ "$(gens b$i@example.com)" = 1/1 ] || ok=0; done
if [ $ok = 1 ] && decrypts b4@example.com; then pass bulk_users_complete
else fail bulk_users_complete "b4 $(gens b4@example.com)"; fi

# --- resumable: a second run enrolls nothing again
run $K enroll --from "$lab/users" --jobs 2
if [ $rc = 1 ] && has '^enroll: 8 addresses, 0 enrolled, 6 already enrolled, 2 failed (' &&
    ! has '^enrolled ' && [ "$(gens b1@example.com)" = 1/1 ]; then pass bulk_resumes
else fail bulk_resumes "$(why)"; fi

# --- stdin, all good: exit 0; an unreadable file: exit 1 with a message
run sh -c "printf 'b1@example.com\ns1@example.com\n' | $K enroll --from -"
if [ $rc = 0 ] && has '^enrolled s1@example.com: generation 1$' &&
    has '^enroll: 2 addresses, 1 enrolled, 1 already enrolled, 0 failed ('; then
	pass bulk_stdin
else fail bulk_stdin "$(why)"; fi
run $K enroll --from "$lab/nonexistent"
if [ $rc = 1 ] && grep -q "enroll --from $lab/nonexistent: No such file" "$err"; then
	pass bulk_missing_file
else fail bulk_missing_file "$(why)"; fi

# --- progress: a line on stderr every 2 s of a longer run (one worker)
: > "$lab/many"
for i in $(seq 1 12); do echo "p$i@example.com" >> "$lab/many"; done
run $K enroll --from "$lab/many" --jobs 1
secs=$(sed -n 's/^enroll: .*failed (\([0-9]*\)\..*/\1/p' "$out")
if [ $rc = 0 ] && has '^enroll: 12 addresses, 12 enrolled' &&
    { [ "${secs:-0}" -lt 3 ] ||
      grep -qE '^kmctl: enroll: [0-9]+/12 done, [0-9.]+/min, [0-9]+ enrolled, 0 already enrolled, 0 failed$' "$err"; }; then
	pass bulk_progress
else fail bulk_progress "$(why) secs=$secs"; fi
[ "${secs:-0}" -ge 3 ] || echo "  (bulk_progress: the run took under 3 s, no progress line due)"

# --- an enrollment killed after registering: nothing is current, and the
# leftovers block the address only while they may still belong to a live
# enrollment (600 s; here KMILTER_TEST_STALE_S=0)
step=registered
if paused $K enroll crash1@example.com; then
	killed
	run $K export-cert crash1@example.com
	rc1=$rc
	$K show crash1@example.com > "$lab/show" 2>&1
	if [ $rc1 = 3 ] && grep -q 'generation 1 state PreActive' "$lab/show"; then
		pass killed_enroll_nothing_current
	else fail killed_enroll_nothing_current "export-cert rc=$rc1 $(cat "$lab/show")"; fi
	run $K enroll crash1@example.com
	if [ $rc = 4 ] && grep -q 'another enrollment came first' "$err"; then
		pass fresh_leftover_treated_as_live
	else fail fresh_leftover_treated_as_live "$(why)"; fi
	KMILTER_TEST_STALE_S=0 run $K enroll crash1@example.com
	if [ $rc = 0 ] && has '^crash1@example.com: generation 1 is Active' &&
	    [ "$(gens crash1@example.com)" = 1/1 ] && decrypts crash1@example.com; then
		pass stale_leftover_does_not_block
	else fail stale_leftover_does_not_block "$(why) $(cat "$lab/show")"; fi
else fail killed_enroll_setup "no pause: $(cat "$lab/bg.err")"; killed; fi

# --- a KM server stops in the middle of an enrollment (shares activated,
# certificates not yet): the enrollment fails, nothing is current, and
# once the server is back the address enrolls
step=activating
if paused $K enroll half1@example.com; then
	km_stop "$lab" km2
	kill -CONT "$bg"
	wait "$bg"; rc1=$?
	km_start "$lab" km2 "$p2" || { echo "FAIL restart km2"; exit 1; }
	run $K export-cert half1@example.com
	rc2=$rc
	$K show half1@example.com > "$lab/show" 2>&1
	if [ $rc1 != 0 ] && [ $rc2 = 3 ] && ! grep -q 'state Active' "$lab/show"; then
		pass km_down_halfway_nothing_current
	else fail km_down_halfway_nothing_current "enroll rc=$rc1 export-cert rc=$rc2 $(cat "$lab/bg.err" "$lab/show")"; fi
	KMILTER_TEST_STALE_S=0 run $K enroll half1@example.com
	if [ $rc = 0 ] && decrypts half1@example.com && [ "$(gens half1@example.com)" = 1/1 ] &&
	    grep -q 'Pre-Active object of an interrupted change removed' "$err" &&
	    grep -q 'shares without a certificate revoked and removed' "$err"; then
		pass km_down_halfway_enrolls_later
	else fail km_down_halfway_enrolls_later "$(why) $(cat "$lab/show")"; fi
else fail km_down_setup "no pause: $(cat "$lab/bg.err")"; killed; fi

# --- kmctl maintain killed between the steps of a renewal: the next
# maintain finishes it (each user due alone, so the pause is its renewal)
# ren_setup ADDR: ADDR enrolled, due in 10 days; its certificate in old.pem
ren_setup() {
	$K enroll "$1" --days 10 >/dev/null 2>&1 &&
	    $K export-cert "$1" > "$lab/old.pem" 2>/dev/null
}
# ren_done ADDR: generation 2 current, 1 Deactivated, old mail still opens
ren_done() {
	[ "$(gens "$1")" = 1/2 ] && grep -q 'generation 2 state Active' "$lab/show" &&
	    grep -q 'generation 1 state Deactivated' "$lab/show" &&
	    ! $K export-cert "$1" 2>/dev/null | cmp -s - "$lab/old.pem" && decrypts "$1"
}
step=registered
if ren_setup ren1@example.com && paused $K maintain; then
	killed
	if $K export-cert ren1@example.com 2>/dev/null | cmp -s - "$lab/old.pem"; then
		pass killed_renewal_keeps_current
	else fail killed_renewal_keeps_current "$($K show ren1@example.com 2>&1)"; fi
	run $K maintain
	if [ $rc = 0 ] && has '^skipped ren1@example.com: renewed elsewhere' &&
	    ! has '^finished'; then pass fresh_renewal_left_alone
	else fail fresh_renewal_left_alone "$(why)"; fi
	KMILTER_TEST_STALE_S=0 run $K maintain
	if [ $rc = 0 ] &&
	    has '^finished ren1@example.com: generation 2: 4 Pre-Active objects of an interrupted change removed$' &&
	    has '^renewed ren1@example.com: generation 1 (expires 20[0-9-]*) -> 2$' &&
	    has '^maintain: 1 interrupted change finished$' && ren_done ren1@example.com; then
		pass killed_after_register_renewed_next_time
	else fail killed_after_register_renewed_next_time "$(why) $(cat "$lab/show")"; fi
else fail killed_renewal_setup "no pause: $(cat "$lab/bg.err")"; killed; fi

step=activating
if ren_setup ren2@example.com && paused $K maintain; then
	killed
	# its shares are Active, its certificates not: nobody encrypts to a
	# certificate whose key is not there
	if $K export-cert ren2@example.com 2>/dev/null | cmp -s - "$lab/old.pem"; then
		pass no_certificate_before_its_key
	else fail no_certificate_before_its_key "$($K show ren2@example.com 2>&1)"; fi
	KMILTER_TEST_STALE_S=0 run $K maintain
	if [ $rc = 0 ] &&
	    has '^finished ren2@example.com: generation 2: an interrupted activation finished$' &&
	    ! has '^renewed ren2' && ren_done ren2@example.com; then
		pass killed_while_activating_finished
	else fail killed_while_activating_finished "$(why) $(cat "$lab/show")"; fi
else fail killed_activating_setup "no pause: $(cat "$lab/bg.err")"; killed; fi

step=activated
if ren_setup ren3@example.com && paused $K maintain; then
	killed
	[ "$(gens ren3@example.com)" = 2/2 ] || echo "  (ren3 before: $(gens ren3@example.com))"
	KMILTER_TEST_STALE_S=0 run $K maintain
	if [ $rc = 0 ] &&
	    has '^finished ren3@example.com: generation 2: the older generations deactivated' &&
	    ! has '^renewed ren3' && ren_done ren3@example.com; then
		pass killed_before_deactivating_finished
	else fail killed_before_deactivating_finished "$(why) $(cat "$lab/show")"; fi
	run $K maintain
	if [ $rc = 0 ] && ! has '^finished' && ! has '^renewed'; then pass finished_once
	else fail finished_once "$(why)"; fi
else fail killed_activated_setup "no pause: $(cat "$lab/bg.err")"; killed; fi

# --- figures: bulk enrollment, serial and with the pool (KM_BULK_N users
# each, each pass on a KM pair with empty databases: PyKMIP's Locate reads
# every object, so a pass after the other would run slower for that alone);
# then kmctl maintain over the pool pass's users and KM_MAINT_DUE more, due
N=${KM_BULK_N:-20} M=${KM_MAINT_DUE:-5}
# km_fresh: both KM servers restarted with empty databases
km_fresh() {
	for _n in km1 km2; do km_stop "$lab" $_n; rm -f "$lab/$_n/pykmip.db"; done
	km_start "$lab" km1 "$p1" && km_start "$lab" km2 "$p2"
}
# bulk_file NAME COUNT: COUNT new addresses NAME-i@example.com in $lab/NAME
bulk_file() {
	: > "$lab/$1"
	for i in $(seq 1 "$2"); do echo "$1-$i@example.com" >> "$lab/$1"; done
}
if [ "$N" -gt 0 ]; then
	for j in ${KM_BULK_JOBS:-1 4}; do
		bulk_file "fig$j" "$N"
		km_fresh || fail "bulk_figure_jobs$j" "KM servers did not restart"
		t0=$(now_ms)
		run $K enroll --from "$lab/fig$j" --jobs $j
		failed=$(sed -n 's/^enroll: .* \([0-9]*\) failed.*/\1/p' "$out")
		# as an administrator would: the same command again picks up
		# what failed (resumable), counted in the time
		[ "${failed:-0}" -gt 0 ] && run $K enroll --from "$lab/fig$j" --jobs $j
		t1=$(now_ms)
		if [ $rc = 0 ] && has "^enroll: $N addresses, .* 0 failed"; then
			again=""
			[ "${failed:-0}" -gt 0 ] && again=" ($failed failed the first time, enrolled by a second run)"
			echo "FIGURE bulk enroll --jobs $j: $N users in $((t1 - t0)) ms = $((N * 60000 / (t1 - t0 + 1))) users/min$again"
		else fail "bulk_figure_jobs$j" "$(why)"; fi
	done
	bulk_file due "$M"
	run $K enroll --from "$lab/due" --days 10
	[ $rc = 0 ] || fail maintain_figure_setup "$(why)"
	t0=$(now_ms)
	run $K maintain
	t1=$(now_ms)
	total=$(sed -n 's/^maintain: \([0-9]*\) users.*/\1/p' "$out")
	if [ $rc = 0 ] && has "^maintain: $total users, $M renewed, 0 renewed elsewhere"; then
		echo "FIGURE kmctl maintain: $((t1 - t0)) ms for $total users, $M due"
	else fail maintain_figure "$(why)"; fi
fi

suite_ok
