#!/usr/bin/python3
"""t-clients - inbound S/MIME in the forms real clients send it, end to end
(real Postfix, kmilter, Redis, the two PyKMIP servers of the lab).

The lab, the PKI and the helpers are t-inbound.py's (loaded as a module):
internal users bob (RSA, imported from a PKCS#12), carol (EC), frank
(RSA); outside senders dave (signs, From) and eve (the author of a
forwarded message), both of the outside CA that policy.inbound.ca_file
trusts.  Every input is made here with openssl, gpgsm or NSS cmsutil, in
the forms seen from Outlook and Thunderbird (tests must not depend on
/work/shared/interop/real-clients; the forms were taken from there):

- bare LF inside the envelope (NSS): the inner multipart/signed verifies
  in canonical CRLF form (issue 15 failure 3);
- a sender's signature around a forwarded signed message: one smime
  result per layer, outermost first (failure 6), opaque and detached;
- Outlook's application/x-pkcs7-mime and x-pkcs7-signature, smime.p7m,
  SHA-1 signatures (pass, "weak digest sha1"), the sender's own copy as a
  second RecipientInfo; x-pkcs7-mime without smime-type (older clients);
  Thunderbird's AES-128-CBC and multipart/signed;
- malformed signed-data inside a signature (permerror) and eight nested
  signatures (bounded: six results);
- triple wrapping (signed, encrypted, signed), detached and opaque, and
  one whose envelope stays shut (delivered as it came, signature intact);
- one message encrypted to several internal users (RSA and EC);
- LF-only entities everywhere inside the CMS;
- content ciphers: 3DES decrypted and marked weak (openssl and gpgsm);
  RC2/40 and RC2/128 kept encrypted, result=downgraded, reason in the log.

At the end a FIGURE line counts the cases by producer and kind.
Env: KTEST_ONLY=substring runs only matching cases (setup always runs).
"""
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import atexit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ktest import Suite, check, check_eq  # noqa: E402

sys.dont_write_bytecode = True     # no __pycache__ beside the suites
_spec = importlib.util.spec_from_file_location("t_inbound", os.path.join(HERE, "t-inbound.py"))
ti = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ti)

AUTHSERV = ti.AUTHSERV
DAVE, EVE = ti.DAVE, ti.EVE
BOB, CAROL, FRANK = ti.BOB, ti.CAROL, ti.FRANK

suite = Suite()
tally = {}          # (producer, kind) -> [cases, held]


def case(name, producer, kind):
    """A suite case counted under producer and kind in the FIGURE line."""
    def deco(fn):
        def run():
            cell = tally.setdefault((producer, kind), [0, 0])
            cell[0] += 1
            fn()
            cell[1] += 1
        suite.case(name)(run)
        return fn
    return deco


# --- inputs --------------------------------------------------------------

def lf(data):
    return re.sub(rb"\r\n", b"\n", data)


def sign(entity, signer="dave", md="sha256", opaque=False):
    """openssl cms -sign over the canonical (CRLF) entity; CRLF output."""
    src = ti.write("c-sign-in.mime", ti.crlf(entity))
    argv = ["openssl", "cms", "-sign", "-md", md, "-signer", ti.path(signer + ".crt"),
            "-inkey", ti.path(signer + ".key"), "-certfile", ti.path("outca.crt"),
            "-in", src, "-binary", "-crlfeol"]
    if opaque:
        argv.append("-nodetach")
    return ti.run(argv)


def encrypt(entity, recips, cipher="-aes-256-cbc", legacy=False):
    """openssl cms -encrypt of entity as it is (-binary: LF stays LF)."""
    src = ti.write("c-enc-in.mime", entity)
    argv = ["openssl", "cms", "-encrypt", "-binary", cipher, "-in", src, "-crlfeol"]
    if legacy:
        argv += ["-provider", "legacy", "-provider", "default"]
    for r in recips:
        argv += ["-recip", ti.path(r)]
    return ti.run(argv)


