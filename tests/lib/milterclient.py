"""milterclient - a client of the milter wire protocol (the MTA's side), v6.

Written for kmilter's protocol tests: it speaks to a milter on a unix or
inet socket exactly as Postfix or Sendmail would, and collects every reply
and every modification request.  Standard library only.

Wire format: every packet is a 4-byte big-endian length (which counts the
command byte), one command byte, then the data.

    c = MilterClient("/tmp/x/milter.sock")
    neg = c.negotiate()                  # Negotiation(version, actions, protocol, macros)
    c.macros("C", {"j": "mx.example.com", "{client_addr}": "192.0.2.1"})
    r = c.connect("client.example", "4", 25, "192.0.2.1")   # Reply
    r = c.helo("client.example")
    r = c.mail("<a@example.com>")
    r = c.rcpt("<b@example.org>")
    r = c.data()
    r = c.header("Subject", "hi")
    r = c.eoh()
    r = c.body(b"...")                   # split into chunks of at most 65535
    res = c.eom()                        # EomResult(reply, mods)
    c.abort(); c.quit()

Replies are Reply(code, text): code is one of 'continue', 'accept',
'reject', 'tempfail', 'discard', 'replycode', 'skip', 'connfail',
'shutdown', or None when the milter negotiated "no reply" for that step.
Modifications are Mod(kind, ...) tuples with kind one of addheader,
chgheader, insheader, replbody, addrcpt, addrcpt_par, delrcpt, chgfrom,
quarantine, setsymlist.
"""

import socket
import struct

# Commands (MTA -> milter)
C_ABORT, C_BODY, C_CONNECT, C_MACRO, C_BODYEOB = b"A", b"B", b"C", b"D", b"E"
C_HELO, C_QUIT_NC, C_HEADER, C_MAIL, C_EOH = b"H", b"K", b"L", b"M", b"N"
C_OPTNEG, C_QUIT, C_RCPT, C_DATA, C_UNKNOWN = b"O", b"Q", b"R", b"T", b"U"

# Protocol flags (what the MTA may leave out / what needs no reply)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NOUNKNOWN, P_NODATA, P_SKIP, P_RCPT_REJ = 0x100, 0x200, 0x400, 0x800
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_DATA, P_NR_UNKN, P_NR_EOH, P_NR_BODY = 0x10000, 0x20000, 0x40000, 0x80000
P_HDR_LEADSPC = 0x100000
P_ALL = 0x1FFFFF

# Actions (what the milter may do)
F_ADDHDRS, F_CHGBODY, F_ADDRCPT, F_DELRCPT = 0x1, 0x2, 0x4, 0x8
F_CHGHDRS, F_QUARANTINE, F_CHGFROM, F_ADDRCPT_PAR = 0x10, 0x20, 0x40, 0x80
F_SETSYMLIST = 0x100
F_ALL = 0x1FF

# Macro stages for SETSYMLIST in the negotiation reply
STAGES = {0: "connect", 1: "helo", 2: "envfrom", 3: "envrcpt",
          4: "data", 5: "eom", 6: "eoh"}

MAX_PACKET = 64 * 1024 * 1024   # refuse replies claiming to be larger
CHUNK = 65535

_FINAL = {b"c": "continue", b"a": "accept", b"r": "reject", b"t": "tempfail",
          b"d": "discard", b"y": "replycode", b"s": "skip", b"f": "connfail",
          b"4": "shutdown"}


class ProtocolError(Exception):
    """The milter sent something that is not valid milter protocol."""


class ConnectionClosed(ProtocolError):
    """The milter closed the connection."""


class Reply(tuple):
    """A step's answer: (code, text); text is set for 'replycode'."""
    __slots__ = ()

    def __new__(cls, code, text=None):
        return tuple.__new__(cls, (code, text))

    code = property(lambda self: self[0])
    text = property(lambda self: self[1])


