# tests/lablib/sasl.sh - SMTP AUTH for the lab's Postfix: Cyrus SASL with a
# private sasldb (sourced; needs common.sh).  Never touches /etc/sasl2 or
# /etc/postfix.
#
# sasl_setup DIR    make DIR/sasl/{sasldb2,passwords} and
#        DIR/postfix/sasl/smtpd.conf (where Debian's Postfix looks, whatever
#        cyrus_sasl_config_path says; that is set to the same place) with the lab
#        users (alice@ and bob@ the organization's domain LAB_ORG, default
#        example.com; random passwords, in
#        DIR/sasl/passwords as "user password" lines, mode 0600) and append
#        the SASL settings to DIR/postfix/main.cf.  Without saslpasswd2
#        (package sasl2-bin) it says so and leaves AUTH off.
# sasl_users DIR    only DIR/sasl/{sasldb2,passwords} (root's, 0600): the
#        lab's Sendmail (tests/lablib/sendmail.sh) uses them.

sasl_setup() {
	sasl_users "$1" || return 1
	[ -f "$1/sasl/sasldb2" ] || return 0
	sasl_postfix "$1"
}

# sasl_users DIR - DIR/sasl/{sasldb2,passwords} with the lab users (no
# sasldb2 without saslpasswd2: AUTH is off)
sasl_users() {
	_sd=$1/sasl
	command -v saslpasswd2 >/dev/null 2>&1 || {
		lab_msg "saslpasswd2 not found (package sasl2-bin): SMTP AUTH is off"
		return 0
	}
	mkdir -p "$_sd"
	chmod 0755 "$_sd"
	: > "$_sd/passwords"
	chmod 0600 "$_sd/passwords"
	for _u in alice@${LAB_ORG:-example.com} bob@${LAB_ORG:-example.com}; do
		_pw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
		printf '%s\n' "$_pw" | saslpasswd2 -f "$_sd/sasldb2" -p -c "$_u" ||
			return 1
		printf '%s %s\n' "$_u" "$_pw" >> "$_sd/passwords"
	done
	chmod 0600 "$_sd/sasldb2"
}

# sasl_postfix DIR - Postfix's smtpd.conf and main.cf settings for it
sasl_postfix() {
	_sd=$1/sasl
	# smtpd runs as postfix and reads the sasldb itself (auxprop).
	chown postfix:postfix "$_sd/sasldb2"
	mkdir -p "$1/postfix/sasl"
	chmod 0755 "$1/postfix/sasl"
	cat > "$1/postfix/sasl/smtpd.conf" <<SASLCONF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $_sd/sasldb2
mech_list: PLAIN LOGIN
SASLCONF
	chmod 0644 "$1/postfix/sasl/smtpd.conf"
	cat >> "$1/postfix/main.cf" <<MAINCF
# SMTP AUTH (tests/lablib/sasl.sh): Cyrus SASL, private sasldb
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $1/postfix/sasl
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
MAINCF
}
