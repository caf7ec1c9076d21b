#!/bin/sh
# t-sendmail.sh - the outbound, inbound and fault end-to-end suites again,
# with Debian's Sendmail in front of kmilter instead of Postfix
# (tests/lab with LAB_MTA=sendmail: tests/lablib/sendmail.sh; README,
# "Sendmail").  Each suite's PASS/FAIL/SKIP lines are shown with
# "sendmail: " before the case name; the exit status is non-zero when a
# suite failed.  Sendmail is unpacked by tests/install-deps: its absence
# is a failure, not a skip.
# Env: T_SENDMAIL_SUITES (default "t-outbound.py t-inbound.py t-faults.py").
set -u
here=$(cd "$(dirname "$0")" && pwd)
LAB_LIB=$(cd "$here/../lablib" && pwd)
. "$LAB_LIB/sendmail.sh"

if ! sendmail_have; then
	echo "FAIL sendmail: no Sendmail under $SENDMAIL_ROOT (run tests/install-deps)"
	exit 1
fi

rc=0
for s in ${T_SENDMAIL_SUITES:-t-outbound.py t-inbound.py t-faults.py}; do
	start=$(date +%s)
	out=$(mktemp)
	rec=$(mktemp)
	LAB_MTA=sendmail T_LAB_RECORD=$rec "$here/$s" >"$out" 2>&1
	src=$?
	sed -e 's/^\(PASS\|FAIL\|SKIP\) /\1 sendmail: /' -e 's/^tests: /suite: /' "$out"
	if [ $src -ne 0 ]; then
		rc=1
		grep -q '^FAIL ' "$out" ||
			echo "FAIL sendmail: $s exited with status $src"
	fi
	# every lab the suite started ran Sendmail (tests/lab T_LAB_RECORD)
	if [ ! -s "$rec" ] || grep -qv '^sendmail ' "$rec"; then
		rc=1
		echo "FAIL sendmail: $s: its labs did not run Sendmail: $(tr '\n' ' ' < "$rec")"
	else
		echo "PASS sendmail: $s: every lab it started ran Sendmail ($(wc -l < "$rec"))"
	fi
	rm -f "$out" "$rec"
	echo "INFO sendmail: $s took $(( $(date +%s) - start ))s"
done
exit $rc
