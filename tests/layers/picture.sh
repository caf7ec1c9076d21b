#!/bin/sh
# picture.sh - which layer's files include which layer's headers, as counts
# (rows include columns).  Run from the top of the tree.  A number above
# the diagonal (to the right of a row's own layer) is an include pointing up.
layers="base conf keyclient milter kmctl"
owner() {
	for d in $layers; do [ -f "$d/$1" ] && { echo "$d"; return; }; done
}
printf '%-10s' "from\\to"; for t in $layers; do printf '%10s' "$t"; done; echo
for d in $layers; do
	printf '%-10s' "$d"
	incs=$(sed -n 's/^#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$d"/*.c "$d"/*.h 2>/dev/null)
	for t in $layers; do
		n=0
		for h in $incs; do [ "$(owner "$h")" = "$t" ] && n=$((n + 1)); done
		printf '%10s' "$n"
	done
	echo
done
