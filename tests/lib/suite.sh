# tests/lib/suite.sh - the opening lines every end-to-end shell suite shares.
#
# A suite sources it first:   . "$(dirname "$0")/../lib/suite.sh"
# It then has:
#   set -u; top (KM_TOP, else the checkout holding the suite) and build
#   (KM_BUILD, else $top/build), both exported as KM_TOP and KM_BUILD for
#   the helpers the suite starts; fails=0;
#   pass NAME                 print "PASS NAME"
#   fail NAME [WHY]           print "FAIL NAME: WHY" and count it in fails
#   suite_need_built FILE...  each FILE must be executable: when one is not
#                             and build is $top/build, "make all tools" once;
#                             still missing: "FAIL setup: FILE missing (make
#                             all tools)" and exit 1
#   suite_need_cmd CMD...     each CMD must be installed, else "FAIL setup:
#                             CMD not installed (tests/install-deps)", exit 1
#   suite_ok                  the suite's exit status: 0 when nothing failed
# Servers a suite starts bind loopback and are stopped by pid in its own
# cleanup trap; this file starts nothing.
set -u
top=${KM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${KM_BUILD:-$top/build}
KM_TOP=$top KM_BUILD=$build
export KM_TOP KM_BUILD
fails=0

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; fails=$((fails + 1)); }
suite_ok() { [ "$fails" -eq 0 ]; }

suite_need_built() {
	for _f; do
		[ -x "$_f" ] && continue
		[ "$build" = "$top/build" ] && make -C "$top" -s all tools >/dev/null 2>&1
		[ -x "$_f" ] || { echo "FAIL setup: $_f missing (make all tools)"; exit 1; }
	done
}

suite_need_cmd() {
	for _c; do
		command -v "$_c" >/dev/null 2>&1 ||
		    { echo "FAIL setup: $_c not installed (tests/install-deps)"; exit 1; }
	done
}
