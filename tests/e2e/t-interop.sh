#!/bin/sh
# t-interop.sh - S/MIME interop of kmilter's smime module (driven through
# build/tools/smime-tool) with openssl cms, gpgsm and NSS cmsutil.
#
# Our output (detached and opaque signatures, RSA + AES-CBC encryption,
# sign-then-encrypt, a signature publishing an encryption certificate)
# must be read by all three; OAEP, GCM and ECDH output by
# openssl (the Debian 12 gpgsm and NSS cannot read those: INTEROP.md); and
# what each tool produces must be read by our API.  Prints PASS/FAIL
# per case (gpgsm or NSS missing or failing to set up is a FAIL: CI installs
# them); exits 1 on any failure.
. "$(dirname "$0")/../lib/suite.sh"
T=$build/tools/smime-tool
suite_need_built "$T"

W=$(mktemp -d /tmp/km-interop.XXXXXX)
agent_pid=""
cleanup() {
	if [ -n "${GNUPGHOME:-}" ] && [ -d "$GNUPGHOME" ]; then
		gpgconf --homedir "$GNUPGHOME" --kill gpg-agent >/dev/null 2>&1
	fi
	rm -rf "$W"
}
trap cleanup EXIT INT TERM
check() {	# name command...: PASS when the command succeeds
	n=$1; shift
	if "$@" >"$W/last.log" 2>&1; then pass "$n"; else
		fail "$n" "$(tail -3 "$W/last.log" | tr '\n' ' ')"; fi
}

"$top/tests/interop/mkcerts.sh" "$W" >/dev/null 2>&1 || { echo "FAIL interop-pki"; exit 1; }
cd "$W" || exit 1
printf 'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello Alice,\r\nthe interop test body.\r\n-- \r\nBob\r\n' > inner.mime

