# tests/lablib/ldap.sh - a private OpenLDAP slapd on loopback (sourced;
# needs common.sh).  For the LDAP directory lookups (keyclient/ldapdir.c).
#
# ldap_start DIR PORT TLSPORT SUFFIX ROOTPW CACERT CERT KEY
#     write DIR/slapd.conf (schemas core, cosine, inetorgperson; one mdb
#     database for SUFFIX under DIR/db; rootdn "cn=admin,SUFFIX" with
#     ROOTPW; anyone may read), start slapd in the foreground with the
#     stats log level (every search is a "SRCH ... filter=" line in
#     DIR/slapd.log), listening on ldap://127.0.0.1:PORT/ (StartTLS
#     offered) and ldaps://127.0.0.1:TLSPORT/ with CERT and KEY, add the
#     SUFFIX entry, wait until it answers; its pid is in DIR/pid.
# ldap_add DIR LDIF      add entries (ldapadd as the rootdn)
# ldap_stop DIR          stop it by the recorded pid and wait until it is gone.

ldap_start() {
	_ld=$1 _lport=$2 _ltls=$3 _lsuffix=$4 _lpw=$5
	mkdir -p "$_ld/db"
	chmod 0700 "$_ld/db"
	echo "$_lsuffix" > "$_ld/suffix"
	echo "$_lport" > "$_ld/port"
	printf '%s' "$_lpw" > "$_ld/rootpw"
	chmod 0600 "$_ld/rootpw"
	( umask 077; cat > "$_ld/slapd.conf" <<LCONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile $_ld/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile $6
TLSCertificateFile $7
TLSCertificateKeyFile $8
sizelimit 50
database mdb
maxsize 10485760
suffix "$_lsuffix"
rootdn "cn=admin,$_lsuffix"
rootpw $_lpw
directory $_ld/db
access to * by * read
LCONF
	)
	setsid slapd -d stats -h "ldap://127.0.0.1:$_lport/ ldaps://127.0.0.1:$_ltls/" \
		-f "$_ld/slapd.conf" </dev/null >>"$_ld/slapd.log" 2>&1 &
	echo $! > "$_ld/pid"
	if ! lab_wait_tcp "$_lport" 20 || ! lab_wait_tcp "$_ltls" 20; then
		tail -5 "$_ld/slapd.log" >&2
		return 1
	fi
	_ldc=$(echo "$_lsuffix" | sed -n 's/^dc=\([^,]*\).*/\1/p')
	printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: %s\ndc: %s\n' \
		"$_lsuffix" "$_ldc" "$_ldc" > "$_ld/suffix.ldif"
	ldap_add "$_ld" "$_ld/suffix.ldif"
}

ldap_add() {
	ldapadd -x -H "ldap://127.0.0.1:$(cat "$1/port")/" \
		-D "cn=admin,$(cat "$1/suffix")" -y "$1/rootpw" -f "$2" >/dev/null
}

ldap_stop() {
	[ -f "$1/pid" ] || return 0
	_lp=$(cat "$1/pid")
	case $_lp in
	''|*[!0-9]*) lab_msg "ignoring bad pid file $1/pid" ;;
	*) kill -CONT "$_lp" 2>/dev/null; lab_stop_pid "$_lp" 10 ;;
	esac
	rm -f "$1/pid"
}