def outlook_types(entity):
    """Outlook's spelling: application/x-pkcs7-mime, x-pkcs7-signature,
    name=smime.p7m / smime.p7s (only headers change, never signed bytes)."""
    head, sep, body = ti.crlf(entity).partition(b"\r\n\r\n")
    head = head.replace(b"application/pkcs7-mime", b"application/x-pkcs7-mime")
    head = head.replace(b"application/pkcs7-signature", b"application/x-pkcs7-signature")
    body = body.replace(b"Content-Type: application/pkcs7-signature",
                        b"Content-Type: application/x-pkcs7-signature")
    return head + sep + body


def cmsutil_encrypt_to_bob(entity):
    return ti.der_entity(ti.cmsutil_encrypt(entity), "enveloped-data")


def gpgsm_encrypt_3des(entity):
    src = ti.write("g3-in.mime", entity)
    ti.run(["gpgsm", "--batch", "--yes", "--cipher-algo", "3DES", "-r",
            "0x" + ti.state["bob_fpr"], "--encrypt", "-o", ti.path("g3.der"), src],
           env_extra={"GNUPGHOME": ti.state["gnupghome"]})
    with open(ti.path("g3.der"), "rb") as fp:
        return ti.der_entity(fp.read(), "enveloped-data")


def cipher_of(entity):
    out = ti.run([os.path.join(ti.BUILD, "tools", "smime-tool"), "recipients", "-i",
                  ti.write("c-cipher.eml", entity)])
    m = re.search(rb"^cipher=(\S+)", out, re.M)
    return m.group(1).decode() if m else "?"


def ar_results(d):
    """The smime results of our Authentication-Results, in order."""
    return [r.strip() for r in ti.ar_of(d).split(";")[1:]]


def pass_for(who, comment=""):
    return "smime=pass %sbody.smime-identifier=%s" % (comment and comment + " ", who)


def delivered_verifies(d):
    ok, err = ti.openssl_verify(d.msg)
    check(ok, "openssl cms -verify of the delivered message failed: %s" % err)


# --- failure 3: bare LF inside the envelope ------------------------------

@case("lf_only_signed_inside_envelope_openssl", "openssl", "signenc-lf")
def _():
    signed = lf(sign(ti.inner("lf-signed")))
    check(b"\r" not in signed, "precondition: CR left in the inner entity")
    ok, err = ti.openssl_verify(signed)     # openssl canonicalizes text
    check(ok, "precondition: openssl does not verify the LF-only entity: %s" % err)
    d = ti.deliver(ti.mail(encrypt(signed, ["bob.crt"]), [BOB]))
    ti.check_decrypted(d, signed, action="decrypt+verify")
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())
    check("canonical CRLF form" in " ".join(d.all_log()),
          "the log does not say the signature held in canonical form: %s" % d.all_log())


@case("lf_only_signed_inside_envelope_cmsutil", "cmsutil", "signenc-lf")
def _():
    signed = lf(sign(ti.inner("lf-nss")))
    d = ti.deliver(ti.mail(cmsutil_encrypt_to_bob(signed), [BOB]))
    ti.check_decrypted(d, signed, action="decrypt+verify")
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())