# --- gpgsm: throwaway home, CA trusted, alice and bob RSA keys ----------
have_gpgsm=0
if command -v gpgsm >/dev/null 2>&1; then
	export GNUPGHOME="$W/gnupg"
	mkdir -m700 "$GNUPGHOME"
	echo allow-loopback-pinentry > "$GNUPGHOME/gpg-agent.conf"
	printf 'disable-crl-checks\ndisable-policy-checks\ndisable-ocsp\n' > "$GNUPGHOME/gpgsm.conf"
	cafpr=$(openssl x509 -in ca.crt -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
	if gpgsm --batch --import ca.crt >/dev/null 2>&1 &&
	    echo "$cafpr S relax" > "$GNUPGHOME/trustlist.txt" &&
	    "$top/tests/lablib/gpgsm-import-p12" alice-rsa.p12 p12pass alice-rsa.crt alice-rsa.key ca.crt >gimport.out 2>&1 &&
	    "$top/tests/lablib/gpgsm-import-p12" bob-rsa.p12 p12pass bob-rsa.crt bob-rsa.key ca.crt >>gimport.out 2>&1; then
		have_gpgsm=1
		pass gpgsm-imports-test-keys
	else
		fail gpgsm-imports-test-keys "$(tail -c 300 gimport.out)"
	fi
	alice_fpr=$(openssl x509 -in alice-rsa.crt -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
	bob_fpr=$(openssl x509 -in bob-rsa.crt -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
fi
G() { gpgsm --batch --yes --pinentry-mode loopback --passphrase-fd 3 "$@" 3<"$W/p12pass"; }
gverify() {	# sig.der [content]: VALIDSIG + TRUST_FULLY, no BADSIG/ERRSIG
	if [ $# -eq 2 ]; then G --status-fd 4 --verify "$1" "$2" 4>"$W/gstatus" >/dev/null 2>&1
	else G --status-fd 4 -o "$W/gcontent" --verify "$1" 4>"$W/gstatus" >/dev/null 2>&1; fi
	grep -q VALIDSIG "$W/gstatus" && grep -q TRUST_FULLY "$W/gstatus" &&
	    ! grep -qE 'BADSIG|ERRSIG' "$W/gstatus"
}

# --- NSS: certificate db with the CA trusted and alice/bob keys ---------
have_nss=0
if command -v cmsutil >/dev/null 2>&1; then
	mkdir nss
	if certutil -N -d sql:nss --empty-password >/dev/null 2>&1 &&
	    certutil -A -d sql:nss -n labca -t "CT,C,C" -i ca.crt >/dev/null 2>&1 &&
	    pk12util -i alice-rsa.p12 -d sql:nss -w p12pass -K "" >/dev/null 2>&1 &&
	    pk12util -i bob-rsa.p12 -d sql:nss -w p12pass -K "" >/dev/null 2>&1; then
		have_nss=1
	fi
fi
nverify() {	# sig.der [content]: GoodSignature
	if [ $# -eq 2 ]; then
		rm -f "$W/nhdr" "$W/ncontent"
		cmsutil -D -d sql:nss -p "" -u 4 -h 2 -c "$2" -i "$1" -o "$W/nhdr" >"$W/nout" 2>&1
	else
		rm -f "$W/nhdr" "$W/ncontent"
		cmsutil -D -d sql:nss -p "" -u 4 -h 2 -i "$1" -o "$W/ncontent" >"$W/nout" 2>&1
	fi
	cat "$W/nhdr" "$W/ncontent" "$W/nout" 2>/dev/null | grep -q 'status=GoodSignature'
}

# --- our output, read by openssl ----------------------------------------
$T sign -c bob-rsa.crt -k bob-rsa.key -C ca.crt -i inner.mime -o signed.eml
$T sign -m opaque -c bob-rsa.crt -k bob-rsa.key -i inner.mime -o opaque.eml
$T encrypt -r alice-rsa.crt -r bob-rsa.crt -i inner.mime -o enc.eml
$T encrypt -r alice-rsa.crt -i signed.eml -o signenc.eml
$T part -n 0 -i signed.eml -o signed.content
$T part -n 1 -i signed.eml | $T unwrap -o signed.p7s
$T unwrap -i opaque.eml -o opaque.der
$T unwrap -i enc.eml -o enc.der
$T unwrap -i signenc.eml -o signenc.der
check part0-is-inner cmp signed.content inner.mime

osslverify() { openssl cms -verify -CAfile ca.crt -purpose smimesign -in "$1" -out "$2" && cmp "$2" inner.mime; }
check openssl-verifies-our-detached osslverify signed.eml o1.out
check openssl-verifies-our-opaque osslverify opaque.eml o2.out
check openssl-decrypts-our-enc sh -c 'openssl cms -decrypt -recip alice-rsa.crt -inkey alice-rsa.key -in enc.eml -out o3.out && cmp o3.out inner.mime'
check openssl-decrypts-verifies-our-signenc sh -c 'openssl cms -decrypt -recip alice-rsa.crt -inkey alice-rsa.key -in signenc.eml -out o4.eml && cmp o4.eml signed.eml && openssl cms -verify -CAfile ca.crt -purpose smimesign -in o4.eml -out o4.out && cmp o4.out inner.mime'
for v in "oaep:-p oaep" "gcm:-a gcm" "aes128:-a aes128" "gcm-oaep:-a gcm -p oaep"; do
	name=${v%%:*} opts=${v#*:}
	# shellcheck disable=SC2086
	$T encrypt $opts -r alice-rsa.crt -i signed.eml -o v.eml
	check "openssl-decrypts-our-$name" sh -c 'openssl cms -decrypt -recip alice-rsa.crt -inkey alice-rsa.key -in v.eml -out v.out && cmp v.out signed.eml'
done
$T encrypt -a gcm -r alice-ec.crt -r bob-rsa.crt -i signed.eml -o ecdh.eml
check openssl-decrypts-our-ecdh sh -c 'openssl cms -decrypt -recip alice-ec.crt -inkey alice-ec.key -in ecdh.eml -out e.out && cmp e.out signed.eml'
$T sign -c alice-ec.crt -k alice-ec.key -d sha384 -i inner.mime -o ecsig.eml
check openssl-verifies-our-ecdsa osslverify ecsig.eml o5.out

# --- our output, read by gpgsm ------------------------------------------
if [ $have_gpgsm = 1 ]; then
	check gpgsm-verifies-our-detached gverify signed.p7s signed.content
	if gverify opaque.der && cmp -s "$W/gcontent" inner.mime; then pass gpgsm-verifies-our-opaque; else fail gpgsm-verifies-our-opaque; fi
	check gpgsm-decrypts-our-enc sh -c 'gpgsm --batch --yes --pinentry-mode loopback --passphrase-fd 3 -o g1.out --decrypt enc.der 3<p12pass && cmp g1.out inner.mime'
	if G -o g2.eml --decrypt signenc.der >/dev/null 2>&1 && cmp -s g2.eml signed.eml &&
	    $T part -n 0 -i g2.eml -o g2.content && $T part -n 1 -i g2.eml | $T unwrap -o g2.p7s &&
	    gverify g2.p7s g2.content; then pass gpgsm-decrypts-verifies-our-signenc
	else fail gpgsm-decrypts-verifies-our-signenc; fi
else
	for c in detached opaque enc signenc; do fail "gpgsm-$c" "gpgsm missing or its set-up failed (tests/install-deps)"; done
fi

# --- our output, read by NSS cmsutil ------------------------------------
if [ $have_nss = 1 ]; then
	check cmsutil-verifies-our-detached nverify signed.p7s signed.content
	# With -h, cmsutil writes its SMIME: info lines before the content.
	if nverify opaque.der && grep -q 'status=GoodSignature' "$W/ncontent" &&
	    tail -c "$(wc -c < inner.mime)" "$W/ncontent" | cmp -s - inner.mime; then pass cmsutil-verifies-our-opaque
	else fail cmsutil-verifies-our-opaque "$(tail -2 "$W/nout" | tr '\n' ' ')"; fi
	check cmsutil-decrypts-our-enc sh -c 'cmsutil -D -d sql:nss -p "" -i enc.der -o n1.out && cmp n1.out inner.mime'
	if cmsutil -D -d sql:nss -p "" -i signenc.der -o n2.eml >/dev/null 2>&1 && cmp -s n2.eml signed.eml &&
	    $T part -n 0 -i n2.eml -o n2.content && $T part -n 1 -i n2.eml | $T unwrap -o n2.p7s &&
	    nverify n2.p7s n2.content; then pass cmsutil-decrypts-verifies-our-signenc
	else fail cmsutil-decrypts-verifies-our-signenc; fi
else
	for c in detached opaque enc signenc; do fail "cmsutil-$c" "NSS cmsutil missing or its set-up failed (tests/install-deps)"; done
fi

# --- their output, read by our API --------------------------------------
ourverify() {	# entity: good signature, trusted chain, From matches, content = inner
	$T verify -A ca.crt -f "Bob <bob@example.org>" -i "$1" -o "$1.content" 2>"$1.res" &&
	    grep -q '^sig_ok=1' "$1.res" && grep -q '^chain_ok=1' "$1.res" &&
	    grep -q '^from_match=1' "$1.res" && cmp "$1.content" inner.mime
}
ourdecrypt() {	# input: alice decrypts to inner
	$T decrypt -c bob-rsa.crt -k bob-rsa.key -c alice-rsa.crt -k alice-rsa.key -i "$1" -o "$1.out" &&
	    cmp "$1.out" inner.mime
}
mkmultipart() {	# content sig.der out: build multipart/signed around raw parts
	{
		printf 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="b-0123"\r\n\r\n'
		printf -- '--b-0123\r\n'
		cat "$1"
		printf '\r\n--b-0123\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n'
		openssl base64 -in "$2" | sed 's/$/\r/'
		printf -- '--b-0123--\r\n'
	} > "$3"
}

openssl cms -sign -md sha256 -signer bob-rsa.crt -inkey bob-rsa.key -certfile ca.crt -binary -in inner.mime -out os.eml 2>/dev/null
check we-verify-openssl-detached ourverify os.eml
openssl cms -sign -nodetach -md sha256 -signer bob-rsa.crt -inkey bob-rsa.key -binary -in inner.mime -out oo.eml 2>/dev/null
check we-verify-openssl-opaque ourverify oo.eml
openssl cms -sign -nodetach -md sha256 -signer bob-ec.crt -inkey bob-ec.key -binary -in inner.mime -outform DER -out oo-ec.der 2>/dev/null
check we-verify-openssl-opaque-ecdsa-der ourverify oo-ec.der
openssl cms -encrypt -aes-256-cbc -binary -in inner.mime -out oe.eml alice-rsa.crt 2>/dev/null
check we-decrypt-openssl-enc ourdecrypt oe.eml
openssl cms -encrypt -aes-256-gcm -binary -in inner.mime -recip alice-rsa.crt -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256 -out oeg.eml 2>/dev/null
check we-decrypt-openssl-gcm-oaep ourdecrypt oeg.eml
openssl cms -encrypt -aes-128-cbc -binary -in inner.mime -recip alice-ec.crt -keyopt ecdh_kdf_md:sha256 -out oec.eml 2>/dev/null
check we-decrypt-openssl-ecdh sh -c "$T decrypt -c alice-ec.crt -k alice-ec.key -i oec.eml -o oec.out && cmp oec.out inner.mime"

if [ $have_gpgsm = 1 ]; then
	G --cipher-algo AES256 -r "0x$alice_fpr" --encrypt -o ge.der inner.mime >/dev/null 2>&1
	check we-decrypt-gpgsm-enc ourdecrypt ge.der
	G -u "0x$bob_fpr" --digest-algo SHA256 --include-certs -1 --detach-sign -o gs.der inner.mime >/dev/null 2>&1
	mkmultipart inner.mime gs.der gs.eml
	check we-verify-gpgsm-detached ourverify gs.eml
	G -u "0x$bob_fpr" --digest-algo SHA256 --include-certs -1 --sign -o go.der inner.mime >/dev/null 2>&1
	check we-verify-gpgsm-opaque ourverify go.der
else
	for c in enc detached opaque; do fail "we-read-gpgsm-$c" "gpgsm missing or its set-up failed (tests/install-deps)"; done
fi

if [ $have_nss = 1 ]; then
	cmsutil -E -d sql:nss -p "" -r alice-rsa -i inner.mime -o ne.der >/dev/null 2>&1
	check we-decrypt-cmsutil-enc ourdecrypt ne.der
	cmsutil -S -T -G -P -H SHA256 -N bob-rsa -d sql:nss -p "" -i inner.mime -o ns.der >/dev/null 2>&1
	mkmultipart inner.mime ns.der ns.eml
	check we-verify-cmsutil-detached ourverify ns.eml
	cmsutil -S -G -P -H SHA256 -N bob-rsa -d sql:nss -p "" -i inner.mime -o no.der >/dev/null 2>&1
	check we-verify-cmsutil-opaque ourverify no.der
else
	for c in enc detached opaque; do fail "we-read-cmsutil-$c" "NSS cmsutil missing or its set-up failed (tests/install-deps)"; done
fi

# --- what real clients send beyond the above (issue 15) ----------------
# NSS leaves bare LF inside the envelope: a detached signature made over
# the canonical form still verifies (canonical=1), and the LF-only content
# is handed on as it is.
tr -d '\r' < os.eml > os-lf.eml
sed 's/\r$//' inner.mime > inner-lf.mime
lfverify() {
	$T verify -A ca.crt -f "Bob <bob@example.org>" -i os-lf.eml -o os-lf.content 2>os-lf.res &&
	    grep -q '^sig_ok=1' os-lf.res && grep -q '^canonical=1' os-lf.res &&
	    grep -q '^from_match=1' os-lf.res && cmp os-lf.content inner-lf.mime
}
check we-verify-openssl-detached-lf-only lfverify
# SHA-1 (Outlook's default): verifies, and the digest is reported.
openssl cms -sign -md sha1 -signer bob-rsa.crt -inkey bob-rsa.key -binary -in inner.mime -out os1.eml 2>/dev/null
check we-verify-openssl-sha1-and-say-so sh -c "$T verify -A ca.crt -i os1.eml -o /dev/null 2>os1.res; grep -q '^sig_ok=1' os1.res && grep -q '^digest=sha1' os1.res"
# Content ciphers are named (the milter's inbound policy decides by them).
cipherof() {	# file want
	$T recipients -i "$1" > "$1.rec" && grep -qx "cipher=$2" "$1.rec"
}
openssl cms -encrypt -des-ede3-cbc -binary -in inner.mime -out o3des.eml alice-rsa.crt 2>/dev/null
check we-decrypt-openssl-3des sh -c "$T decrypt -c alice-rsa.crt -k alice-rsa.key -i o3des.eml -o o3des.out && cmp o3des.out inner.mime"
check we-name-3des cipherof o3des.eml DES-EDE3-CBC
openssl cms -encrypt -rc2-40-cbc -provider legacy -provider default -binary -in inner.mime -out orc2.eml alice-rsa.crt 2>/dev/null
check we-name-rc2-40 cipherof orc2.eml RC2-CBC
check we-name-aes256 cipherof oe.eml AES-256-CBC
if [ $have_gpgsm = 1 ]; then
	G --cipher-algo 3DES -r "0x$alice_fpr" --encrypt -o ge3.der inner.mime >/dev/null 2>&1
	check we-decrypt-gpgsm-3des ourdecrypt ge3.der
	check we-name-gpgsm-3des cipherof ge3.der DES-EDE3-CBC
else
	fail we-read-gpgsm-3des "gpgsm missing or its set-up failed (tests/install-deps)"
fi

# --- issue 16: our signature publishes bob's encryption certificate ----
# bob-enc (keyEncipherment only) goes into the set with the CA, named by
# SMIMEEncryptionKeyPreference (smime-tool sign -P).  openssl still
# verifies; NSS keeps it (-k, usage email recipient) and encrypts to bob
# with it; gpgsm imports it from the signature.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out bob-enc.key 2>/dev/null
openssl req -new -key bob-enc.key -subj "/O=kmilter test/CN=bob-enc/emailAddress=bob@example.org" -out bob-enc.csr 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:bob@example.org\n' > bob-enc.ext
openssl x509 -req -in bob-enc.csr -CA ca.crt -CAkey ca.key -set_serial 0x16a1 -days 30 -extfile bob-enc.ext -out bob-enc.crt 2>/dev/null
$T sign -c bob-rsa.crt -k bob-rsa.key -C ca.crt -P bob-enc.crt -i inner.mime -o pub.eml
$T part -n 0 -i pub.eml -o pub.content
$T part -n 1 -i pub.eml | $T unwrap -o pub.p7s
check openssl-verifies-our-publishing osslverify pub.eml o6.out
check openssl-reads-our-enckeypref sh -c 'openssl cms -cmsout -print -in pub.eml | grep -qE "encrypKeyPref|1\.2\.840\.113549\.1\.9\.16\.2\.11"'
bob_enc_fpr=$(openssl x509 -in bob-enc.crt -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
nsspub() {	# NSS keeps bob-enc from the signature alone and encrypts to it
	mkdir nsspub && certutil -N -d sql:nsspub --empty-password &&
	    certutil -A -d sql:nsspub -n labca -t "CT,C,C" -i ca.crt &&
	    cmsutil -D -k -d sql:nsspub -p "" -u 5 -c pub.content -i pub.p7s -o /dev/null &&
	    cmsutil -E -d sql:nsspub -p "" -r bob@example.org -i inner.mime -o npub.der &&
	    openssl cms -cmsout -print -inform DER -in npub.der | grep -qE 'serialNumber: (5793|0x16A1)$'
}
gpgpub() {	# gpgsm imports bob-enc from the signature
	G --import pub.p7s && G --with-colons --list-keys bob@example.org | grep -q "^fpr:*$bob_enc_fpr:"
}
if [ $have_nss = 1 ]; then check cmsutil-keeps-our-published-cert nsspub
else fail cmsutil-published "NSS cmsutil missing or its set-up failed (tests/install-deps)"; fi
if [ $have_gpgsm = 1 ]; then check gpgsm-imports-our-published-cert gpgpub
else fail gpgsm-published "gpgsm missing or its set-up failed (tests/install-deps)"; fi

# --- negative: a tampered message fails everywhere ----------------------
sed 's/interop test/interop TEST/' signed.eml > tampered.eml
$T verify -A ca.crt -i tampered.eml -o /dev/null 2>t.res
check we-reject-tampered grep -q '^sig_ok=0' t.res
# refused for the tampered content, not for any other openssl error
osslrejects() {
	if openssl cms -verify -CAfile ca.crt -purpose smimesign -in "$1" -out /dev/null 2>"$1.err"; then
		echo "openssl verified a tampered message"; return 1
	fi
	cat "$1.err"; grep -qi 'content verify error\|verification failure' "$1.err"
}
check openssl-rejects-our-tampered osslrejects tampered.eml

suite_ok
