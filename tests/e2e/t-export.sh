#!/bin/bash
# t-export.sh - kmctl export ADDR --p12 FILE (issue 17 item 4) against two
# real PyKMIP servers on 127.0.0.1: the file holds the current key and
# certificate with the org chain, AES-256-CBC / PBKDF2-HMAC-SHA256 / MAC
# SHA-256, mode 0600; openssl, NSS pk12util and gpgsm import it; an
# enhanced user's protection password is needed and checked before any
# file is written; a missing password, an unknown address fail cleanly.
# Env: KM_TOP, KM_BUILD, KM_PORT_BASE (default 31000 + pid % 1000 * 10).
# Prints PASS/FAIL/SKIP lines and a FIGURE line (timing).
. "$(dirname "$0")/../lib/suite.sh"
kmctl=$build/kmctl
probe=$build/tools/keymodel-probe
. "$top/tests/lablib/km.sh"

suite_need_built "$kmctl" "$probe"
suite_need_cmd /usr/bin/pykmip-server openssl pk12util certutil gpgsm

. "$top/tests/lablib/kmpair.sh"
kmpair_up t-export 31000
why() { echo "rc=$rc $(head -c 400 "$err")"; }
err_has() { grep -q -- "$1" "$err"; }
printf 'transport-pass-1\n' > "$lab/tpw"
printf 'protection-pass-1\n' > "$lab/ppw"
printf 'not-the-password\n' > "$lab/badpw"
chmod 600 "$lab/tpw" "$lab/ppw" "$lab/badpw"

# p12_info FILE - openssl's description of FILE (transport password) to $lab/info
p12_info() {
	openssl pkcs12 -info -nokeys -in "$1" -passin "file:$lab/tpw" \
	    >"$lab/info" 2>&1
}

run $K enroll alice@example.com
[ $rc = 0 ] || fail setup_enroll_alice "$(why)"
run $K enroll bob@example.com --protect --password-file "$lab/ppw"
[ $rc = 0 ] || fail setup_enroll_bob "$(why)"

# --- a default-level user: the file, its format, its key
t0=$(date +%s%3N)
run $K export alice@example.com --p12 "$lab/alice.p12" --password-file "$lab/tpw"
t1=$(date +%s%3N)
echo "FIGURE kmctl export (rsa2048, default format): $((t1 - t0)) ms (whole kmctl run)"
if [ $rc = 0 ] && [ -s "$lab/alice.p12" ] &&
    [ "$(stat -c %a "$lab/alice.p12")" = 600 ] && ! ls "$lab"/alice.p12.* >/dev/null 2>&1
then pass export_default_0600
else fail export_default_0600 "$(why)"; fi

if p12_info "$lab/alice.p12" &&
    grep -q 'MAC: sha256' "$lab/info" &&
    grep -q 'Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC' "$lab/info" &&
    grep -q 'PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC' "$lab/info" &&
    [ "$(grep -c 'BEGIN CERTIFICATE' "$lab/info")" = 2 ] &&
    grep -q 'subject=.*CN *= *Example Org S-MIME CA' "$lab/info"
then pass export_format_aes256_pbkdf2_sha256_chain
else fail export_format_aes256_pbkdf2_sha256_chain "$(head -c 600 "$lab/info")"; fi
# PBKDF2's PRF: openssl -info does not print it; the ASN.1 does
# (hmacWithSHA256, 1.2.840.113549.2.9, DER 06 08 2a 86 48 86 f7 0d 02 09)
if openssl asn1parse -inform DER -in "$lab/alice.p12" >/dev/null 2>&1 &&
    od -An -tx1 -v "$lab/alice.p12" | tr -d ' \n' | grep -q '06082a864886f70d0209'
then pass export_prf_hmac_sha256
else fail export_prf_hmac_sha256 "hmacWithSHA256 OID not in the file"; fi
openssl pkcs12 -in "$lab/alice.p12" -passin "file:$lab/tpw" -nodes \
    -out "$lab/alice.pem" 2>/dev/null

