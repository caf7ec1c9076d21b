# tests/lablib/common.sh - shared shell helpers for the lab (sourced, POSIX sh).
#
# lab_msg TEXT...          print "lab: TEXT" on stderr
# lab_die TEXT...          print and exit 1
# lab_pick_ports N         print N free TCP ports on 127.0.0.1, one per line
#                          (LAB_PORT_BASE set: BASE, BASE+1, ... each checked free)
# lab_port_free PORT       true if nothing listens on 127.0.0.1:PORT
# lab_wait_tcp PORT SECS   wait until 127.0.0.1:PORT accepts a connection
# lab_wait_unix PATH SECS  wait until the unix stream socket PATH accepts
# lab_wait_file PATH SECS  wait until PATH exists and is not empty
# lab_wait_until SECS WHAT CMD [ARG...]
#                          run CMD every 50 ms until it succeeds; after SECS
#                          print "not within SECS s: WHAT" on stderr and
#                          return 1.  The way to wait for an event in a shell
#                          test (never a bare sleep; tests/lib/ktest.py
#                          wait_for is the python one).
# lab_pid_alive PID        true if PID runs and is not a zombie
# lab_stop_pid PID [SECS]  SIGTERM PID, wait up to SECS (default 10), then SIGKILL
# lab_record_pid DIR NAME PID   remember a pid in DIR/pids/NAME.pid
# lab_stop_recorded DIR NAME    stop the pid recorded as NAME and forget it
# Only /usr/bin/python3 with its standard library is used for socket probes.

LAB_PY=/usr/bin/python3

lab_msg() { echo "lab: $*" >&2; }
lab_die() { echo "lab: error: $*" >&2; exit 1; }

lab_port_free() {
	$LAB_PY - "$1" <<'PYEOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PYEOF
}

lab_pick_ports() {
	$LAB_PY - "$1" "${LAB_PORT_BASE:-}" <<'PYEOF'
import random, socket, sys
n = int(sys.argv[1])
base = sys.argv[2]
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
out = []
if base:
    b = int(base)
    for p in range(b, b + n):
        if not free(p):
            sys.exit("port %d (from LAB_PORT_BASE) is in use" % p)
        out.append(p)
else:
    # Below Linux's ephemeral range so outgoing connections never take them.
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 2000:
            sys.exit("no free ports found")
        p = random.randrange(20000, 32000)
        if p not in out and free(p):
            out.append(p)
print("\n".join(str(p) for p in out))
PYEOF
}

lab_wait_tcp() {
	$LAB_PY - "$1" "$2" <<'PYEOF'
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        if time.time() > end:
            sys.exit(1)
        time.sleep(0.05)
PYEOF
}

lab_wait_unix() {
	$LAB_PY - "$1" "$2" <<'PYEOF'
import socket, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(1)
        s.connect(path)
        sys.exit(0)
    except OSError:
        if time.time() > end:
            sys.exit(1)
        time.sleep(0.05)
    finally:
        s.close()
PYEOF
}

lab_wait_until() {
	_wu_secs=$1 _wu_what=$2
	shift 2
	_wu_end=$(( $(date +%s%N) / 1000000 + $(echo "$_wu_secs" | awk '{ printf "%d", $1 * 1000 }') ))
	until "$@"; do
		if [ $(( $(date +%s%N) / 1000000 )) -gt "$_wu_end" ]; then
			echo "not within ${_wu_secs}s: $_wu_what" >&2
			return 1
		fi
		sleep 0.05
	done
	return 0
}

lab_wait_file() {
	lab_wait_until "$2" "$1 present and not empty" test -s "$1"
}

lab_pid_alive() {
	[ -n "$1" ] || return 1
	[ -d "/proc/$1" ] || return 1
	# A zombie has exited: it only waits for its parent to reap it.
	_st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$_st" ] && [ "$_st" != Z ]
}

lab_stop_pid() {
	_pid=$1
	_secs=${2:-10}
	lab_pid_alive "$_pid" || return 0
	kill -TERM "$_pid" 2>/dev/null
	_n=0
	while lab_pid_alive "$_pid"; do
		_n=$((_n + 1))
		if [ "$_n" -gt $((_secs * 20)) ]; then
			lab_msg "pid $_pid did not stop in ${_secs}s: SIGKILL"
			kill -KILL "$_pid" 2>/dev/null
			sleep 0.2
			break
		fi
		sleep 0.05
	done
	return 0
}

lab_record_pid() {
	mkdir -p "$1/pids"
	echo "$3" > "$1/pids/$2.pid"
}

lab_stop_recorded() {
	[ -f "$1/pids/$2.pid" ] || return 0
	_p=$(cat "$1/pids/$2.pid")
	case $_p in
	''|*[!0-9]*) lab_msg "ignoring bad pid file $1/pids/$2.pid" ;;
	*) lab_stop_pid "$_p" "${3:-10}" ;;
	esac
	rm -f "$1/pids/$2.pid"
}
