#!/usr/bin/python3
"""kmip-corpus.py - write the seed corpus of fuzz_kmip (and test_kmip_msg).

usage: tests/fuzz/kmip-corpus.py [SAMPLES [OUTDIR]]
  SAMPLES  the recorded PyKMIP messages (default /work/shared/km/ttlv-samples.txt)
  OUTDIR   where the seeds go (default tests/fuzz/corpus/kmip)

Two kinds of seed, one KMIP response message per file:
  recorded     the "### hex" of every response in SAMPLES, as PyKMIP 0.10 sent it
               (locate-12, get-12, locate-20, get-20);
  reconstructed/synthesized  the messages SAMPLES shows only decoded or not at all,
               built here in the shape PyKMIP answers (same response header:
               protocol version, time stamp, batch count 1; one batch item with the
               operation echoed): the RSA PrivateKey Get of SAMPLES with stand-in key
               bytes of the recorded length, a Certificate Get, Register, Get
               Attributes, Discover Versions, Activate, Revoke, Destroy, and failures
               (Item Not Found, General Failure, a pending status).
The output is deterministic: run it again and git shows no change.
"""
import os
import re
import struct
import sys

STRUCT, INT, LONG, BIGINT, ENUM, BOOL, TEXT, BYTES, DATE, INTERVAL = range(1, 11)

T_ATTRIBUTE = 0x420008
T_ATTR_NAME = 0x42000A
T_ATTR_VALUE = 0x42000B
T_BATCH_COUNT = 0x42000D
T_BATCH_ITEM = 0x42000F
T_CERTIFICATE = 0x420013
T_CERT_TYPE = 0x42001D
T_CERT_VALUE = 0x42001E
T_CRYPTO_ALG = 0x420028
T_CRYPTO_LEN = 0x42002A
T_KEY_BLOCK = 0x420040
T_KEY_FORMAT = 0x420042
T_KEY_MATERIAL = 0x420043
T_KEY_VALUE = 0x420045
T_NAME_TYPE = 0x420054
T_NAME_VALUE = 0x420055
T_OBJECT_TYPE = 0x420057
T_OPERATION = 0x42005C
T_PRIVATE_KEY = 0x420064
T_PROTO_VERSION = 0x420069
T_VER_MAJOR = 0x42006A
T_VER_MINOR = 0x42006B
T_RESP_HEADER = 0x42007A
T_RESP_MESSAGE = 0x42007B
T_RESP_PAYLOAD = 0x42007C
T_RESULT_MESSAGE = 0x42007D
T_RESULT_REASON = 0x42007E
T_RESULT_STATUS = 0x42007F
T_TIME_STAMP = 0x420092
T_UID = 0x420094

STAMP = 0x6B03FAA0          # the time stamp of the recorded responses


def item(tag, typ, value):
    """One TTLV item: tag, type, length, value padded to 8 bytes."""
    head = struct.pack(">I", tag)[1:] + bytes([typ]) + struct.pack(">I", len(value))
    return head + value + b"\0" * (-len(value) % 8)


def st(tag, *children):
    return item(tag, STRUCT, b"".join(children))


def i32(tag, v):
    return item(tag, INT, struct.pack(">i", v))


def enum(tag, v):
    return item(tag, ENUM, struct.pack(">I", v))


def text(tag, s):
    return item(tag, TEXT, s.encode())


def date(tag, v):
    return item(tag, DATE, struct.pack(">q", v))


def version(major, minor):
    return st(T_PROTO_VERSION, i32(T_VER_MAJOR, major), i32(T_VER_MINOR, minor))


def response(op, payload=None, status=0, reason=None, message=None):
    """A response message as PyKMIP sends it, with one batch item."""
    fields = [enum(T_OPERATION, op), enum(T_RESULT_STATUS, status)]
    if reason is not None:
        fields.append(enum(T_RESULT_REASON, reason))
    if message is not None:
        fields.append(text(T_RESULT_MESSAGE, message))
    if payload is not None:
        fields.append(st(T_RESP_PAYLOAD, *payload))
    header = st(T_RESP_HEADER, version(1, 2), date(T_TIME_STAMP, STAMP),
                i32(T_BATCH_COUNT, 1))
    return st(T_RESP_MESSAGE, header, st(T_BATCH_ITEM, *fields))


