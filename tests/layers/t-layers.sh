#!/bin/sh
# t-layers - the layers point one way: base < conf < keyclient < milter,
# and kmctl (beside milter) on keyclient and below.  Two checks, each a
# PASS or FAIL line:
#   includes: no "#include" in a layer names a header of a layer above it
#             (or of the other program);
#   symbols:  no object of a layer's library needs a symbol that only a
#             library above it defines (so a wrong-way call cannot link).
# Usage: t-layers.sh [build-dir]   (run from the top of the tree)
BUILD=${1:-${KM_BUILD:-build}}
pass=0 fail=0

rank() {
	case $1 in
	base) echo 0 ;; conf) echo 1 ;; keyclient) echo 2 ;;
	milter|kmctl) echo 3 ;; *) echo 9 ;;
	esac
}

# owner HEADER - which layer folder holds it (empty when none: a system header)
owner() {
	for d in base conf keyclient milter kmctl; do
		[ -f "$d/$1" ] && { echo "$d"; return; }
	done
}

ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

# includes
up=""
for d in base conf keyclient milter kmctl; do
	r=$(rank "$d")
	for f in "$d"/*.c "$d"/*.h; do
		[ -f "$f" ] || continue
		for h in $(sed -n 's/^#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
			o=$(owner "$h")
			[ -n "$o" ] || continue
			if [ "$(rank "$o")" -gt "$r" ] || \
			    { [ "$(rank "$o")" -eq 3 ] && [ "$o" != "$d" ]; }; then
				up="$up $f->$o/$h"
			fi
		done
	done
done
if [ -z "$up" ]; then ok "includes point down"; else bad "includes point down" "$up"; fi

# symbols: what each library leaves undefined must not be defined above it
libs="libkmbase libkmconf libkmkey libkmmilter"
for l in $libs; do
	[ -f "$BUILD/$l.a" ] || { bad "symbols" "$BUILD/$l.a missing (build first)"; exit 1; }
done
defined() { nm --defined-only -g "$BUILD/$1.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u; }
needed() { nm -u "$BUILD/$1.a" 2>/dev/null | awk 'NF == 2 { print $2 }' | sort -u; }
wrong=""
set -- $libs
while [ $# -gt 1 ]; do
	low=$1; shift
	for high in "$@"; do
		w=$(needed "$low" | comm -12 - "$(defined "$high" > "$BUILD/.layers.$$"; echo "$BUILD/.layers.$$")")
		[ -z "$w" ] || wrong="$wrong $low->$high:$(echo $w | tr ' ' ',')"
	done
done
rm -f "$BUILD/.layers.$$"
if [ -z "$wrong" ]; then ok "symbols point down"; else bad "symbols point down" "$wrong"; fi

echo "tests: $pass passed, $fail failed, 0 skipped"
[ "$fail" -eq 0 ]
