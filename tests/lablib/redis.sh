# tests/lablib/redis.sh - a private redis-server for the lab (sourced; needs common.sh).
#
# redis_start DIR PORT   write DIR/redis/redis.conf and a generated password in
#                        DIR/redis/password, start redis-server bound to
#                        127.0.0.1:PORT and the unix socket DIR/redis/redis.sock
#                        (mode 0770, group kmilter when that group exists),
#                        wait until it answers PING with AUTH, record its pid.
# redis_stop DIR         stop it by the recorded pid and wait until it is gone.
# Persistence is off (save "", appendonly no): the cache is disposable.

redis_start() {
	_rd=$1/redis
	_rport=$2
	mkdir -p "$_rd"
	# Files created in a set-gid directory take its group: that makes the
	# socket (0770) reachable by the kmilter user without running redis as it.
	if getent group kmilter >/dev/null 2>&1; then
		chgrp kmilter "$_rd"
		chmod 2750 "$_rd"
	else
		chmod 0700 "$_rd"
	fi
	if [ ! -s "$_rd/password" ]; then
		( umask 027; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$_rd/password" )
	fi
	chmod 0640 "$_rd/password"
	_rpass=$(cat "$_rd/password")
	( umask 077; cat > "$_rd/redis.conf" <<RCONF
bind 127.0.0.1
protected-mode yes
port $_rport
unixsocket $_rd/redis.sock
unixsocketperm 770
pidfile $_rd/redis.pid
dir $_rd
logfile $_rd/redis.log
daemonize no
save ""
appendonly no
databases 4
requirepass $_rpass
RCONF
	)
	rm -f "$_rd/redis.sock"
	setsid redis-server "$_rd/redis.conf" </dev/null >>"$_rd/redis.log" 2>&1 &
	lab_record_pid "$1" redis $!
	_n=0
	while :; do
		if [ -S "$_rd/redis.sock" ] && \
		   [ "$(REDISCLI_AUTH=$_rpass redis-cli -s "$_rd/redis.sock" ping 2>/dev/null)" = PONG ]; then
			break
		fi
		_n=$((_n + 1))
		if [ "$_n" -gt 200 ] || ! lab_pid_alive "$(cat "$1/pids/redis.pid")"; then
			tail -5 "$_rd/redis.log" >&2
			return 1
		fi
		sleep 0.05
	done
	return 0
}

redis_stop() {
	lab_stop_recorded "$1" redis 10
}
