#!/bin/sh
# mkcerts.sh DIR - a throwaway S/MIME PKI for the interop and unit tests.
#
# Writes into DIR: ca.crt/ca.key (a CA), and for each of alice-rsa,
# bob-rsa, carol-rsa (RSA-2048), alice-ec, bob-ec (P-256): NAME.crt, NAME.key
# (PKCS#8 PEM, no password) and NAME.p12 (legacy 3DES PBE, password in
# DIR/p12pass, what gpgsm imports).  Also other-ca.crt/key and
# mallory-rsa.crt/key signed by that other CA (untrusted chain cases).
# E-mail addresses: NAME@example.org (alice-rsa and alice-ec are both
# alice@example.org, bob-* bob@example.org).
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
echo "kmtest-p12" > p12pass
days=3650

mkca() {	# name cn
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" \
	    -days $days -subj "/O=kmilter test/CN=$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

mkuser() {	# name email keyalg ca
	name=$1 email=$2 alg=$3 ca=$4
	case $alg in
	rsa)	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null
		ku="critical,digitalSignature,keyEncipherment" ;;
	ec)	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
		ku="critical,digitalSignature,keyAgreement" ;;
	esac
	openssl req -new -key "$name.key" -subj "/O=kmilter test/CN=$name/emailAddress=$email" \
	    -out "$name.csr" 2>/dev/null
	cat > "$name.ext" <<EOT
basicConstraints=CA:FALSE
keyUsage=$ku
extendedKeyUsage=emailProtection
subjectAltName=email:$email
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOT
	openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
	    -days 1000 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
	openssl pkcs12 -export -in "$name.crt" -inkey "$name.key" -certfile "$ca.crt" \
	    -name "$name" -passout file:p12pass \
	    -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out "$name.p12" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

mkca ca "kmilter test CA"
mkca other-ca "other CA"
mkuser alice-rsa alice@example.org rsa ca
mkuser alice-ec alice@example.org ec ca
mkuser bob-rsa bob@example.org rsa ca
mkuser bob-ec bob@example.org ec ca
mkuser carol-rsa carol@example.org rsa ca
mkuser mallory-rsa mallory@example.org rsa other-ca