class Mod(tuple):
    """A modification request: (kind, *fields)."""
    __slots__ = ()

    def __new__(cls, kind, *fields):
        return tuple.__new__(cls, (kind,) + fields)

    kind = property(lambda self: self[0])


class Negotiation:
    def __init__(self, version, actions, protocol, macros):
        self.version = version
        self.actions = actions
        self.protocol = protocol
        self.macros = macros        # stage name -> list of macro names

    def __repr__(self):
        return ("Negotiation(version=%d, actions=%#x, protocol=%#x, macros=%r)"
                % (self.version, self.actions, self.protocol, self.macros))


class EomResult:
    def __init__(self, reply, mods, progress):
        self.reply = reply
        self.mods = mods
        self.progress = progress

    def of(self, kind):
        return [m for m in self.mods if m.kind == kind]

    def body(self):
        """The replacement body (replbody chunks joined), or None."""
        chunks = self.of("replbody")
        if not chunks:
            return None
        return b"".join(m[1] for m in chunks)

    def __repr__(self):
        return "EomResult(%r, %d mods)" % (self.reply, len(self.mods))


def _cstrings(data, n=None):
    """Split NUL-terminated strings; every one must be terminated."""
    if data and not data.endswith(b"\0"):
        raise ProtocolError("string not NUL-terminated")
    parts = data.split(b"\0")[:-1] if data else []
    if n is not None and len(parts) != n:
        raise ProtocolError("expected %d strings, got %d" % (n, len(parts)))
    return [p.decode("utf-8", "surrogateescape") for p in parts]


def decode_packet(buf):
    """Decode one packet from the start of buf.

    Returns (cmd, data, rest) or None when buf holds only part of a packet.
    Raises ProtocolError for a packet that can never be valid.
    """
    if len(buf) < 4:
        return None
    (n,) = struct.unpack(">I", buf[:4])
    if n == 0:
        raise ProtocolError("zero-length packet")
    if n > MAX_PACKET:
        raise ProtocolError("packet length %d too large" % n)
    if len(buf) < 4 + n:
        return None
    return buf[4:5], buf[5:4 + n], buf[4 + n:]


def decode_negotiation(data):
    """Decode the data of an OPTNEG reply."""
    if len(data) < 12:
        raise ProtocolError("short OPTNEG reply (%d bytes)" % len(data))
    version, actions, protocol = struct.unpack(">III", data[:12])
    macros = {}
    rest = data[12:]
    while rest:
        if len(rest) < 5:
            raise ProtocolError("truncated macro list in OPTNEG")
        (stage,) = struct.unpack(">I", rest[:4])
        end = rest.find(b"\0", 4)
        if end < 0:
            raise ProtocolError("macro list not NUL-terminated")
        names = rest[4:end].decode("ascii", "replace").split()
        macros[STAGES.get(stage, "stage%d" % stage)] = names
        rest = rest[end + 1:]
    return Negotiation(version, actions, protocol, macros)


def decode_mod(cmd, data):
    """Decode a modification request; None if cmd is not one."""
    if cmd == b"h":
        return Mod("addheader", *_cstrings(data, 2))
    if cmd in (b"m", b"i"):
        if len(data) < 4:
            raise ProtocolError("short %s request" % cmd.decode())
        (idx,) = struct.unpack(">I", data[:4])
        name, value = _cstrings(data[4:], 2)
        return Mod("chgheader" if cmd == b"m" else "insheader", idx, name, value)
    if cmd == b"b":
        return Mod("replbody", data)
    if cmd == b"+":
        return Mod("addrcpt", *_cstrings(data, 1))
    if cmd == b"2":
        parts = _cstrings(data)
        if not parts:
            raise ProtocolError("empty ADDRCPT_PAR")
        return Mod("addrcpt_par", parts[0], parts[1:])
    if cmd == b"-":
        return Mod("delrcpt", *_cstrings(data, 1))
    if cmd == b"e":
        parts = _cstrings(data)
        if not parts:
            raise ProtocolError("empty CHGFROM")
        return Mod("chgfrom", parts[0], parts[1:])
    if cmd == b"q":
        return Mod("quarantine", *_cstrings(data, 1))
    if cmd == b"l":
        return Mod("setsymlist", data)
    return None