def attr(name, value):
    return st(T_ATTRIBUTE, text(T_ATTR_NAME, name), value)


def recorded(samples):
    """(name, bytes) of every response with a hex dump in SAMPLES."""
    out, proto, what = [], None, None
    lines = open(samples).read().splitlines()
    for n, line in enumerate(lines):
        m = re.match(r"# KMIP (\d)\.(\d) \(client protocol version\)", line)
        if m:
            proto = m.group(1) + m.group(2)
        m = re.match(r"## (\w+) response", line)
        if m:
            what = m.group(1).lower()
        if line == "### hex" and what is not None:
            out.append(("%s-%s" % (what, proto), bytes.fromhex(lines[n + 1])))
            what = None
    return out


def privkey_get():
    """The recorded RSA-2048 PrivateKey Get, with stand-in key bytes."""
    prefix = bytes.fromhex("308204be020100300d06092a864886f70d01010105000482"
                           "04a8308204a40201000282010100")
    material = prefix + bytes((i * 7) & 0xFF for i in range(1218 - len(prefix)))
    block = st(T_KEY_BLOCK, enum(T_KEY_FORMAT, 4),
               st(T_KEY_VALUE, item(T_KEY_MATERIAL, BYTES, material)),
               enum(T_CRYPTO_ALG, 4), i32(T_CRYPTO_LEN, 2048))
    return response(10, [enum(T_OBJECT_TYPE, 4), text(T_UID, "12"),
                         st(T_PRIVATE_KEY, block)])


def cert_get():
    """A Get of a Certificate (X.509), with stand-in DER bytes."""
    der = bytes.fromhex("3082012c308201d2a003020102") + bytes(range(40))
    cert = st(T_CERTIFICATE, enum(T_CERT_TYPE, 1),
              item(T_CERT_VALUE, BYTES, der))
    return response(10, [enum(T_OBJECT_TYPE, 1), text(T_UID, "4"), cert])


def synthesized():
    name = st(T_ATTR_VALUE, text(T_NAME_VALUE, "share:dave@example.com#2"),
              enum(T_NAME_TYPE, 1))
    attrs = [text(T_UID, "2"),
             attr("State", enum(T_ATTR_VALUE, 2)),
             attr("Name", name),
             attr("Object Type", enum(T_ATTR_VALUE, 7)),
             attr("Initial Date", date(T_ATTR_VALUE, STAMP - 60)),
             attr("Object Group", text(T_ATTR_VALUE, "kmilter")),
             attr("Cryptographic Usage Mask", i32(T_ATTR_VALUE, 0x40))]
    return [
        ("get-privkey-12", privkey_get()),
        ("get-cert-12", cert_get()),
        ("register-12", response(3, [text(T_UID, "13")])),
        ("getattrs-12", response(11, attrs)),
        ("discover-12", response(30, [version(1, 2), version(1, 1),
                                      version(1, 0)])),
        ("activate-12", response(18, [text(T_UID, "13")])),
        ("revoke-12", response(19, [text(T_UID, "13")])),
        ("destroy-12", response(20, [text(T_UID, "13")])),
        ("locate-none-12", response(8, [])),
        ("err-notfound-12", response(10, status=1, reason=1,
                                     message="Could not locate object: 99")),
        ("err-general-12", response(8, status=1, reason=0x100,
                                    message="Internal server error\n")),
        ("err-pending-12", response(10, status=2)),
    ]


def main():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    samples = sys.argv[1] if len(sys.argv) > 1 else \
        "/work/shared/km/ttlv-samples.txt"
    outdir = sys.argv[2] if len(sys.argv) > 2 else \
        os.path.join(top, "tests", "fuzz", "corpus", "kmip")
    os.makedirs(outdir, exist_ok=True)
    seeds = recorded(samples) + synthesized()
    for name, data in seeds:
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), outdir))


if __name__ == "__main__":
    main()
