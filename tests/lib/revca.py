"""revca - an outside CA for the revocation tests and bench: `openssl ca`
to issue and revoke, CRLs, and its OCSP/CRL server on 127.0.0.1
(tests/lablib/revocation_http.py), started here and stopped by pid by the
caller."""
import os
import socket
import subprocess
import sys
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HTTPD = os.path.join(TOP, "tests", "lablib", "revocation_http.py")


class CAError(Exception):
    pass


def run(argv):
    r = subprocess.run(argv, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise CAError("%s: rc %d: %s" % (" ".join(argv[:3]), r.returncode,
                                         (r.stderr or r.stdout)[-400:].decode("utf-8", "replace")))
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ca_conf(d):
    with open(os.path.join(d, "ca.cnf"), "w") as fp:
        fp.write("""[ ca ]
default_ca = CA_default
[ CA_default ]
dir = %(d)s
database = %(d)s/index.txt
new_certs_dir = %(d)s/newcerts
certificate = %(d)s/ca.crt
private_key = %(d)s/ca.key
serial = %(d)s/serial
crlnumber = %(d)s/crlnumber
default_md = sha256
default_days = 700
default_crl_days = 1
policy = pol
unique_subject = no
[ pol ]
organizationName = optional
commonName = supplied
emailAddress = optional
""" % {"d": d})
    return os.path.join(d, "ca.cnf")


def mkca(d, cn):
    os.makedirs(os.path.join(d, "newcerts"))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as fp:
        fp.write("1000\n")
    with open(os.path.join(d, "crlnumber"), "w") as fp:
        fp.write("01\n")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.crt"), "-days", "3650",
         "-subj", "/O=Outside Test/CN=" + cn,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash"])
    return ca_conf(d)


def issue(d, cnf, email, ocsp=None, cdp=None):
    """A user certificate (RSA, sign and encrypt) from the CA in d."""
    name = email.split("@")[0] + "." + email.split("@")[1].split(".")[0]
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", key])
    run(["openssl", "req", "-new", "-key", key, "-subj",
         "/O=Outside Test/CN=%s/emailAddress=%s" % (name, email), "-out", key + ".csr"])
    ext = ["basicConstraints=CA:FALSE",
           "keyUsage=critical,digitalSignature,keyEncipherment",
           "extendedKeyUsage=emailProtection", "subjectAltName=email:" + email,
           "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
    if ocsp:
        ext.append("authorityInfoAccess=OCSP;URI:" + ocsp)
    if cdp:
        ext.append("crlDistributionPoints=URI:" + cdp)
    with open(key + ".ext", "w") as fp:
        fp.write("[ usr ]\n" + "\n".join(ext) + "\n")
    run(["openssl", "ca", "-batch", "-notext", "-config", cnf, "-in", key + ".csr",
         "-out", crt, "-extfile", key + ".ext", "-extensions", "usr"])
    os.chmod(crt, 0o644)
    return crt, key


def revoke(cnf, crt):
    run(["openssl", "ca", "-config", cnf, "-revoke", crt, "-crl_reason", "keyCompromise"])


def gencrl(cnf, out):
    run(["openssl", "ca", "-config", cnf, "-gencrl", "-out", out])
    os.chmod(out, 0o644)


def start_server(ca_dir, port, log_path):
    """The CA's OCSP/CRL server on 127.0.0.1:port (a Popen), None if it
    does not listen within 10 s (then it is stopped)."""
    p = subprocess.Popen([sys.executable, HTTPD, str(port), ca_dir,
                          os.path.join(ca_dir, "ca.crt"), os.path.join(ca_dir, "ca.key"),
                          os.path.join(ca_dir, "index.txt")],
                         stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return p
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.05)
    p.terminate()
    p.wait()
    return None
