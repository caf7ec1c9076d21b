# km.sh - KM (PyKMIP) part of the kmilter test lab.  Source it; POSIX sh.
#
#   km_pki DIR [OWNER]     CA, server cert (SAN IP:127.0.0.1, DNS:localhost),
#                          client certs CN=kmilter and CN=intruder (EKU
#                          clientAuth) under DIR/pki; keys mode 0600; the
#                          kmilter client key/cert chowned to OWNER if given.
#                          Also DIR/pki/other-ca.crt: an unrelated CA, for
#                          negative tests.  Does nothing if DIR/pki/ca.crt exists.
#   km_start DIR NAME PORT start a PyKMIP server on 127.0.0.1:PORT with its
#                          state in DIR/NAME (server.conf, pykmip.db, log,
#                          pid); waits (max 20 s) until it accepts TLS.
#   km_stop DIR NAME       stop that server's process group (TERM, KILL
#                          after 5 s).
# All functions return non-zero with a message on stderr on failure.

KM_PYKMIP_SERVER=${KM_PYKMIP_SERVER:-/usr/bin/pykmip-server}

# km__cert DIR NAME CN EXT - a key (0600) and a cert signed by DIR/ca
km__cert() {
	_d=$1 _n=$2 _cn=$3 _ext=$4
	[ -s "$_d/$_n.key" ] || km__key "$_d/$_n.key" || return 1
	openssl req -new -key "$_d/$_n.key" -subj "/O=kmilter lab/CN=$_cn" \
	    -out "$_d/$_n.csr" 2>/dev/null || return 1
	printf '%s\n' "$_ext" > "$_d/$_n.ext"
	openssl x509 -req -in "$_d/$_n.csr" -CA "$_d/ca.crt" -CAkey "$_d/ca.key" \
	    -CAserial "$_d/$_n.srl" -CAcreateserial -days 825 -sha256 -extfile "$_d/$_n.ext" \
	    -out "$_d/$_n.crt" 2>/dev/null || return 1
	rm -f "$_d/$_n.csr" "$_d/$_n.ext" "$_d/$_n.srl"
	chmod 600 "$_d/$_n.key"
}

# km__key FILE - a new RSA key, mode 0600
km__key() {
	( umask 077 && openssl genrsa -out "$1" 2048 2>/dev/null )
}

km_pki() {
	_dir=$1 _owner=${2:-}
	_p=$_dir/pki
	if [ -f "$_p/ca.crt" ]; then return 0; fi
	mkdir -p "$_p" || return 1
	# The five RSA keys are made at once (key generation is most of the
	# lab's start-up time), then the certificates.
	_jobs=""
	for _k in ca server kmilter intruder other-ca; do
		km__key "$_p/$_k.key" & _jobs="$_jobs $!"
	done
	for _j in $_jobs; do
		wait "$_j" || { echo "km_pki: cannot create the RSA keys" >&2; return 1; }
	done
	openssl req -x509 -new -key "$_p/ca.key" -days 3650 -sha256 \
	    -subj "/O=kmilter lab/CN=kmilter lab KM CA" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -out "$_p/ca.crt" 2>/dev/null || { echo "km_pki: cannot create CA" >&2; return 1; }
	km__cert "$_p" server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost" || { echo "km_pki: server cert failed" >&2; return 1; }
	for _cn in kmilter intruder; do
		km__cert "$_p" "$_cn" "$_cn" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" || { echo "km_pki: $_cn cert failed" >&2; return 1; }
	done
	# an unrelated CA for "wrong CA" tests
	openssl req -x509 -new -key "$_p/other-ca.key" -days 3650 \
	    -subj "/CN=some other CA" -out "$_p/other-ca.crt" 2>/dev/null || {
		echo "km_pki: other CA failed" >&2; return 1; }
	if [ -n "$_owner" ]; then
		chown "$_owner" "$_p/kmilter.key" "$_p/kmilter.crt" || return 1
	fi
	return 0
}

# km__port_open PORT - does 127.0.0.1:PORT accept a TLS handshake
km__port_open() {
	/usr/bin/python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.close()
EOF
}

km_start() {
	_dir=$1 _name=$2 _port=$3
	_s=$_dir/$_name
	if [ -z "$_port" ]; then echo "km_start: usage: km_start DIR NAME PORT" >&2; return 1; fi
	if [ ! -x "$KM_PYKMIP_SERVER" ]; then
		echo "km_start: $KM_PYKMIP_SERVER missing (apt-get install python3-pykmip)" >&2
		return 1
	fi
	mkdir -p "$_s/policies" || return 1
	cat > "$_s/server.conf" <<EOF
[server]
hostname=127.0.0.1
port=$_port
certificate_path=$_dir/pki/server.crt
key_path=$_dir/pki/server.key
ca_path=$_dir/pki/ca.crt
auth_suite=TLS1.2
policy_path=$_s/policies
enable_tls_client_auth=True
tls_cipher_suites=
    TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
    TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384
    TLS_RSA_WITH_AES_128_CBC_SHA256
logging_level=INFO
database_path=$_s/pykmip.db
EOF
	setsid "$KM_PYKMIP_SERVER" -f "$_s/server.conf" -l "$_s/server.log" \
	    >"$_s/stdout.log" 2>&1 </dev/null &
	echo $! > "$_s/pid"
	_i=0
	while [ $_i -lt 200 ]; do
		if km__port_open "$_port"; then return 0; fi
		if ! kill -0 "$(cat "$_s/pid")" 2>/dev/null; then
			echo "km_start: $_name exited; see $_s/stdout.log and $_s/server.log" >&2
			return 1
		fi
		sleep 0.1
		_i=$((_i + 1))
	done
	echo "km_start: $_name not listening on 127.0.0.1:$_port after 20 s" >&2
	return 1
}

km_stop() {
	_dir=$1 _name=$2
	_pf=$_dir/$_name/pid
	[ -f "$_pf" ] || return 0
	_pid=$(cat "$_pf")
	case $_pid in ''|*[!0-9]*) rm -f "$_pf"; return 0;; esac
	kill -TERM "-$_pid" 2>/dev/null || kill -TERM "$_pid" 2>/dev/null
	_i=0
	while kill -0 "-$_pid" 2>/dev/null && [ $_i -lt 50 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	kill -KILL "-$_pid" 2>/dev/null
	rm -f "$_pf"
	return 0
}
