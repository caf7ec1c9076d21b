"""smimeazone - DNSSEC-signed zones with SMIMEA records (RFC 8162), served
on loopback by NSD, for t-smimea and the SMIMEA latency figure.

    ns = Nsd(workdir)                      # nothing runs yet
    z = ns.zone("smimea.example")          # KSK + ZSK made (ldns-keygen)
    z.smimea("carol@smimea.example", der)  # usage 3, selector 0, mtype 0
    z.raw("x._smimecert", "TYPE53", "\\# 4 03010001")
    ns.start()                             # signs every zone, writes the
                                           # trust anchor file, starts nsd
    ns.ta                                  # DS lines of the zones' KSKs
    ns.stop()                              # by pid

Zone options: signed=False serves the zone unsigned (no keys, nothing in
the trust anchor file: answers are insecure); wrong_ta=True puts the DS of a key the zone does not use in
the trust anchor file (nothing in it can validate); tamper(owner) changes
one octet of a record after signing (its RRSIG no longer matches).
nsd runs in the foreground (-d) on 127.0.0.1 and a free port, its own
nsd.conf, no chroot, no control socket; start() waits for it to answer the
SOA of every zone (drill), never a sleep.
Standard library, ldns-keygen, ldns-signzone, drill (ldnsutils), nsd.
"""
import hashlib
import os
import signal
import socket
import subprocess
import time


def owner(addr):
    """RFC 8162 section 3: sha256(local part)[:28] hex . _smimecert . domain"""
    local, _, domain = addr.rpartition("@")
    return hashlib.sha256(local.encode()).hexdigest()[:56] + "._smimecert." + domain


def free_port():
    """A UDP and TCP port free on 127.0.0.1 right now."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()
            s.close()
    raise RuntimeError("no free port")


def run(argv, cwd=None):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("%s: rc %d: %s" % (" ".join(argv[:2]), r.returncode,
                                              r.stderr.decode("utf-8", "replace")[-400:]))
    return r.stdout.decode()


class Zone:
    def __init__(self, ns, name, wrong_ta=False, signed=True):
        self.ns, self.name, self.wrong_ta, self.is_signed = ns, name, wrong_ta, signed
        self.dir = os.path.join(ns.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.records = []
        self.tampered = []
        self.signed = os.path.join(self.dir, "zone.signed")
        if not signed:
            return
        alg = "ECDSAP256SHA256"
        self.ksk = run(["ldns-keygen", "-k", "-a", alg, name], cwd=self.dir).strip()
        self.zsk = run(["ldns-keygen", "-a", alg, name], cwd=self.dir).strip()
        self.other = None
        if wrong_ta:
            self.other = run(["ldns-keygen", "-k", "-a", alg, name], cwd=self.dir).strip()

    def raw(self, rel, rtype, rdata):
        """A record: owner relative to the zone, type, rdata text."""
        self.records.append("%s IN %s %s" % (rel, rtype, rdata))

    def smimea(self, addr, der, usage=3, selector=0, mtype=0):
        """An SMIMEA record for addr (RFC 3597 generic syntax)."""
        rel = owner(addr)[:-(len(self.name) + 1)]
        rd = bytes([usage, selector, mtype]) + der
        self.raw(rel, "TYPE53", "\\# %d %s" % (len(rd), rd.hex()))

    def tamper(self, addr):
        """After signing, change one octet of addr's record."""
        self.tampered.append(owner(addr) + ".")

    def sign(self):
        src = os.path.join(self.dir, "zone")
        with open(src, "w") as fp:
            fp.write("$ORIGIN %s.\n$TTL 300\n" % self.name)
            fp.write("@ IN SOA ns.%s. admin.%s. 1 3600 600 86400 60\n" % (self.name, self.name))
            fp.write("@ IN NS ns.%s.\nns IN A 127.0.0.1\n" % self.name)
            for r in self.records:
                fp.write(r + "\n")
            if not self.is_signed:
                os.rename(src, self.signed)
                return ""
            for k in (self.ksk, self.zsk):
                with open(os.path.join(self.dir, k + ".key")) as kf:
                    fp.write(kf.read())
        run(["ldns-signzone", "-n", "-f", self.signed, src,
             os.path.join(self.dir, self.ksk), os.path.join(self.dir, self.zsk)], cwd=self.dir)
        if self.tampered:
            self._tamper()
        with open(os.path.join(self.dir, (self.other or self.ksk) + ".ds")) as fp:
            return fp.read()

    def _tamper(self):
        out = []
        with open(self.signed) as fp:
            for line in fp:
                f = line.split()
                if len(f) > 4 and f[0] in self.tampered and f[3] in ("SMIMEA", "TYPE53"):
                    # flip the last hex digit of the rdata
                    last = line.rstrip("\n")
                    c = last[-1]
                    line = last[:-1] + ("0" if c != "0" else "1") + "\n"
                out.append(line)
        with open(self.signed, "w") as fp:
            fp.writelines(out)


class Nsd:
    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.zones = []
        self.port = None
        self.proc = None
        self.ta = os.path.join(workdir, "trust-anchor")

    def zone(self, name, wrong_ta=False, signed=True):
        z = Zone(self, name, wrong_ta, signed)
        self.zones.append(z)
        return z

    def stub(self):
        return "127.0.0.1@%d" % self.port

    def start(self, secs=20.0):
        if self.port is None:
            self.port = free_port()
            with open(self.ta, "w") as fp:
                for z in self.zones:
                    fp.write(z.sign())
            os.chmod(self.ta, 0o644)
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as fp:
            fp.write("server:\n\tip-address: 127.0.0.1@%d\n\tport: %d\n" % (self.port, self.port))
            for k, v in (("database", ""), ("zonelistfile", "zone.list"),
                         ("xfrdfile", "xfrd.state"), ("pidfile", "nsd.pid"),
                         ("username", ""), ("chroot", ""), ("zonesdir", self.dir),
                         ("logfile", "nsd.log")):
                fp.write('\t%s: "%s"\n' % (k, v if k == "zonesdir" or not v
                                          else os.path.join(self.dir, v)))
            fp.write("\tserver-count: 1\n\tverbosity: 1\n\thide-version: yes\n")
            fp.write("remote-control:\n\tcontrol-enable: no\n")
            for z in self.zones:
                fp.write('zone:\n\tname: %s\n\tzonefile: "%s"\n' % (z.name, z.signed))
        log = open(os.path.join(self.dir, "nsd.stderr"), "ab")
        self.proc = subprocess.Popen(["nsd", "-d", "-c", conf], stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.time() + secs
        for z in self.zones:
            while True:
                r = subprocess.run(["drill", "-p", str(self.port), "@127.0.0.1", z.name, "SOA"],
                                   capture_output=True, timeout=10)
                if r.returncode == 0 and b"NOERROR" in r.stdout and b"\tSOA\t" in r.stdout:
                    break
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("nsd does not answer for %s (see %s/nsd.log)"
                                       % (z.name, self.dir))
                time.sleep(0.05)

    def stop(self, secs=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(secs)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(secs)
        self.proc = None
