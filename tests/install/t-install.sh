#!/bin/sh
# t-install - `make install` from source, as root with DESTDIR empty, does
# the package's set-up and is idempotent (issue 19, item 1).
#
# Installs into a scratch PREFIX and SYSCONFDIR (the system set-up itself
# acts on /var/lib/kmilter, /var/spool/kmilter and /run/kmilter, which must
# not exist before: the test refuses to run otherwise, and removes them at
# the end).  Checks: the user kmilter; the directories' owners and modes;
# the configuration root:kmilter 0640; the unit names PREFIX/sbin and
# SYSCONFDIR (systemd-analyze verify clean); a second `make install`
# changes nothing and keeps an edited configuration; `make uninstall`
# removes the programs and the unit but keeps the configuration.
. "$(dirname "$0")/../lib/suite.sh"	# set -u, top, pass, fail, suite_ok
skip() { echo "SKIP $1: $2"; }
check() {
	_n=$1 _w=$2
	shift 2
	if "$@"; then pass "$_n"; else fail "$_n" "$_w"; fi
}
modes() { stat -c '%n %U:%G %a' "$@" 2>&1; }

if [ "$(id -u)" != 0 ]; then
	skip install "ci-unavailable: the system set-up runs as root only"
	exit 0
fi
for p in /var/lib/kmilter /var/spool/kmilter /run/kmilter; do
	if [ -e "$p" ]; then
		fail install "$p exists: another kmilter install is here; not touching it"
		exit 1
	fi
done
W=$(mktemp -d /tmp/kmilter-t-install.XXXXXX)
chmod 0755 "$W"
cleanup() {
	rm -rf "$W" /var/lib/kmilter /var/spool/kmilter /run/kmilter
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

P=$W/usr
E=$W/etc
mk() { make -s -C "$top" "$@" PREFIX="$P" SYSCONFDIR="$E" >>"$W/make.log" 2>&1; }
if mk install; then
	pass "make install PREFIX=$P SYSCONFDIR=$E"
else
	fail "make install" "$(tail -5 "$W/make.log")"
	exit 1
fi
check "user: system user and group kmilter" "$(getent passwd kmilter)" \
	sh -c 'getent group kmilter >/dev/null && [ "$(id -u kmilter)" -lt 1000 ]'
got=$(modes /var/lib/kmilter /var/spool/kmilter /run/kmilter "$E/kmilter/kmilter.conf")
want="/var/lib/kmilter kmilter:kmilter 700
/var/spool/kmilter kmilter:kmilter 750
/run/kmilter kmilter:kmilter 755
$E/kmilter/kmilter.conf root:kmilter 640"
check "set-up: state 0700, spool 0750, /run/kmilter 0755 (kmilter), config root:kmilter 0640" \
	"$got" [ "$got" = "$want" ]
unit=$P/lib/systemd/system/kmilter.service
check "unit: Exec lines name $P/sbin and $E/kmilter, EnvironmentFile $E/default" \
	"$(grep -E '^(Exec|Environment)' "$unit" 2>&1)" \
	sh -c 'grep -q "^ExecStart=$2/sbin/kmilter -f -c $3/kmilter/kmilter.conf" "$1" &&
	    grep -q "^ExecStartPre=$2/sbin/kmilter -n -N -c $3/kmilter/kmilter.conf" "$1" &&
	    grep -q "^EnvironmentFile=-$3/default/kmilter" "$1" && ! grep -q /usr/local "$1"' \
	- "$unit" "$P" "$E"
if [ -x /usr/bin/systemd-analyze ]; then
	vout=$(systemd-analyze verify --man=no "$unit" 2>&1)
	check "unit: systemd-analyze verify is clean" "$vout" [ -z "$vout" ]
else
	skip "unit: systemd-analyze verify" "ci-unavailable: systemd-analyze is not installed"
fi
munit=$P/lib/systemd/system/kmctl-maintain.service mtimer=$P/lib/systemd/system/kmctl-maintain.timer
check "maintain: kmctl-maintain.service runs $P/sbin/kmctl -c $E/kmilter/kmilter.conf maintain, timer daily" \
	"$(grep -E '^(Exec|OnCalendar)' "$munit" "$mtimer" 2>&1)" \
	sh -c 'grep -q "^ExecStart=$3/sbin/kmctl -c $4/kmilter/kmilter.conf maintain$" "$1" &&
	    ! grep -q /usr/local "$1" && grep -q "^OnCalendar=" "$2" &&
	    grep -q "^WantedBy=timers.target" "$2"' - "$munit" "$mtimer" "$P" "$E"
if [ -x /usr/bin/systemd-analyze ]; then
	vout=$(systemd-analyze verify --man=no "$munit" "$mtimer" 2>&1)
	check "maintain: systemd-analyze verify of the service and timer is clean" "$vout" [ -z "$vout" ]
fi
check "files: programs, sample, tmpfiles.d entry, default file, man pages" "missing" \
	sh -c 'for f in sbin/kmilter sbin/kmctl share/kmilter/kmilter.conf.sample \
	    lib/tmpfiles.d/kmilter.conf libexec/kmilter/kmilter-setup share/man/man5/kmilter.conf.5 \
	    share/man/man8/kmilter.8 share/man/man8/kmctl.8; do [ -f "$1/$f" ] || exit 1; done
	    [ -f "$2/default/kmilter" ]' - "$P" "$E"

echo '# edited by the administrator' >>"$E/kmilter/kmilter.conf"
sum=$(md5sum "$E/kmilter/kmilter.conf")
if mk install; then
	got2=$(modes /var/lib/kmilter /var/spool/kmilter /run/kmilter "$E/kmilter/kmilter.conf")
	check "again: a second make install changes no owner or mode and keeps the edited config" \
		"$got2" [ "$got2:$(md5sum "$E/kmilter/kmilter.conf")" = "$want:$sum" ]
else
	fail "again" "the second make install failed: $(tail -5 "$W/make.log")"
fi

if mk uninstall; then
	left=$(find "$P/sbin" "$P/lib" "$P/libexec" -type f 2>/dev/null)
	check "uninstall: programs, unit and tmpfiles entry gone, configuration kept" "left: $left" \
		sh -c '[ -z "$1" ] && [ -f "$2/kmilter/kmilter.conf" ]' - "$left" "$E"
else
	fail uninstall "$(tail -5 "$W/make.log")"
fi
suite_ok
