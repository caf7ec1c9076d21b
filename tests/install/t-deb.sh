#!/bin/sh
# t-deb - the Debian package, installed on this machine and used as the
# README says (issue 19, items 1 and 7).
#
# Builds the .deb (make deb, in a copy of the tree), installs it with
# dpkg -i (apt-get install -f for missing dependencies), and checks what
# the postinst made: the system user kmilter, /var/lib/kmilter 0700 and
# /var/spool/kmilter 0750 owned by it, /run/kmilter 0755 (tmpfiles.d),
# /etc/kmilter/kmilter.conf a conffile root:kmilter 0640, /etc/default/kmilter,
# the unit with /usr/sbin paths (systemd-analyze verify clean), the man
# pages, and that the set-up run again changes nothing.
# Then a lab (tests/lab, LAB_MILTER=none: Postfix, Redis, two KM servers)
# whose Postfix is pointed at unix:/run/kmilter/kmilter.sock as the README
# says; /etc/kmilter/kmilter.conf points at the lab's KM and Redis; the
# gateway key is made with the README's command; kmilter is started as
# the unit starts it (its ExecStartPre and ExecStart, /etc/default/kmilter,
# its UMask and CapabilityBoundingSet through setpriv) without systemd.  A
# message from an internal user is delivered signed; kmilter runs as
# kmilter; a SIGHUP rereads the configuration after the privilege drop.
# kmilter is stopped by pid, the lab taken down, the package purged (also
# on failure: trap), and the purge checked: state, spool, /run/kmilter,
# /etc/kmilter gone; the user stays.
# Runs as root; it refuses to touch a kmilter package it did not install.
. "$(dirname "$0")/../lib/suite.sh"	# set -u, top, pass, fail, suite_ok
skip() { echo "SKIP $1: $2"; }
# check NAME WHY CMD... - PASS when CMD succeeds, else FAIL NAME: WHY
check() {
	_n=$1 _w=$2
	shift 2
	if "$@"; then pass "$_n"; else fail "$_n" "$_w"; fi
}
# readme_block NAME - the fenced block after "<!-- t-deb: NAME -->" in README.md
readme_block() {
	awk -v tag="<!-- t-deb: $1 -->" '
		$0 == tag { found = 1; next }
		found && /^```/ { if (inside) exit; inside = 1; next }
		inside { print }' "$top/README.md"
}
# mode_is PATH OWNER:GROUP MODE
mode_is() {
	[ "$(stat -c '%U:%G %a' "$1" 2>/dev/null)" = "$2 $3" ]
}

if [ "$(id -u)" != 0 ]; then
	skip deb "ci-unavailable: installs a package: runs as root only"
	exit 0
fi
if dpkg-query -W -f='${Status}' kmilter 2>/dev/null | grep -q 'installed\|config-files'; then
	fail deb "a kmilter package is already on this machine: not touching it (dpkg --purge kmilter)"
	exit 1
fi
for p in /etc/kmilter /var/lib/kmilter /var/spool/kmilter /run/kmilter; do
	if [ -e "$p" ]; then
		fail deb "$p exists: another kmilter install is here; not touching it"
		exit 1
	fi
done

W=$(mktemp -d /tmp/kmilter-t-deb.XXXXXX)
chmod 0755 "$W"
LAB=$W/lab
kpid=""
installed=0
labup=0
cleanup() {
	if [ -n "$kpid" ] && kill -0 "$kpid" 2>/dev/null; then
		kill -TERM "$kpid" 2>/dev/null
		_i=0
		while kill -0 "$kpid" 2>/dev/null && [ $_i -lt 100 ]; do
			sleep 0.1; _i=$((_i + 1))
		done
		kill -KILL "$kpid" 2>/dev/null
	fi
	[ "$labup" = 1 ] && "$top/tests/lab" down "$LAB" >/dev/null 2>&1
	[ "$installed" = 1 ] && dpkg --purge kmilter >/dev/null 2>&1
	# the organization CA the README's commands made (none was here before)
	rm -rf /etc/kmilter
	rm -rf "$W"
}
trap 'cleanup' EXIT
trap 'exit 1' INT TERM HUP

# ---------------------------------------------------------------- build
src=$W/src/kmilter
mkdir -p "$src"
tar -C "$top" --exclude=./.git --exclude='./build*' --exclude=./milter/kmilter \
	--exclude=./kmctl/kmctl --exclude=./lab -cf - . | tar -C "$src" -xf -
t0=$(date +%s)
if (cd "$src" && make deb) >"$W/build.log" 2>&1; then
	deb=$(ls "$W"/src/kmilter_*_*.deb 2>/dev/null | head -1)
else
	deb=""
fi
if [ -z "$deb" ]; then
	fail build "make deb failed: $(tail -5 "$W/build.log")"
	exit 1
fi
pass "build: make deb made $(basename "$deb") in $(( $(date +%s) - t0 ))s"
if command -v lintian >/dev/null; then
	lout=$(lintian "$W"/src/kmilter_*.changes 2>&1 | grep -v 'running with root privileges')
	check "lintian: no error or warning" "$lout" [ -z "$lout" ]
else
	fail lintian "lintian is not installed (tests/install-deps)"
fi

# -------------------------------------------------------------- install
installed=1
if ! dpkg -i "$deb" >"$W/install.log" 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -f -y -q >>"$W/install.log" 2>&1
fi
st=$(dpkg-query -W -f='${Status}' kmilter 2>/dev/null)
if [ "$st" != "install ok installed" ]; then
	fail install "dpkg -i: status '$st': $(tail -5 "$W/install.log")"
	exit 1
fi
pass "install: dpkg -i"

check "user: system user and group kmilter, no login" "$(getent passwd kmilter)" \
	sh -c 'getent group kmilter >/dev/null && u=$(id -u kmilter) && [ "$u" -lt 1000 ] &&
	    case $(getent passwd kmilter | cut -d: -f7) in */nologin|*/false) true;; *) false;; esac'
check "dirs: /var/lib/kmilter kmilter:kmilter 0700" "$(stat -c '%U:%G %a' /var/lib/kmilter 2>&1)" \
	mode_is /var/lib/kmilter kmilter:kmilter 700
check "dirs: /var/spool/kmilter kmilter:kmilter 0750" "$(stat -c '%U:%G %a' /var/spool/kmilter 2>&1)" \
	mode_is /var/spool/kmilter kmilter:kmilter 750
check "dirs: /run/kmilter kmilter:kmilter 0755 (tmpfiles.d)" "$(stat -c '%U:%G %a' /run/kmilter 2>&1)" \
	mode_is /run/kmilter kmilter:kmilter 755
check "conf: /etc/kmilter/kmilter.conf root:kmilter 0640" \
	"$(stat -c '%U:%G %a' /etc/kmilter/kmilter.conf 2>&1)" \
	mode_is /etc/kmilter/kmilter.conf root:kmilter 640
conff=$(dpkg-query -W -f='${Conffiles}' kmilter)
check "conf: kmilter.conf and default/kmilter are conffiles" "$conff" \
	sh -c 'echo "$1" | grep -q " /etc/kmilter/kmilter.conf " &&
	    echo "$1" | grep -q " /etc/default/kmilter "' - "$conff"
unit=/lib/systemd/system/kmilter.service
check "unit: ExecStart and ExecStartPre run /usr/sbin/kmilter, nothing in /usr/local" \
	"$(grep -E '^Exec|/usr/local' "$unit" 2>&1)" \
	sh -c 'grep -q "^ExecStart=/usr/sbin/kmilter " "$1" &&
	    grep -q "^ExecStartPre=/usr/sbin/kmilter -n " "$1" && ! grep -q /usr/local "$1"' - "$unit"
if [ -x /usr/bin/systemd-analyze ]; then
	vout=$(systemd-analyze verify --man=no "$unit" 2>&1)
	check "unit: systemd-analyze verify is clean" "$vout" [ -z "$vout" ]
else
	skip "unit: systemd-analyze verify" "ci-unavailable: systemd-analyze is not installed"
fi
munit=/lib/systemd/system/kmctl-maintain.service mtimer=/lib/systemd/system/kmctl-maintain.timer
check "maintain: kmctl-maintain.service runs /usr/sbin/kmctl maintain, its timer daily, both disabled" \
	"$(grep -E '^(Exec|OnCalendar)|/usr/local' "$munit" "$mtimer" 2>&1) $(systemctl is-enabled kmctl-maintain.timer 2>&1)" \
	sh -c 'grep -q "^ExecStart=/usr/sbin/kmctl -c /etc/kmilter/kmilter.conf maintain$" "$1" &&
	    ! grep -q /usr/local "$1" && grep -q "^OnCalendar=" "$2" &&
	    grep -q "^WantedBy=timers.target" "$2" &&
	    { ! [ -d /run/systemd/system ] || [ "$(systemctl is-enabled kmctl-maintain.timer 2>/dev/null)" != enabled ]; }' \
	- "$munit" "$mtimer"
if [ -x /usr/bin/systemd-analyze ]; then
	vout=$(systemd-analyze verify --man=no "$munit" "$mtimer" 2>&1)
	check "maintain: systemd-analyze verify of the service and timer is clean" "$vout" [ -z "$vout" ]
fi
check "man: kmilter(8), kmilter.conf(5), kmctl(8) installed" "missing" \
	sh -c '[ -f /usr/share/man/man8/kmilter.8.gz ] && [ -f /usr/share/man/man5/kmilter.conf.5.gz ] &&
	    [ -f /usr/share/man/man8/kmctl.8.gz ]'
before=$(stat -c '%n %U:%G %a' /var/lib/kmilter /var/spool/kmilter /run/kmilter /etc/kmilter/kmilter.conf)
/usr/libexec/kmilter/kmilter-setup /etc/kmilter/kmilter.conf /usr/lib/tmpfiles.d/kmilter.conf \
	>"$W/setup2.log" 2>&1
rc=$?
after=$(stat -c '%n %U:%G %a' /var/lib/kmilter /var/spool/kmilter /run/kmilter /etc/kmilter/kmilter.conf)
check "postinst: the set-up run again exits 0 and changes nothing" "rc $rc: $(cat "$W/setup2.log") $after" \
	[ "$rc:$before" = "0:$after" ]

# ------------------------------------------------------------ the lab
# kmctl and kmilter from the package: the lab's KM_BUILD points at them.
mkdir -p "$W/bin"
ln -s /usr/sbin/kmilter "$W/bin/kmilter"
ln -s /usr/sbin/kmctl "$W/bin/kmctl"
if env KM_BUILD="$W/bin" LAB_MILTER=none "$top/tests/lab" up "$LAB" >"$W/lab.log" 2>&1; then
	labup=1
	pass "lab: up (Postfix, Redis, KM servers)"
else
	labup=1
	fail lab "tests/lab up: $(tail -5 "$W/lab.log")"
	exit 1
fi
. "$LAB/env"

# /etc/kmilter/kmilter.conf: the lab's km and cache groups, the package's
# paths (socket in /run/kmilter for Postfix's group, state and spool
# defaults, pid file), logging to stderr (no syslog here).
{
	cat <<CONF
milter: {
	socket = "unix:/run/kmilter/kmilter.sock";
	socket_group = "postfix";
	pidfile = "/run/kmilter/kmilter.pid";
};
log: { stderr = true; verbose = 1; };
CONF
	sed -n '/^policy: {/,$p' "$LAB_CONF" | grep -v 'org_ca_'
} >/etc/kmilter/kmilter.conf
# The README's commands, word for word: the organization CA, then its two
# lines in the km group.
orgca=$(readme_block orgca)
cout=$(sh -ec "$orgca" 2>&1)
rc=$?
check "readme: the organization CA block runs (ca.key kmilter 0600)" "rc $rc: $orgca: $cout" \
	sh -c '[ "$1" = 0 ] && [ "$(stat -c "%U %a" /etc/kmilter/orgca/ca.key)" = "kmilter 600" ] &&
	    openssl x509 -noout -in /etc/kmilter/orgca/ca.crt' - "$rc"
sed -i "/^km: {/a\\
	org_ca_cert = \"/etc/kmilter/orgca/ca.crt\";\\
	org_ca_key = \"/etc/kmilter/orgca/ca.key\";" /etc/kmilter/kmilter.conf
keys=$(readme_block keys)
kgout=$(sh -ec "$keys" 2>&1)
rc=$?
check "readme: the keys block (kmctl keygen as kmilter, kmilter -n) runs; gateway.key kmilter 0600" \
	"rc $rc: $kgout $(stat -c '%U:%G %a' /var/lib/kmilter/gateway.key 2>&1)" \
	sh -c '[ "$1" = 0 ] && [ "$(stat -c "%U:%G %a" /var/lib/kmilter/gateway.key)" = "kmilter:kmilter 600" ]' \
	- "$rc"
SENDER=alice@example.com
enr=$( { runuser -u kmilter -- kmctl enroll $SENDER &&
	runuser -u kmilter -- kmctl signing-enroll $SENDER; } 2>&1)
rc=$?
check "kmctl: enroll and signing-enroll $SENDER with the installed kmctl" "rc $rc: $enr" \
	[ "$rc" = 0 ]

# Postfix as the README says
pcf=$LAB_POSTFIX_CONF/main.cf
sed -i -e '/^smtpd_milters *=/d' -e '/^non_smtpd_milters *=/d' -e '/^milter_default_action *=/d' "$pcf"
cat >>"$pcf" <<'PCF'
smtpd_milters = unix:/run/kmilter/kmilter.sock
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
milter_protocol = 6
PCF
postfix -c "$LAB_POSTFIX_CONF" reload >>"$W/lab.log" 2>&1

# kmilter as the unit starts it: the unit's own command lines, environment
# file, umask and capability bounding set; no systemd needed.
uval() { sed -n "s/^$1=//p" "$unit" | tail -1; }
KMILTER_OPTS=""
. /etc/default/kmilter
pre=$(uval ExecStartPre)
start=$(uval ExecStart | sed "s|\$KMILTER_OPTS|$KMILTER_OPTS|")
caps=$(uval CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
umask_u=$(uval UMask)
pout=$($pre 2>&1)
rc=$?
check "unit: ExecStartPre ($pre) accepts the configuration" "$pout" [ $rc = 0 ]
klog=$W/kmilter.log
# start_kmilter SOCK - start it as the unit does; wait for SOCK
start_kmilter() {
	(umask "$umask_u" && exec setsid setpriv --no-new-privs --bounding-set "-all,$caps" -- $start) \
		</dev/null >>"$klog" 2>&1 &
	kpid=$!
	i=0
	while [ $i -lt 150 ] && [ ! -S "$1" ] && kill -0 "$kpid" 2>/dev/null; do
		sleep 0.1; i=$((i + 1))
	done
	[ -S "$1" ]
}
# stop_kmilter WHAT - SIGTERM by pid, wait for the exit
stop_kmilter() {
	if ! kill -0 "$kpid" 2>/dev/null; then
		fail "stop: $1" "kmilter $kpid was not running before SIGTERM: $(tail -3 "$klog")"
		return
	fi
	kill -TERM "$kpid" 2>/dev/null
	i=0
	while kill -0 "$kpid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	if kill -0 "$kpid" 2>/dev/null; then
		fail "stop: $1" "kmilter $kpid still runs 30s after SIGTERM"
	else
		pass "stop: $1: kmilter $kpid ended on SIGTERM"
		kpid=""
	fi
}
# send_signed SUBJECT - a message from SENDER through Postfix: "signed QID"
send_signed() {
	KM_TOP="$top" python3 - "$LAB" "$SENDER" "$1" <<'PY' 2>&1
import os, subprocess, sys
sys.path.insert(0, os.path.join(os.environ["KM_TOP"], "tests", "lib"))
import labsmtp
env = labsmtp.load_env(sys.argv[1])
raw = labsmtp.make_message(sys.argv[2], ["bob@partner.example"], sys.argv[3],
                           "signed by the packaged kmilter\r\n")
try:
    qid = labsmtp.submit(env, sys.argv[2], ["bob@partner.example"], raw)
except Exception as e:
    sys.exit("not accepted: %r" % (e,))
try:
    path = labsmtp.wait_delivered(env, qid, timeout=60)
except labsmtp.LabError as e:
    sys.exit(str(e))
msg = labsmtp.read_delivered(path)[1]
head = labsmtp.split_message(msg)[0].lower()
if b"multipart/signed" not in head:
    sys.exit("delivered unsigned: %r" % head[:300])
r = subprocess.run(["openssl", "smime", "-verify", "-noverify"], input=msg,
                   capture_output=True)
if r.returncode != 0:
    sys.exit("openssl smime -verify: %s" % r.stderr.decode()[-200:])
print("signed", qid)
PY
}
is_signed() { case "$1" in signed*) true;; *) false;; esac; }

if start_kmilter /run/kmilter/kmilter.sock; then
	pass "start: $start (bounding set $caps, umask $umask_u) opened /run/kmilter/kmilter.sock"
else
	fail start "no socket within 15s: $(tail -5 "$klog")"
fi
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$kpid/status" 2>/dev/null)
check "start: kmilter runs as the user kmilter after the drop" "uid '$uid'" \
	[ "$uid" = "$(id -u kmilter)" ]
check "start: socket kmilter:postfix 0660, pid file in /run/kmilter" \
	"$(stat -c '%U:%G %a' /run/kmilter/kmilter.sock 2>&1) $(ls /run/kmilter 2>&1)" \
	sh -c 'mode_ok=$(stat -c "%U:%G %a" /run/kmilter/kmilter.sock) &&
	    [ "$mode_ok" = "kmilter:postfix 660" ] && [ "$(cat /run/kmilter/kmilter.pid)" = "$1" ]' - "$kpid"

sent=$(send_signed "t-deb signed")
check "mail: a message from $SENDER through Postfix is delivered signed (openssl smime -verify)" \
	"$sent $(tail -3 "$klog")" is_signed "$sent"

# SIGHUP after the drop: the configuration (root:kmilter 0640) is read again
kill -HUP "$kpid" 2>/dev/null
i=0
while [ $i -lt 100 ] && ! grep -qi 'reload' "$klog"; do sleep 0.1; i=$((i + 1)); done
check "reload: SIGHUP as kmilter rereads /etc/kmilter/kmilter.conf" "$(grep -i reload "$klog" | tail -2)" \
	sh -c 'grep -qi "reloaded" "$1" && ! grep -qi "denied" "$1"' - "$klog"
stop_kmilter "/run/kmilter socket"

# A chrooted smtpd, as the README says: the socket in the queue directory
# (the lab's, in place of /var/spool/postfix), named relative to it.
q=$(postconf -c "$LAB_POSTFIX_CONF" -h queue_directory)
install -d -o kmilter -g postfix -m 0750 "$q/kmilter"
sed -i "s|^\tsocket = \"unix:/run/kmilter/kmilter.sock\";|\tsocket = \"unix:$q/kmilter/kmilter.sock\";|" \
	/etc/kmilter/kmilter.conf
sed -i 's|^smtpd_milters = unix:/run/kmilter/kmilter.sock|smtpd_milters = unix:kmilter/kmilter.sock|' "$pcf"
sed -i 's|^\(127\.0\.0\.1:[0-9]* *inet *n *- *\)n\( *- *- *smtpd\)|\1y\2|' "$LAB_POSTFIX_CONF/master.cf"
postfix -c "$LAB_POSTFIX_CONF" reload >>"$W/lab.log" 2>&1
if start_kmilter "$q/kmilter/kmilter.sock"; then
	sent=$(send_signed "t-deb chroot")
	smtpd=$(pgrep -u postfix -x smtpd | while read -r p; do
		[ "$(readlink "/proc/$p/root")" = "$q" ] && echo "$p"; done | head -1)
	check "chroot: smtpd chrooted in $q reaches unix:kmilter/kmilter.sock; the mail is signed" \
		"smtpd in chroot: '${smtpd}'; $sent $(tail -3 "$klog")" \
		sh -c '[ -n "$1" ] && case "$2" in signed*) true;; *) false;; esac' - "$smtpd" "$sent"
else
	fail chroot "no socket $q/kmilter/kmilter.sock within 15s: $(tail -5 "$klog")"
fi
stop_kmilter "socket in the queue directory"
"$top/tests/lab" down "$LAB" >/dev/null 2>&1
labup=0

# ---------------------------------------------------------------- purge
pout=$(dpkg --purge kmilter 2>&1)
rc=$?
installed=0
check "purge: dpkg --purge kmilter" "$pout" [ $rc = 0 ]
left=""
for p in /usr/sbin/kmilter /usr/sbin/kmctl /etc/kmilter/kmilter.conf /etc/default/kmilter \
    /var/lib/kmilter /var/spool/kmilter /run/kmilter $unit $munit $mtimer /usr/lib/tmpfiles.d/kmilter.conf \
    /usr/libexec/kmilter; do
	[ -e "$p" ] && left="$left $p"
done
check "purge: binaries, configuration, state, spool, /run/kmilter, unit removed" "left:$left" \
	[ -z "$left" ]
check "purge: the user kmilter stays (Debian keeps system users)" "gone" \
	sh -c 'getent passwd kmilter >/dev/null'
check "purge: /etc/kmilter keeps only the administrator's organization CA" "$(ls -A /etc/kmilter 2>&1)" \
	[ "$(ls -A /etc/kmilter 2>&1)" = orgca ]
rm -rf /etc/kmilter/orgca
rmdir /etc/kmilter 2>/dev/null
suite_ok
