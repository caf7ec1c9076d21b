# tests/lablib/sentinel.sh - Redis Sentinel for the lab (sourced; needs
# common.sh and redis.sh): the lab's Redis (redis_start) is the master, a
# replica and three redis-sentinel processes join it, all on 127.0.0.1.
#
# sentinel_up DIR REPLICA_PORT S1 S2 S3
#        make the lab's Redis a master that can become a replica (masterauth),
#        start a replica of it on REPLICA_PORT (pid name redis-replica, files
#        in DIR/redis-replica) and Sentinels on S1 S2 S3 (pid names
#        sentinel-1..3, files in DIR/sentinel/N) monitoring it as master
#        SENTINEL_MASTER with quorum 2, down-after SENTINEL_DOWN_MS (default
#        1000) and failover-timeout SENTINEL_FAILOVER_MS (default 3000); the
#        Sentinels ask for the password in DIR/sentinel/password.  Waits
#        until each Sentinel knows the master and the replica.
# sentinel_redis_start DIR NAME   start the Redis named NAME again (redis:
#        the first master; redis-replica) from its files, as it was
#        configured: the Sentinels turn an old master into a replica.
# sentinel_list PORT...  the items of cache.redis.sentinels for those ports
# Everything is recorded under DIR/pids and stopped by pid with the lab.
SENTINEL_MASTER=kmilter

sentinel_list() {
	[ $# -gt 0 ] || return 0
	printf '"127.0.0.1:%s", ' "$@" | sed 's/, $//'
}

# sentinel_cli PORT ARGS... - redis-cli to a Sentinel with its password
sentinel_cli() {
	_sp=$1; shift
	REDISCLI_AUTH=$(cat "$DIR/sentinel/password") \
		redis-cli -h 127.0.0.1 -p "$_sp" "$@" 2>/dev/null
}

# sentinel_redis_start DIR NAME - (re)start a Redis of the set by name
sentinel_redis_start() {
	_sd=$1/$2
	_pw=$(cat "$1/redis/password")
	rm -f "$_sd/redis.sock"
	# masterauth on the command line: a master that comes back is made a
	# replica by the Sentinels and must AUTH to the new master.
	setsid redis-server "$_sd/redis.conf" --masterauth "$_pw" \
		</dev/null >>"$_sd/redis.log" 2>&1 &
	lab_record_pid "$1" "$2" $!
	_port=$(awk '$1 == "port" { print $2 }' "$_sd/redis.conf")
	lab_wait_tcp "$_port" 15
}

# replica_conf DIR PORT MASTER_PORT - the replica's redis.conf
replica_conf() {
	_rd=$1/redis-replica
	mkdir -p "$_rd"
	chmod 0700 "$_rd"
	_pw=$(cat "$1/redis/password")
	( umask 077; cat > "$_rd/redis.conf" <<RCONF
bind 127.0.0.1
protected-mode yes
port $2
pidfile $_rd/redis.pid
dir $_rd
logfile $_rd/redis.log
daemonize no
save ""
appendonly no
databases 4
requirepass $_pw
replicaof 127.0.0.1 $3
RCONF
	)
}

# sentinel_conf DIR N PORT MASTER_PORT - Sentinel N's configuration (it
# rewrites the file itself as it learns)
sentinel_conf() {
	_sd=$1/sentinel/$2
	mkdir -p "$_sd"
	chmod 0700 "$_sd"
	( umask 077; cat > "$_sd/sentinel.conf" <<SCONF
bind 127.0.0.1
port $3
daemonize no
pidfile $_sd/sentinel.pid
logfile $_sd/sentinel.log
dir $_sd
requirepass $(cat "$1/sentinel/password")
sentinel sentinel-pass $(cat "$1/sentinel/password")
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $4 2
sentinel auth-pass $SENTINEL_MASTER $(cat "$1/redis/password")
sentinel down-after-milliseconds $SENTINEL_MASTER ${SENTINEL_DOWN_MS:-1000}
sentinel failover-timeout $SENTINEL_MASTER ${SENTINEL_FAILOVER_MS:-3000}
sentinel parallel-syncs $SENTINEL_MASTER 1
SCONF
	)
}

# sentinel_up DIR REPLICA_PORT S1 S2 S3 - see above
sentinel_up() {
	_dir=$1 _rp=$2
	shift 2
	command -v redis-sentinel >/dev/null 2>&1 ||
		{ lab_msg "no redis-sentinel: run tests/install-deps"; return 1; }
	_mport=$(awk '$1 == "port" { print $2 }' "$_dir/redis/redis.conf")
	_pw=$(cat "$_dir/redis/password")
	REDISCLI_AUTH=$_pw redis-cli -s "$_dir/redis/redis.sock" \
		config set masterauth "$_pw" >/dev/null || return 1
	mkdir -p "$_dir/sentinel"
	if [ ! -s "$_dir/sentinel/password" ]; then
		( umask 027; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' \
			> "$_dir/sentinel/password" )
	fi
	chgrp kmilter "$_dir/sentinel" "$_dir/sentinel/password" 2>/dev/null
	chmod 0750 "$_dir/sentinel"
	chmod 0640 "$_dir/sentinel/password"
	replica_conf "$_dir" "$_rp" "$_mport"
	setsid redis-server "$_dir/redis-replica/redis.conf" \
		--masterauth "$_pw" </dev/null >/dev/null 2>&1 &
	lab_record_pid "$_dir" redis-replica $!
	_n=0
	for _p; do
		_n=$((_n + 1))
		sentinel_conf "$_dir" $_n "$_p" "$_mport"
		setsid redis-sentinel "$_dir/sentinel/$_n/sentinel.conf" \
			</dev/null >/dev/null 2>&1 &
		lab_record_pid "$_dir" sentinel-$_n $!
	done
	lab_wait_tcp "$_rp" 15 || { lab_msg "the replica did not start"; return 1; }
	for _p; do
		lab_wait_tcp "$_p" 15 || { lab_msg "Sentinel $_p did not start"; return 1; }
	done
	# Ready when every Sentinel sees the replica and the other two.
	_deadline=$(( $(date +%s) + 30 ))
	for _p; do
		while :; do
			_info=$(sentinel_cli "$_p" sentinel master $SENTINEL_MASTER | tr '\n' ' ')
			case $_info in
			*" num-slaves 1 "*"num-other-sentinels 2 "*) break ;;
			esac
			[ "$(date +%s)" -lt "$_deadline" ] || {
				lab_msg "Sentinel $_p does not see the set within 30s: $_info"
				return 1
			}
			sleep 0.1
		done
	done
}