# the key is the current generation's: it opens what its certificate encrypts
run $K export-cert alice@example.com
cp "$out" "$lab/alice-cur.pem"
printf 'hello alice\n' > "$lab/plain.txt"
if openssl cms -encrypt -aes-256-cbc -in "$lab/plain.txt" -out "$lab/enc.eml" \
    "$lab/alice-cur.pem" 2>/dev/null &&
    openssl cms -decrypt -in "$lab/enc.eml" -inkey "$lab/alice.pem" 2>/dev/null |
    grep -q 'hello alice'
then pass export_key_decrypts
else fail export_key_decrypts "the exported key does not open mail to the current certificate"; fi

# NSS
mkdir -p "$lab/nss"
if certutil -N -d "sql:$lab/nss" --empty-password >/dev/null 2>&1 &&
    pk12util -i "$lab/alice.p12" -d "sql:$lab/nss" -w "$lab/tpw" -K "" \
    >"$lab/nss.out" 2>&1 &&
    certutil -K -d "sql:$lab/nss" 2>/dev/null | grep -q rsa &&
    certutil -L -d "sql:$lab/nss" 2>/dev/null | grep -q 'alice@example.com'
then pass export_nss_pk12util_imports
else fail export_nss_pk12util_imports "$(head -c 300 "$lab/nss.out")"; fi

# gpgsm (GnuPG 2.2.42 / 2.4.1 and later read these PBES2 parameters; for
# older ones export --legacy, below)
gver=$(gpgsm --version | sed -n '1s/.* //p')
export GNUPGHOME=$lab/gnupg
mkdir -m 700 "$GNUPGHOME"
echo allow-loopback-pinentry > "$GNUPGHOME/gpg-agent.conf"
printf 'disable-crl-checks\ndisable-policy-checks\ndisable-ocsp\n' > "$GNUPGHOME/gpgsm.conf"
gpgsm --batch --pinentry-mode loopback --passphrase-fd 0 --import "$lab/alice.p12" \
    <"$lab/tpw" >"$lab/gpgsm.out" 2>&1
grc=$?
if [ $grc = 0 ] && grep -q 'secret keys imported: 1' "$lab/gpgsm.out"; then
	pass export_gpgsm_imports
elif printf '%s\n2.2.42\n' "$gver" | sort -V -C && grep -q 'pkcs5PBES2-params' "$lab/gpgsm.out"; then
	echo "SKIP export_gpgsm_imports: ci-unavailable: gpgsm $gver cannot read PBES2 AES-256/PBKDF2-HMAC-SHA256 key bags (newer GnuPG, 2.2.42/2.4.1 on, should; not tested here); export --legacy is tested below"
else fail export_gpgsm_imports "rc=$grc $(tail -c 300 "$lab/gpgsm.out")"; fi
gpgconf --kill gpg-agent >/dev/null 2>&1

# --legacy: what gpgsm before 2.2.42 reads (AES-128-CBC, PBKDF2-HMAC-SHA1
# for the key, certificates unencrypted, MAC SHA-256)
run $K export alice@example.com --p12 "$lab/alice-legacy.p12" --password-file "$lab/tpw" --legacy
if [ $rc = 0 ] && p12_info "$lab/alice-legacy.p12" && grep -q 'MAC: sha256' "$lab/info" &&
    grep -q 'Shrouded Keybag: PBES2, PBKDF2, AES-128-CBC' "$lab/info" &&
    ! grep -q 'PKCS7 Encrypted data' "$lab/info" &&
    [ "$(grep -c 'BEGIN CERTIFICATE' "$lab/info")" = 2 ] &&
    ! od -An -tx1 -v "$lab/alice-legacy.p12" | tr -d ' \n' | grep -q '06082a864886f70d0209'
then pass export_legacy_format
else fail export_legacy_format "$(why) $(head -c 400 "$lab/info")"; fi
export GNUPGHOME=$lab/gnupg-legacy
mkdir -m 700 "$GNUPGHOME"
echo allow-loopback-pinentry > "$GNUPGHOME/gpg-agent.conf"
printf 'disable-crl-checks\ndisable-policy-checks\ndisable-ocsp\n' > "$GNUPGHOME/gpgsm.conf"
gpgsm --batch --pinentry-mode loopback --passphrase-fd 0 --import "$lab/alice-legacy.p12" \
    <"$lab/tpw" >"$lab/gpgsm.out" 2>&1