@case("lf_only_everywhere_plain_and_opaque", "openssl", "lf-only")
def _():
    plain = lf(ti.inner("lf-plain"))
    d = ti.deliver(ti.mail(encrypt(plain, ["bob.crt"]), [BOB]))
    ti.check_decrypted(d, plain)
    # opaque signed-data whose encapsulated entity is LF-only, signed as is
    src = ti.write("lf-opaque.mime", lf(ti.inner("lf-opaque")))
    opaque = ti.run(["openssl", "cms", "-sign", "-md", "sha256", "-signer", ti.path("dave.crt"),
                     "-inkey", ti.path("dave.key"), "-nodetach", "-binary", "-in", src])
    d = ti.deliver(ti.mail(opaque, [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())
    check_eq(d.fields.get("action"), "unwrap+verify", "log action (%s)" % d.line)
    check(b"lf-opaque" in d.body, "unwrapped body missing: %r" % d.body[:200])


# --- failure 6: a signature around a forwarded signed message ------------

@case("forwarded_signed_inside_opaque_signature", "openssl", "nested-signed")
def _():
    inner_signed = sign(ti.inner("forwarded"), signer="eve")
    outer = sign(inner_signed, opaque=True)
    d = ti.deliver(ti.mail(outer, [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE), "smime=fail (signer does not match From) "
                             "body.smime-identifier=%s" % EVE], "smime results (%s)" % d.why())
    check_eq(d.fields.get("action"), "unwrap+verify", "log action (%s)" % d.line)
    check(d.ctype.startswith("multipart/signed"), "inner signed entity not delivered: %s"
          % d.ctype)


@case("forwarded_message_rfc822_inside_detached_signature", "openssl", "nested-signed")
def _():
    fwd = ti.mail(sign(ti.inner("fwd-rfc822"), signer="eve"), [BOB], sender=EVE,
                  subject="original")
    entity = (b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + fwd)
    d = ti.deliver(ti.mail(sign(entity), [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE), pass_for(EVE)], "smime results (%s)" % d.why())
    check_eq(d.fields.get("action"), "verify", "log action (%s)" % d.line)
    delivered_verifies(d)


@case("nested_signatures_malformed_and_deep", "openssl", "nested-signed")
def _():
    # a detached signature over an entity that claims signed-data but holds
    # garbage: the outer result, then a permerror for the inner; unchanged
    junk = (b"Content-Type: application/pkcs7-mime; smime-type=signed-data; "
            b"name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
            ti.crlf(ti.base64.encodebytes(b"not CMS " * 40)))
    raw = ti.mail(sign(junk), [BOB])
    d = ti.deliver(raw)
    res = ar_results(d)
    check(len(res) == 2 and res[0] == pass_for(DAVE) and re.fullmatch(
        r"smime=permerror \([^()\\;]+\)", res[1]), "smime results: %r (%s)" % (res, d.why()))
    print("  permerror: %s" % res[1], flush=True)
    check(ti.labsmtp.lf(d.body) == ti.labsmtp.lf(ti.labsmtp.split_message(raw)[1]),
          "body changed")
    # eight detached signatures one inside the other: bounded (the outer one
    # and five nested), delivered as sent, kmilter still up
    ent = ti.inner("deep")
    for _i in range(8):
        ent = sign(ent)
    raw = ti.mail(ent, [BOB])
    d = ti.deliver(raw)
    check_eq(ar_results(d), [pass_for(DAVE)] * 6, "smime results (%s)" % d.why())
    check_eq(d.fields.get("action"), "verify", "log action (%s)" % d.line)
    check(ti.pid_alive(ti.state["pid"]), "kmilter (pid %d) is gone" % ti.state["pid"])


# --- Outlook and Thunderbird forms ---------------------------------------

@case("outlook_x_pkcs7_sha1_opaque_with_sender_copy", "outlook-like", "signenc")
def _():
    signed = outlook_types(sign(ti.inner("outlook"), md="sha1", opaque=True))
    check(b"application/x-pkcs7-mime" in signed, "precondition: not x-pkcs7-mime")
    env_ = outlook_types(encrypt(signed, ["bob.crt", "dave.crt"]))
    check(b"application/x-pkcs7-mime" in env_ and b"smime.p7m" in env_,
          "precondition: not Outlook's form")
    d = ti.deliver(ti.mail(env_, [BOB]))
    check_eq(d.fields.get("action"), "decrypt+verify", "log action (%s)" % d.why())
    check_eq(ar_results(d), [pass_for(DAVE, "(weak digest sha1)")],
             "smime results (%s)" % d.why())
    check(b"case outlook" in d.body, "not unwrapped: %r" % d.body[:200])


@case("outlook_x_pkcs7_signature_sha1_detached", "outlook-like", "signed")
def _():
    signed = outlook_types(sign(ti.inner("outlook-detached"), md="sha1"))
    check(b'protocol="application/x-pkcs7-signature"' in signed, "precondition: protocol")
    d = ti.deliver(ti.mail(signed, [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE, "(weak digest sha1)")],
             "smime results (%s)" % d.why())
    check("weak-digest=sha1" in " ".join(d.all_log()), "log: %s" % d.all_log())


def untyped(entity):
    """Older clients: application/x-pkcs7-mime; name=smime.p7m, no smime-type."""
    head, sep, body = outlook_types(entity).partition(b"\r\n\r\n")
    head = re.sub(rb";\s*smime-type=[\w-]+", b"", head)
    return head + sep + body


@case("x_pkcs7_mime_without_smime_type", "outlook-like", "untyped")
def _():
    ent = ti.inner("untyped-enc")
    out = untyped(encrypt(ent, ["bob.crt"]))
    check(b"smime-type" not in out.partition(b"\r\n\r\n")[0], "precondition: smime-type")
    d = ti.deliver(ti.mail(out, [BOB]))
    ti.check_decrypted(d, ent)
    signed = untyped(sign(ti.inner("untyped-signed"), opaque=True))
    d = ti.deliver(ti.mail(signed, [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())
    check_eq(d.fields.get("action"), "unwrap+verify", "log action (%s)" % d.line)


@case("thunderbird_aes128_signed_with_sender_copy", "thunderbird-like", "signenc")
def _():
    signed = sign(ti.inner("thunderbird"))
    out = encrypt(signed, ["bob.crt", "dave.crt"], cipher="-aes-128-cbc")
    check_eq(cipher_of(out), "AES-128-CBC", "precondition: cipher")
    d = ti.deliver(ti.mail(out, [BOB]))
    ti.check_decrypted(d, signed, action="decrypt+verify")
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())
    delivered_verifies(d)


@case("sha256_signature_has_no_weak_comment", "openssl", "signed")
def _():
    d = ti.deliver(ti.mail(sign(ti.inner("sha256")), [BOB]))
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())


# --- triple wrapping -----------------------------------------------------

@case("triple_wrapped_detached_outer", "openssl", "triple-wrap")
def _():
    inner_signed = sign(ti.inner("triple-detached"))
    outer = sign(encrypt(inner_signed, ["bob.crt"]))
    d = ti.deliver(ti.mail(outer, [BOB]))
    ti.check_decrypted(d, inner_signed, action="decrypt+verify")
    check_eq(ar_results(d), [pass_for(DAVE), pass_for(DAVE)], "smime results (%s)" % d.why())
    delivered_verifies(d)


@case("triple_wrapped_opaque_outer", "openssl", "triple-wrap")
def _():
    inner_signed = sign(ti.inner("triple-opaque"))
    outer = sign(encrypt(inner_signed, ["bob.crt"]), opaque=True)
    d = ti.deliver(ti.mail(outer, [BOB]))
    ti.check_decrypted(d, inner_signed, action="decrypt+verify")
    check_eq(ar_results(d), [pass_for(DAVE), pass_for(DAVE)], "smime results (%s)" % d.why())


@case("triple_wrapped_envelope_that_stays_shut_keeps_the_signature", "openssl", "triple-wrap")
def _():
    # frank, also a recipient, holds no key for the envelope inside: the
    # message goes out as sent, outer signature intact and reported
    outer = sign(encrypt(sign(ti.inner("triple-shut")), ["bob.crt"]))
    raw = ti.mail(outer, [BOB, FRANK])
    d = ti.deliver(raw, rcpts=(BOB, FRANK))
    ti.check_left_as_sent(d, raw, "triple wrapped, envelope shut")
    check_eq(ar_results(d), [pass_for(DAVE)], "smime results (%s)" % d.why())
    check_eq(d.fields.get("result"), "downgraded", "result (%s)" % d.line)
    check_eq(d.fields.get("action"), "verify", "log action (%s)" % d.line)
    delivered_verifies(d)


# --- recipients ----------------------------------------------------------

@case("encrypted_to_several_internal_users", "openssl", "enc-multi")
def _():
    ent = ti.inner("several")
    out = encrypt(ent, ["bob.crt", "frank-gen1.crt", "carol.crt"])
    d = ti.deliver(ti.mail(out, [BOB, FRANK, CAROL]), rcpts=(BOB, FRANK, CAROL))
    ti.check_decrypted(d, ent)


@case("encrypted_to_recipient_and_sender_copy", "openssl", "enc-multi")
def _():
    ent = ti.inner("sender-copy")
    d = ti.deliver(ti.mail(encrypt(ent, ["dave.crt", "bob.crt"]), [BOB]))
    ti.check_decrypted(d, ent)


# --- content ciphers -----------------------------------------------------

@case("3des_accepted_and_marked_weak_openssl", "openssl", "cipher")
def _():
    ent = ti.inner("3des")
    out = encrypt(ent, ["bob.crt"], cipher="-des-ede3-cbc")
    check_eq(cipher_of(out), "DES-EDE3-CBC", "precondition: cipher")
    d = ti.deliver(ti.mail(out, [BOB]))
    ti.check_decrypted(d, ent)
    check("weak cipher DES-EDE3-CBC" in (d.one("X-Kmilter-Decrypted") or ""),
          "X-Kmilter-Decrypted: %r" % d.get("X-Kmilter-Decrypted"))


@case("3des_accepted_gpgsm", "gpgsm", "cipher")
def _():
    ent = ti.inner("3des-gpgsm")
    out = gpgsm_encrypt_3des(ent)
    check_eq(cipher_of(out), "DES-EDE3-CBC", "precondition: cipher")
    d = ti.deliver(ti.mail(out, [BOB]))
    ti.check_decrypted(d, ent)
    check("weak cipher" in (d.one("X-Kmilter-Decrypted") or ""), "header: %r"
          % d.get("X-Kmilter-Decrypted"))


@case("rc2_kept_encrypted_and_downgraded", "openssl", "cipher")
def _():
    for c in ("-rc2-40-cbc", "-rc2-cbc"):
        raw = ti.mail(encrypt(ti.inner("rc2" + c), ["bob.crt"], cipher=c, legacy=True), [BOB])
        d = ti.deliver(raw)
        ti.check_left_as_sent(d, raw, c)
        check(b"rc2" + c.encode() not in d.msg, "%s: plaintext delivered" % c)
        check_eq(d.fields.get("result"), "downgraded", "%s: result (%s)" % (c, d.line))
        check("content cipher RC2-CBC is not accepted" in d.line, "%s: log line does not "
              "say why: %s" % (c, d.line))


def main():
    base = tempfile.mkdtemp(prefix="t-clients.")
    os.chmod(base, 0o755)
    atexit.register(ti.cleanup, base)
    t0 = time.time()
    try:
        ti.setup(base)
        ti.mkuser("eve", EVE, ti.path("outca.crt"), ti.path("outca.key"))
    except (ti.SetupError, ti.labsmtp.LabError, OSError, subprocess.SubprocessError) as e:
        print("FAIL setup: %s" % e, flush=True)
        return 1
    rc = suite.run()
    cells = sorted(tally.items())
    print("FIGURE t-clients cases by producer/kind (held/run): " +
          ", ".join("%s/%s %d/%d" % (p, k, v[1], v[0]) for (p, k), v in cells), flush=True)
    print("FIGURE t-clients total %d/%d held, %.1fs" % (
        sum(v[1] for v in tally.values()), sum(v[0] for v in tally.values()),
        time.time() - t0), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
