#!/usr/bin/python3
"""revocation_http - the outside CA's servers for tests/e2e/t-revocation.py,
on 127.0.0.1 only: GET /NAME serves DIR/NAME (the CRLs, a garbage CRL);
POST /ocsp answers an OCSP request with `openssl ocsp` in responder mode
over the CA's index (run once per request: openssl 3.0's own -port
listens on every address); POST /junk answers garbage with the OCSP
content type.  Each request is logged to stderr as "REQ METHOD PATH", the
count tests look at.

usage: revocation_http.py PORT DIR CA_CERT CA_KEY INDEX
"""
import http.server
import os
import subprocess
import sys

PORT, DIR, CA, KEY, INDEX = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def answer(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        sys.stderr.write("REQ GET %s\n" % self.path)
        sys.stderr.flush()
        name = os.path.basename(self.path)
        try:
            with open(os.path.join(DIR, name), "rb") as fp:
                self.answer(200, "application/pkix-crl", fp.read())
        except OSError:
            self.answer(404, "text/plain", b"not found\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        req = self.rfile.read(n)
        sys.stderr.write("REQ POST %s\n" % self.path)
        sys.stderr.flush()
        if self.path.startswith("/junk"):
            self.answer(200, "application/ocsp-response", b"\x30\x82\x01\x00 this is not OCSP")
            return
        r = subprocess.run(["openssl", "ocsp", "-index", INDEX, "-CA", CA, "-rsigner", CA,
                            "-rkey", KEY, "-nmin", "60", "-reqin", "/dev/stdin",
                            "-respout", "/dev/stdout"], input=req, capture_output=True)
        self.answer(200 if r.returncode == 0 else 500, "application/ocsp-response", r.stdout)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