grc=$?
if [ $grc = 0 ] && grep -q 'secret keys imported: 1' "$lab/gpgsm.out" &&
    gpgsm --batch --list-secret-keys 2>/dev/null | grep -q 'alice@example.com'
then pass export_legacy_gpgsm_imports
else fail export_legacy_gpgsm_imports "rc=$grc $(tail -c 300 "$lab/gpgsm.out")"; fi
gpgconf --kill gpg-agent >/dev/null 2>&1
mkdir -p "$lab/nss2"
if certutil -N -d "sql:$lab/nss2" --empty-password >/dev/null 2>&1 &&
    pk12util -i "$lab/alice-legacy.p12" -d "sql:$lab/nss2" -w "$lab/tpw" -K "" \
    >"$lab/nss.out" 2>&1 &&
    certutil -K -d "sql:$lab/nss2" 2>/dev/null | grep -q rsa
then pass export_legacy_nss_imports
else fail export_legacy_nss_imports "$(head -c 300 "$lab/nss.out")"; fi

# --- an enhanced user: protection password needed, checked first
rm -f "$lab/bob.p12"
run $K export bob@example.com --p12 "$lab/bob.p12" --password-file "$lab/tpw"
if [ $rc = 1 ] && err_has 'protected by a password' && [ ! -e "$lab/bob.p12" ]
then pass export_enhanced_needs_protection_password
else fail export_enhanced_needs_protection_password "$(why)"; fi

run $K export bob@example.com --p12 "$lab/bob.p12" --password-file "$lab/tpw" \
    --protection-password-file "$lab/badpw"
if [ $rc = 1 ] && err_has 'wrong protection password' && [ ! -e "$lab/bob.p12" ] &&
    ! ls "$lab"/bob.p12.* >/dev/null 2>&1
then pass export_wrong_protection_password
else fail export_wrong_protection_password "$(why)"; fi

run $K export bob@example.com --p12 "$lab/bob.p12" --password-file "$lab/tpw" \
    --protection-password-fd 5 5<"$lab/ppw"
if [ $rc = 0 ] && p12_info "$lab/bob.p12" && grep -q 'MAC: sha256' "$lab/info" &&
    openssl pkcs12 -in "$lab/bob.p12" -passin "file:$lab/tpw" -nodes 2>/dev/null |
    grep -q 'BEGIN PRIVATE KEY'
then pass export_enhanced_with_protection_password
else fail export_enhanced_with_protection_password "$(why)"; fi

# --- bad input
# no terminal either (setsid: none even when the suite runs from one)
run setsid -w $K export alice@example.com --p12 "$lab/none.p12" </dev/null
if [ $rc = 1 ] && err_has 'no terminal to read the password from' &&
    [ ! -e "$lab/none.p12" ]
then pass export_missing_password
else fail export_missing_password "$(why)"; fi

run $K export nobody@example.com --p12 "$lab/nobody.p12" --password-file "$lab/tpw"
if [ $rc = 3 ] && err_has 'nobody@example.com' && [ ! -e "$lab/nobody.p12" ]
then pass export_unknown_address
else fail export_unknown_address "$(why)"; fi

run $K export alice@example.com --password-file "$lab/tpw"
if [ $rc = 2 ] && err_has -- '--p12'; then pass export_needs_p12
else fail export_needs_p12 "$(why)"; fi

run $K export alice@example.com --p12 "$lab/x.p12" --password-file "$lab/tpw" --ban
r1=$rc
run $K show alice@example.com --legacy
if [ $r1 = 2 ] && [ $rc = 2 ]; then pass export_options_only_where_they_belong
else fail export_options_only_where_they_belong "export --ban rc=$r1; $(why)"; fi

printf 'short\n' > "$lab/shortpw"
run $K export alice@example.com --p12 "$lab/short.p12" --password-file "$lab/shortpw"
if [ $rc != 0 ] && err_has "a transport password has 8" && [ ! -e "$lab/short.p12" ]; then pass export_short_transport_password
else fail export_short_transport_password "$(why)"; fi

suite_ok