def decode_reply(cmd, data):
    """Decode a final reply packet into a Reply."""
    if cmd not in _FINAL:
        raise ProtocolError("unknown reply command %r" % cmd)
    code = _FINAL[cmd]
    if code == "replycode":
        (text,) = _cstrings(data, 1)
        if len(text) < 3 or not text[:3].isdigit() or text[0] not in "45":
            raise ProtocolError("bad REPLYCODE %r" % text)
        return Reply(code, text)
    return Reply(code)


class MilterClient:
    """One MTA-side connection to a milter."""

    def __init__(self, address, timeout=10.0):
        """address: a unix socket path, 'unix:/path', or (host, port)."""
        if isinstance(address, str):
            path = address[5:] if address.startswith("unix:") else address
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(address, timeout=timeout)
            self.sock.settimeout(timeout)
        self.buf = b""
        self.protocol = 0
        self.neg = None
        self.closed = False

    # -- framing -------------------------------------------------------
    def send(self, cmd, data=b""):
        pkt = struct.pack(">I", len(data) + 1) + cmd + data
        self.sock.sendall(pkt)

    def send_raw(self, raw):
        """Send raw bytes (malformed-input tests)."""
        self.sock.sendall(raw)

    def read_packet(self):
        while True:
            p = decode_packet(self.buf)
            if p is not None:
                cmd, data, self.buf = p
                return cmd, data
            try:
                more = self.sock.recv(1 << 16)
            except socket.timeout:
                raise ProtocolError("timeout waiting for the milter")
            except ConnectionResetError:
                more = b""
            if not more:
                self.closed = True
                raise ConnectionClosed("milter closed the connection")
            self.buf += more

    def is_closed_by_peer(self, wait=2.0):
        """True when the milter closes the connection within wait seconds."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            more = self.sock.recv(1 << 16)
            if more:
                self.buf += more
                return False
            return True
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(old)

    def _step(self, cmd, data, noreply_flag, skip_flag=0):
        """Send one step; wait for its reply unless negotiated away."""
        if skip_flag and (self.protocol & skip_flag):
            return Reply(None)
        self.send(cmd, data)
        if noreply_flag and (self.protocol & noreply_flag):
            return Reply(None)
        while True:
            c, d = self.read_packet()
            if c == b"p":
                continue
            return decode_reply(c, d)

    # -- the steps -----------------------------------------------------
    def negotiate(self, version=6, actions=F_ALL, protocol=P_ALL):
        self.send(C_OPTNEG, struct.pack(">III", version, actions, protocol))
        c, d = self.read_packet()
        if c != C_OPTNEG:
            raise ProtocolError("expected OPTNEG reply, got %r" % c)
        self.neg = decode_negotiation(d)
        self.protocol = self.neg.protocol
        return self.neg

    def macros(self, stage_cmd, values):
        """Define macros for the step whose command letter is stage_cmd."""
        data = stage_cmd.encode() if isinstance(stage_cmd, str) else stage_cmd
        for k, v in values.items():
            data += k.encode() + b"\0" + v.encode() + b"\0"
        self.send(C_MACRO, data)

    def connect(self, hostname, family="4", port=25, address="127.0.0.1"):
        if family in ("4", "6"):
            data = (hostname.encode() + b"\0" + family.encode() +
                    struct.pack(">H", port) + address.encode() + b"\0")
        elif family == "L":
            data = (hostname.encode() + b"\0L" + struct.pack(">H", 0) +
                    address.encode() + b"\0")
        else:
            data = hostname.encode() + b"\0U"
        return self._step(C_CONNECT, data, P_NR_CONN, P_NOCONNECT)

    def helo(self, name):
        return self._step(C_HELO, name.encode() + b"\0", P_NR_HELO, P_NOHELO)

    def mail(self, sender, *args):
        data = b"".join(a.encode() + b"\0" for a in (sender,) + args)
        return self._step(C_MAIL, data, P_NR_MAIL, P_NOMAIL)

    def rcpt(self, rcpt, *args):
        data = b"".join(a.encode() + b"\0" for a in (rcpt,) + args)
        return self._step(C_RCPT, data, P_NR_RCPT, P_NORCPT)

    def data(self):
        return self._step(C_DATA, b"", P_NR_DATA, P_NODATA)

    def header(self, name, value):
        if not (self.protocol & P_HDR_LEADSPC) and value.startswith(" "):
            value = value[1:]
        data = name.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0"
        return self._step(C_HEADER, data, P_NR_HDR, P_NOHDRS)

    def eoh(self):
        return self._step(C_EOH, b"", P_NR_EOH, P_NOEOH)

    def body(self, data, chunk=CHUNK):
        """Send the body in chunks; returns the last reply (or the first
        that is not 'continue')."""
        last = Reply(None)
        if self.protocol & P_NOBODY:
            return last
        for i in range(0, len(data), chunk):
            last = self._step(C_BODY, data[i:i + chunk], P_NR_BODY)
            if last.code not in (None, "continue"):
                return last
        return last

    def eom(self, data=b""):
        """End of message: collect modifications until the final reply."""
        self.send(C_BODYEOB, data)
        mods, progress = [], 0
        while True:
            c, d = self.read_packet()
            if c == b"p":
                progress += 1
                continue
            m = decode_mod(c, d)
            if m is not None:
                mods.append(m)
                continue
            return EomResult(decode_reply(c, d), mods, progress)

    def abort(self):
        """Abort the current message (no reply in the protocol)."""
        self.send(C_ABORT)

    def quit(self):
        try:
            self.send(C_QUIT)
        except OSError:
            pass
        self.close()

    def quit_nc(self):
        """QUIT_NC: the connection is reused for a new SMTP connection."""
        self.send(C_QUIT_NC)

    def close(self):
        try:
            self.sock.close()
        finally:
            self.closed = True

    # -- convenience -----------------------------------------------------
    def message(self, sender, rcpts, headers, body, queue_id="TESTQID",
                client=("client.example", "4", 25, "192.0.2.10"),
                helo="client.example", connect=True):
        """Run one whole transaction; return (steps, EomResult or None).

        steps is a list of (name, Reply).  Stops at the first reply that is
        neither 'continue' nor None and returns None for the eom result.
        """
        steps = []

        def ok(name, r):
            steps.append((name, r))
            return r.code in (None, "continue")

        if connect:
            self.macros("C", {"j": "mx.example.com", "{daemon_name}": "smtpd",
                              "{client_addr}": client[3]})
            if not ok("connect", self.connect(*client)):
                return steps, None
            if not ok("helo", self.helo(helo)):
                return steps, None
        self.macros("M", {"i": queue_id, "{mail_addr}": sender.strip("<>")})
        if not ok("mail", self.mail(sender)):
            return steps, None
        for r in rcpts:
            self.macros("R", {"{rcpt_addr}": r.strip("<>")})
            if not ok("rcpt " + r, self.rcpt(r)):
                return steps, None
        if not ok("data", self.data()):
            return steps, None
        for name, value in headers:
            if not ok("header " + name, self.header(name, value)):
                return steps, None
        if not ok("eoh", self.eoh()):
            return steps, None
        if not ok("body", self.body(body)):
            return steps, None
        self.macros("E", {"i": queue_id})
        res = self.eom()
        steps.append(("eom", res.reply))
        return steps, res
