# kmpair.sh - the set-up the kmctl suites share (t-kmctl, t-maintain, t-lifecycle,
# t-ban, t-export): two real
# PyKMIP servers on 127.0.0.1 (km.sh), an organization CA, and a
# kmilter.conf naming them.  Source it after tests/lib/suite.sh and
# km.sh, then call
#	kmpair_up NAME DEFAULT_PORT_BASE
# which sets lab (a temporary directory, removed at exit with both
# servers stopped by pid), p1, p2, pki, conf, K (kmctl -c conf),
# P (keymodel-probe -c conf), out, err, and defines run CMD...
# (output to $out/$err, status in $rc), has TEXT, why, now_ms and
# gens ADDR.  KM_PORT_BASE overrides the
# port base, KM_IO_TIMEOUT_MS kmctl's KM I/O timeout (5000).  Exits with a FAIL line when a server or the CA cannot be made.

kmpair_cleanup() {
	km_stop "$lab" km1
	km_stop "$lab" km2
	rm -rf "$lab"
}

kmpair_up() {
	lab=$(mktemp -d "/tmp/$1.XXXXXX")
	base=${KM_PORT_BASE:-$(($2 + $$ % 1000 * 10))}
	p1=$base p2=$((base + 1))
	# a signal ends the suite; its exit runs the clean-up once
	trap kmpair_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	km_pki "$lab" || { echo "FAIL pki"; exit 1; }
	km_start "$lab" km1 "$p1" || { echo "FAIL start km1"; exit 1; }
	km_start "$lab" km2 "$p2" || { echo "FAIL start km2"; exit 1; }
	pki=$lab/pki

	# the organization's CA, which issues users' certificates
	( umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	    -out "$lab/orgca.key" 2>/dev/null )
	openssl req -x509 -new -key "$lab/orgca.key" -days 3650 -sha256 \
	    -subj "/O=Example Org/CN=Example Org S-MIME CA" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -out "$lab/orgca.crt" 2>/dev/null || { echo "FAIL org CA"; exit 1; }

	conf=$lab/kmilter.conf
	cat > "$conf" <<EOF
milter: {
  socket = "unix:$lab/kmilter.sock";
  state_dir = "$lab/state";
};
km: {
  servers = ( { name = "km1"; host = "127.0.0.1"; port = $p1; },
              { name = "km2"; host = "127.0.0.1"; port = $p2; } );
  ca_file = "$pki/ca.crt";
  client_cert = "$pki/kmilter.crt";
  client_key = "$pki/kmilter.key";
  connect_timeout_ms = 2000;
  io_timeout_ms = ${KM_IO_TIMEOUT_MS:-5000};
  org_ca_cert = "$lab/orgca.crt";
  org_ca_key = "$lab/orgca.key";
};
policy: { internal_domains = [ "example.com" ]; };
EOF
	K="$kmctl -c $conf"
	P="$probe -c $conf"
	out=$lab/out err=$lab/err
}

run() { "$@" >"$out" 2>"$err"; rc=$?; }
# has TEXT: the last run's output holds TEXT; why: what to print on a FAIL
has() { grep -q -- "$1" "$out"; }
why() { echo "rc=$rc $(head -c 600 "$err") | $(head -c 600 "$out")"; }
now_ms() { date +%s%3N; }
# gens ADDR: "ACTIVE/TOTAL" generations of ADDR
gens() {
	$K show "$1" > "$lab/show" 2>/dev/null
	echo "$(grep -c 'generation [0-9]* state Active' "$lab/show")/$(grep -c '^[^ ].* generation [0-9]* state' "$lab/show")"
}
