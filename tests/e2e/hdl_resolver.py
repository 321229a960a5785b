"""A Handle resolver written from the spec that resolves the way CNRI's
reference client (hdllib 9.2, `HandleResolver` in RM_GLOBAL with one
configured global site) does, as docs/hierarchy.md describes the walk and
certified answers, and docs/handle-protocol.md the wire format (HS_SITE,
UDP datagrams, TCP framing, the signed bytes, HS_PUBKEY).

It shares no code with idnode (nor with handle_client.py): struct for the
wire format, `cryptography` for RSA/DSA.

    r = HandleResolver("127.0.0.1", udp_port, tcp_port, public_key=hs_pubkey_data)
    answer = r.resolve("88.100.1/PUMP-0001", certify=True)
    answer.values, r.trace   # the values; every request/answer of the walk

What it does, step by step (section 2.2):
1. `0.*` handles, `0/...` and slashless handles go straight to the global site.
2. Otherwise the prefix lookup `0.NA/<PREFIX upper-cased>`, types HS_SITE,
   HS_SITE.6, HS_SERV, HS_NAMESPACE, flags REC|CA|PO (+CT/RD copied),
   recursion 1, version and serial of the global site record, to the global
   site.
3. A 303 to a `0.NA/` (or slashless) request: the next sites are the
   HS_SITE.PREFIX / HS_NA_DELEGATE values (else the referral's HS_SITE /
   HS_SITE.6), and the SAME encoded bytes are sent there. At most 40 hops.
4. SUCCESS: the HS_SITE / HS_SITE.6 values (exact type names) are the sites.
   No usable site (100, 200, 301, no HS_SITE): one retry of the lookup with
   AT set and the same request id, then ServiceNotFound.
5. The final request: the handle as given, REC|CA|PO (+CT/RD), recursion 0,
   the target site's version and serial, to the server the site's hash rule
   picks, over its UDP or TCP query interface.

Every answer is checked like hdllib does (section 1.3): request id, the RD
digest if RD was sent, with CT the HS_SIGNED credential verified with the
public key of the server record the request was sent to, then RC 2 and an
expiration in the past. Differences from hdllib, on purpose: one transport
per resolver (no UDP-then-TCP fallback, no racing), no cache, a bad
signature raises at once (hdllib drops it over UDP and retries), HS_SERV /
HS_SERV.PREFIX indirection is not followed (raises).

Hooks for tests: `tamper(raw, hop)` may change the raw answer of a hop
before it is checked; `clock` and `request_ids` make the requests
reproducible; subclasses may override `exchange` (a fake network).
"""
import hashlib
import itertools
import os
import socket
import struct
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

# Opcodes, response codes, flags (docs/handle-protocol.md).
RESOLUTION, GET_SITE_INFO = 1, 2
SUCCESS, ERROR = 1, 2
HANDLE_NOT_FOUND, VALUES_NOT_FOUND = 100, 200
SERVER_NOT_RESP, SERVICE_REFERRAL, PREFIX_REFERRAL = 301, 302, 303
AT, CT, ENC, REC = 0x80000000, 0x40000000, 0x20000000, 0x10000000
CA, CN, KC, PO, RD, DNR = 0x08000000, 0x04000000, 0x02000000, 0x01000000, 0x00800000, 0x00100000
DEFAULT_FLAGS = REC | CA | PO

PREFIX_LOOKUP_TYPES = ("HS_SITE", "HS_SITE.6", "HS_SERV", "HS_NAMESPACE")
UDP_DATAGRAM = 512
UDP_PAYLOAD = 492
MAX_MESSAGE = 262144
MAX_HOPS = 40
REQUEST_LIFETIME = 43200  # what hdllib puts in a request's expiration (now + 12 h)

ENVELOPE = struct.Struct(">BBBBIIII")  # 20 bytes
HEADER = struct.Struct(">IIIhBBII")  # 24 bytes


class HandleError(Exception):
    """A non-SUCCESS final answer (hdllib throws a HandleException)."""

    def __init__(self, code, message, response=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.response = code, message, response


class ProtocolError(Exception):
    """An answer that does not follow the wire format."""


class SignatureError(Exception):
    """MISSING_OR_INVALID_SIGNATURE: a certified answer without a valid
    HS_SIGNED credential by the expected key, or a key that cannot be used."""


class ServiceNotFound(Exception):
    """SERVICE_NOT_FOUND: no site for the prefix (after the AT retry)."""


# ---------------------------------------------------------------- encoding

def put_str(b):
    return struct.pack(">I", len(b)) + b


class Reader:
    """Big-endian reader; every length is bounded by what remains."""

    def __init__(self, data, what="message"):
        self.data, self.at, self.what = data, 0, what

    def take(self, n, field):
        if n < 0 or self.at + n > len(self.data):
            raise ProtocolError(f"{self.what}: {field} needs {n} bytes at {self.at}, "
                                f"{len(self.data) - self.at} left")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def u8(self, field):
        return self.take(1, field)[0]

    def u16(self, field):
        return struct.unpack(">H", self.take(2, field))[0]

    def i16(self, field):
        return struct.unpack(">h", self.take(2, field))[0]

    def u32(self, field):
        return struct.unpack(">I", self.take(4, field))[0]

    def bytes(self, field):
        return self.take(self.u32(field + " length"), field)

    def remaining(self):
        return len(self.data) - self.at

    def end(self, field):
        if self.remaining():
            raise ProtocolError(f"{self.what}: {self.remaining()} bytes after {field}")


def encode_request(opcode, handle, request_id, flags=DEFAULT_FLAGS, serial=-1, recursion=0,
                   version=(2, 11), suggested=(2, 11), expiration=0, indexes=(), types=(),
                   session_id=0):
    """A request as hdllib encodes it: envelope, header, body, credential
    length 0. GET_SITE_INFO's body is the handle only."""
    body = put_str(handle.encode())
    if opcode == RESOLUTION:
        body += struct.pack(">I", len(indexes)) + b"".join(struct.pack(">I", i) for i in indexes)
        body += struct.pack(">I", len(types)) + b"".join(put_str(t.encode()) for t in types)
    header = HEADER.pack(opcode, 0, flags, serial, recursion, 0, expiration & 0xFFFFFFFF,
                         len(body))
    message = header + body + struct.pack(">I", 0)
    envelope = ENVELOPE.pack(version[0], version[1], suggested[0] & 0x1F, suggested[1],
                             session_id, request_id, 0, len(message))
    return envelope + message


def decode_value(r):
    index = r.u32("value index")
    timestamp = r.u32("value timestamp")
    ttl_type = r.u8("value ttl type")
    ttl = r.u32("value ttl")
    permissions = r.u8("value permissions")
    kind = r.bytes("value type").decode()
    data = r.bytes("value data")
    references = []
    for _ in range(r.u32("reference count")):
        references.append((r.bytes("reference handle").decode(), r.u32("reference index")))
    return {"index": index, "timestamp": timestamp, "ttl_type": ttl_type, "ttl": ttl,
            "permissions": permissions, "type": kind, "data": data,
            "references": references}


DIGEST_SIZES = {1: 16, 2: 20, 3: 32}


def digest(algorithm, data):
    return {1: hashlib.md5, 2: hashlib.sha1, 3: hashlib.sha256}[algorithm](data).digest()


class Message:
    """A whole message (envelope included), decoded. `rd` says whether the
    body starts with a request digest (the request asked for one)."""

    def __init__(self, raw, rd=None):
        self.raw = bytes(raw)
        if len(raw) < 20 + 24 + 4:
            raise ProtocolError(f"message of {len(raw)} bytes")
        (self.major, self.minor, b2, self.suggested_minor, self.session_id, self.request_id,
         self.sequence, self.length) = ENVELOPE.unpack_from(raw, 0)
        self.envelope_flags = b2 & 0xE0
        self.suggested_major = b2 & 0x1F
        if self.length != len(raw) - 20:
            raise ProtocolError(f"envelope length {self.length}, message {len(raw) - 20}")
        (self.opcode, self.code, self.flags, self.serial, self.recursion, self.reserved,
         self.expiration, body_len) = HEADER.unpack_from(raw, 20)
        r = Reader(raw[44:], "message after the header")
        self.body = r.take(body_len, "body")
        self.credential = r.bytes("credential")
        r.end("the credential")
        self.hb = raw[20:44 + body_len]  # header + body, as the signature and RD cover
        if rd is None:
            rd = bool(self.flags & RD) and self.code != 0
        self.digest = None
        self.handle = self.message = self.site = None
        self.types, self.indexes, self.values = [], [], []
        b = Reader(self.body, "body")
        if rd:
            algorithm = b.u8("digest algorithm")
            if algorithm not in DIGEST_SIZES:
                raise ProtocolError(f"digest algorithm {algorithm}")
            self.digest = (algorithm, b.take(DIGEST_SIZES[algorithm], "digest"))
        if self.code == 0:  # a request
            self.handle = b.bytes("handle").decode()
            if self.opcode == RESOLUTION:
                self.indexes = [b.u32("index") for _ in range(b.u32("index count"))]
                self.types = [b.bytes("type").decode() for _ in range(b.u32("type count"))]
        elif self.opcode == RESOLUTION and self.code in (SUCCESS, SERVICE_REFERRAL,
                                                         PREFIX_REFERRAL):
            self.handle = b.bytes("handle").decode()
            self.values = [decode_value(b) for _ in range(b.u32("value count"))]
        elif self.opcode == GET_SITE_INFO and self.code == SUCCESS:
            # One site record exactly: the decoder rejects trailing bytes.
            self.site = Site.decode(b.take(b.remaining(), "site record"))
        else:
            self.message = b.bytes("error message").decode(errors="replace")
        b.end("the body")

    def typed(self, *types):
        return [v for v in self.values if v["type"] in types]

    def envelope_version(self):
        return (self.major, self.minor)


# ---------------------------------------------------------------- keys

def _int(b):
    return int.from_bytes(b, "big")  # Java two's complement, read unsigned


def _java_int(n):
    return n.to_bytes(n.bit_length() // 8 + 1, "big")  # a leading 00 when the top bit is set


def decode_public_key(data):
    """HS_PUBKEY data (docs/handle-protocol.md, "Certified answers") -> a cryptography key."""
    if not data:
        raise SignatureError("empty public key in the site record")
    r = Reader(data, "HS_PUBKEY")
    try:
        kind = r.bytes("key type")
        r.u16("key flags")
        if kind == b"RSA_PUB_KEY":
            e, n = _int(r.bytes("e")), _int(r.bytes("n"))  # then 4 zero bytes: ignored
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kind == b"DSA_PUB_KEY":
            q, p, g, y = (_int(r.bytes(f)) for f in "qpgy")
            return dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
    except (ProtocolError, ValueError) as e:
        raise SignatureError(f"unusable public key: {e}") from e
    raise SignatureError(f"unsupported key type {kind!r}")


def encode_public_key(key):
    """A cryptography RSA/DSA public key as HS_PUBKEY data, CNRI layout."""
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        return (put_str(b"RSA_PUB_KEY") + b"\0\0" + put_str(_java_int(n.e))
                + put_str(_java_int(n.n)) + b"\0\0\0\0")
    if isinstance(key, dsa.DSAPublicKey):
        n = key.public_numbers()
        p = n.parameter_numbers
        return (put_str(b"DSA_PUB_KEY") + b"\0\0"
                + b"".join(put_str(_java_int(x)) for x in (p.q, p.p, p.g, n.y)))
    raise TypeError(f"not an RSA or DSA public key: {key!r}")


HASHES = {b"SHA-256": hashes.SHA256, b"SHA256": hashes.SHA256, b"SHA1": hashes.SHA1,
          b"SHA-1": hashes.SHA1, b"MD5": hashes.MD5, b"\x01": hashes.MD5,
          b"\x02": hashes.SHA1, b"\x03": hashes.SHA256}


def decode_credential(data):
    r = Reader(data, "credential")
    c = {"version": r.u8("version"), "reserved": r.u8("reserved"), "flags": r.u16("flags"),
         "signer_handle": r.bytes("signer handle"), "signer_index": r.u32("signer index"),
         "type": r.bytes("type")}
    s = Reader(r.bytes("signature section"), "signature section")
    c["hash"] = s.bytes("hash algorithm")
    c["signature"] = s.bytes("signature")
    return c


def signed_bytes(m, counter):
    """What the signature of message m covers, by its protocol version
    (docs/handle-protocol.md, "Certified answers")."""
    major, minor = m.major, m.minor
    sug = (m.suggested_major, m.suggested_minor) if m.suggested_major else (major, minor)
    ids = struct.pack(">III", m.session_id, m.request_id, counter)
    if (major, minor) >= (2, 8):
        return bytes([major, minor, *sug]) + ids + m.hb
    if (major, minor) == (2, 7):
        return bytes([major, minor]) + ids + m.hb
    if (major, minor) == (2, 6):
        return (bytes([major, minor]) + struct.pack(">I", m.session_id)[:2]
                + struct.pack(">I", counter) + bytes(6) + m.hb)
    return m.hb


def verify(m, key):
    """Checks m's HS_SIGNED credential with key (a cryptography key or
    HS_PUBKEY data); returns the credential or raises SignatureError."""
    if key is None:
        raise SignatureError("no public key for the server asked")
    if isinstance(key, (bytes, bytearray)):
        key = decode_public_key(bytes(key))
    if not m.credential:
        raise SignatureError(f"answer {m.code} to request {m.request_id:#x} is not signed")
    try:
        c = decode_credential(m.credential)
    except ProtocolError as e:
        raise SignatureError(f"unreadable credential: {e}") from e
    if c["type"] not in (b"HS_SIGNED", b"HS_DSAPUBKEY"):
        raise SignatureError(f"credential type {c['type']!r}, not HS_SIGNED")
    if c["hash"] not in HASHES:
        raise SignatureError(f"hash algorithm {c['hash']!r}")
    algorithm = HASHES[c["hash"]]()
    data = signed_bytes(m, c["signer_index"])
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(c["signature"], data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(c["signature"], data, algorithm)
        else:
            raise SignatureError(f"key type {type(key).__name__}")
    except InvalidSignature as e:
        raise SignatureError(f"bad signature on answer {m.code} to request "
                             f"{m.request_id:#x}") from e
    return c


# ---------------------------------------------------------------- sites

class Server:
    def __init__(self, server_id, address, public_key, interfaces):
        self.id, self.address, self.public_key = server_id, address, public_key
        self.interfaces = interfaces  # [(type, protocol, port)]

    @property
    def host(self):
        a = self.address
        if a[:10] == bytes(10) and a[10:12] in (b"\0\0", b"\xff\xff"):
            return socket.inet_ntop(socket.AF_INET, a[12:])
        return socket.inet_ntop(socket.AF_INET6, a)

    def port(self, protocol):
        """The port of a query interface (type 2 or 3) of protocol 0 UDP /
        1 TCP, or None."""
        for kind, proto, port in self.interfaces:
            if proto == protocol and kind in (2, 3):
                return port
        return None

    @property
    def udp(self):
        port = self.port(0)
        return None if port is None else (self.host, port)

    @property
    def tcp(self):
        port = self.port(1)
        return None if port is None else (self.host, port)

    def key(self):
        return decode_public_key(self.public_key)


class Site:
    """An HS_SITE record (docs/handle-protocol.md)."""

    def __init__(self, servers, protocol=(2, 11), serial=1, primary=0x80, hash_option=2,
                 hash_filter=b"", attributes=(), version=1, raw=None):
        self.servers, self.protocol, self.serial = servers, protocol, serial
        self.primary, self.hash_option, self.hash_filter = primary, hash_option, hash_filter
        self.attributes, self.version, self.raw = list(attributes), version, raw

    @classmethod
    def decode(cls, data):
        r = Reader(data, "site record")
        version = r.u16("format version")
        protocol = (r.u8("major"), r.u8("minor"))
        serial = r.i16("serial")
        primary = r.u8("primary mask")
        hash_option = r.u8("hash option")
        hash_filter = r.bytes("hash filter")
        attributes = [(r.bytes("attribute name").decode(), r.bytes("attribute value").decode())
                      for _ in range(r.u32("attribute count"))]
        servers = []
        for _ in range(r.u32("server count")):
            server_id = r.u32("server id")
            address = r.take(16, "server address")
            key = r.bytes("public key")
            interfaces = [(r.u8("interface type"), r.u8("interface protocol"),
                           r.u32("interface port")) for _ in range(r.u32("interface count"))]
            servers.append(Server(server_id, address, key, interfaces))
        r.end("the site record")
        return cls(servers, protocol, serial, primary, hash_option, hash_filter, attributes,
                   version, raw=bytes(data))

    def server_for(self, handle):
        """The hash rule: upper-case the hashed part, MD5, last 4 bytes as a
        signed int, absolute value, modulo the server count."""
        if len(self.servers) == 1:
            return self.servers[0]
        prefix, _, suffix = handle.partition("/")
        part = {0: prefix, 1: suffix}.get(self.hash_option, handle)
        n = struct.unpack(">i", hashlib.md5(part.upper().encode()).digest()[-4:])[0]
        return self.servers[abs(n) % len(self.servers)]


def configured_site(host, udp_port, tcp_port, public_key=None, serial=1, protocol=(2, 11)):
    """The one global site of a SimpleConfiguration: one primary server."""
    if public_key is not None and not isinstance(public_key, (bytes, bytearray)):
        public_key = encode_public_key(public_key)
    address = bytes(10) + b"\xff\xff" + socket.inet_aton(host)
    interfaces = []
    if tcp_port:
        interfaces.append((3, 1, tcp_port))
    if udp_port:
        interfaces.append((2, 0, udp_port))
    return Site([Server(1, address, bytes(public_key or b""), interfaces)], protocol, serial)


# ---------------------------------------------------------------- transport

def udp_exchange(addr, request, timeout, tries=2):
    """One request datagram; the answer reassembled from its datagrams
    (each a full envelope: sequence number = packet index, message length =
    the whole message's, payload at seq * 492). Datagrams of other request
    ids are skipped. Returns (whole message, sizes of the datagrams)."""
    if len(request) > UDP_DATAGRAM:
        raise ProtocolError(f"request of {len(request)} bytes does not fit a datagram")
    request_id = struct.unpack_from(">I", request, 8)[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for attempt in range(tries):
            s.sendto(request, addr)
            parts, sizes, first, length = {}, [], None, None
            try:
                while True:
                    data, _ = s.recvfrom(65535)
                    if len(data) < 20 or struct.unpack_from(">I", data, 8)[0] != request_id:
                        continue
                    if len(data) > UDP_DATAGRAM:
                        raise ProtocolError(f"datagram of {len(data)} bytes (> 512: hdllib "
                                            f"ignores it)")
                    env = ENVELOPE.unpack(data[:20])
                    seq, total = env[6], env[7]
                    if total > MAX_MESSAGE:
                        raise ProtocolError(f"message length {total}")
                    if length is None:
                        length = total
                    elif total != length:
                        raise ProtocolError(f"datagram {seq}: message length {total}, "
                                            f"earlier {length}")
                    if seq * UDP_PAYLOAD + len(data) - 20 > length:
                        raise ProtocolError(f"datagram {seq} overruns {length} bytes")
                    if seq not in parts:
                        parts[seq] = data[20:]
                        sizes.append(len(data))
                    if seq == 0 or first is None:
                        first = data[:20]
                    if sum(len(p) for p in parts.values()) >= length:
                        break
            except socket.timeout:
                if attempt + 1 < tries:
                    continue
                raise
            payload = bytearray(length)
            for seq, p in parts.items():
                payload[seq * UDP_PAYLOAD:seq * UDP_PAYLOAD + len(p)] = p
            if sorted(parts) != list(range(len(parts))):
                raise ProtocolError(f"datagram sequence numbers {sorted(parts)}")
            envelope = bytearray(first)
            struct.pack_into(">I", envelope, 12, 0)
            return bytes(envelope) + bytes(payload), sizes
    raise socket.timeout("no answer")


def tcp_exchange(addr, request, timeout):
    """TCP: the envelope, then message-length bytes."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        while len(buf) < 20:
            chunk = s.recv(65536)
            if not chunk:
                raise ProtocolError("connection closed before an envelope")
            buf += chunk
        length = struct.unpack_from(">I", buf, 16)[0]
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message length {length}")
        while len(buf) < 20 + length:
            chunk = s.recv(65536)
            if not chunk:
                raise ProtocolError("connection closed mid-message")
            buf += chunk
        return buf[:20 + length], [len(buf[:20 + length])]


# ---------------------------------------------------------------- resolver

class Hop:
    """One request and its answer, as the resolver saw them."""

    def __init__(self, server, transport, addr, request):
        self.server, self.transport, self.addr, self.request = server, transport, addr, request
        self.raw = self.response = self.credential = None
        self.datagrams = []
        self.verified_with = None  # the HS_PUBKEY data a certified answer verified with

    def __repr__(self):
        req = Message(self.request)
        got = self.response.code if self.response else None
        return f"<Hop {self.transport}://{self.addr[0]}:{self.addr[1]} {req.handle!r} -> {got}>"


class HandleResolver:
    def __init__(self, host=None, udp_port=None, tcp_port=None, public_key=None, serial=1,
                 transport="udp", timeout=3.0, tamper=None, site=None, clock=time.time,
                 request_ids=None):
        self.global_site = site or configured_site(host, udp_port, tcp_port, public_key,
                                                   serial)
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport {transport!r}")
        self.transport, self.timeout, self.tamper, self.clock = transport, timeout, tamper, clock
        self.request_ids = request_ids or (
            struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF for _ in itertools.count())
        self.trace = []

    # -- public

    def resolve(self, handle, certify=False, rd=False, types=(), indexes=(),
                flags=DEFAULT_FLAGS):
        """Resolves handle globally; returns the SUCCESS Message or raises
        HandleError / ServiceNotFound / SignatureError / ProtocolError.
        `trace` lists every hop of this resolution."""
        self.trace = []
        extra = (CT if certify else 0) | (RD if rd else 0)
        flags = flags | extra
        if self._goes_to_global(handle):
            sites = [self.global_site]
            recursion = 0
        else:
            prefix = handle.split("/", 1)[0]
            sites = self.prefix_sites("0.NA/" + prefix.upper(), extra, recursion=1)
            recursion = 0
        request_id = next(self.request_ids)
        answer = self._send_to_sites(sites, handle, request_id, flags, recursion, types,
                                     indexes)
        if answer.code != SUCCESS:
            raise HandleError(answer.code, answer.message or f"code {answer.code}", answer)
        return answer

    def prefix_sites(self, prefix_handle, extra, recursion):
        """Section 2.2 steps 2-6: the sites that serve a prefix."""
        request_id = next(self.request_ids)
        flags = (DEFAULT_FLAGS | extra) & ~AT
        for retry_flags in (flags, flags | AT):
            answer = self._send_to_sites([self.global_site], prefix_handle, request_id,
                                         retry_flags, recursion, PREFIX_LOOKUP_TYPES, ())
            if answer.code == SUCCESS:
                sites = self._sites_of(answer, ("HS_SITE", "HS_SITE.6"))
                if sites:
                    return sites
                if answer.typed("HS_SERV"):
                    raise NotImplementedError("HS_SERV indirection is not followed here")
            elif answer.code not in (HANDLE_NOT_FOUND, VALUES_NOT_FOUND, SERVER_NOT_RESP):
                raise HandleError(answer.code, answer.message, answer)
        raise ServiceNotFound(f"Unable to find service for prefix {prefix_handle} "
                              f"(last answer {answer.code}: {answer.message})")

    def query(self, site, handle, certify=False, rd=False, types=(), indexes=(),
              recursion=0, flags=DEFAULT_FLAGS):
        """One request to one site (its version and serial, the server its
        hash rule picks), checked like every hop; returns the answer
        whatever its code. A 303 to a `0.NA/` request is followed."""
        self.trace = []
        flags |= (CT if certify else 0) | (RD if rd else 0)
        return self._send_to_sites([site], handle, next(self.request_ids), flags, recursion,
                                   types, indexes)

    def get_site_info(self, addr=None, certify=False, key=None):
        """GET_SITE_INFO as CNRI tools send it (2.3 suggesting 2.11, handle
        `/`, REC|CA|PO, serial -1), over this resolver's transport to addr
        (default: the global site). With certify, the answer is checked with
        key, or with the key of the record it returns."""
        server = self.global_site.servers[0]
        addr = addr or (server.udp if self.transport == "udp" else server.tcp)
        request_id = next(self.request_ids)
        flags = DEFAULT_FLAGS | (CT if certify else 0)
        request = encode_request(GET_SITE_INFO, "/", request_id, flags, serial=-1,
                                 version=(2, 3), expiration=self._expiration())
        hop = Hop(None, self.transport, addr, request)
        answer = self._exchange_and_check(hop, request_id, False, None)
        if certify and (key is not None or answer.site is not None):
            used = key if key is not None else answer.site.servers[0].public_key
            hop.credential = verify(answer, used)
            hop.verified_with = used
        if answer.code != SUCCESS:
            raise HandleError(answer.code, answer.message, answer)
        self._check_time(answer)
        return answer

    # -- internals

    @staticmethod
    def _goes_to_global(handle):
        return handle.startswith("0.") or handle.startswith("0/") or "/" not in handle

    @staticmethod
    def _follows_referral(handle):
        return handle.startswith("0.NA/") or "/" not in handle

    def _expiration(self):
        return int(self.clock()) + REQUEST_LIFETIME

    def _sites_of(self, answer, types):
        sites = []
        for v in answer.values:
            if v["type"] in types:  # exact, case-sensitive, as hdllib
                try:
                    sites.append(Site.decode(v["data"]))
                except ProtocolError:
                    continue  # hdllib logs and skips an undecodable record
        return sites

    def _send_to_sites(self, sites, handle, request_id, flags, recursion, types, indexes):
        """Encodes once for the first site, sends, follows 303s by resending
        the same bytes (section 2.2 step 3)."""
        first = sites[0]
        request = encode_request(RESOLUTION, handle, request_id, flags, first.serial,
                                 recursion, version=min(first.protocol, (2, 11)),
                                 expiration=self._expiration(), indexes=indexes, types=types)
        for _ in range(MAX_HOPS):
            answer = self._ask(sites, handle, request, request_id, flags)
            if answer.code == PREFIX_REFERRAL and self._follows_referral(handle):
                if (answer.major, answer.minor) < (2, 5):
                    raise ProtocolError("303 in an envelope below 2.5 (hdllib reads "
                                        "SERVER_BACKUP)")
                sites = self._sites_of(answer, ("HS_SITE.PREFIX", "HS_NA_DELEGATE"))
                if not sites:
                    sites = self._sites_of(answer, ("HS_SITE", "HS_SITE.6"))
                if not sites:
                    raise NotImplementedError(f"a 303 without site values: "
                                              f"{[v['type'] for v in answer.values]}")
                continue
            if answer.code == PREFIX_REFERRAL:
                raise HandleError(answer.code, "303 for a handle that is not a prefix "
                                  "(hdllib does not follow it)", answer)
            if answer.code == SERVICE_REFERRAL:
                raise NotImplementedError("302 SERVICE_REFERRAL")
            return answer
        raise HandleError(SERVICE_REFERRAL, f"more than {MAX_HOPS} referrals", None)

    def _ask(self, sites, handle, request, request_id, flags):
        """The first site with an interface of our transport; its server by
        the hash rule on the request's own handle."""
        for site in sites:
            server = site.server_for(handle)
            addr = server.udp if self.transport == "udp" else server.tcp
            if addr is None:
                continue
            hop = Hop(server, self.transport, addr, request)
            answer = self._exchange_and_check(hop, request_id, bool(flags & RD), request)
            if flags & CT:
                # The key of the server record the request was sent to.
                hop.credential = verify(answer, server.public_key)
                hop.verified_with = server.public_key
            if answer.code == ERROR:
                raise HandleError(ERROR, answer.message, answer)
            self._check_time(answer)
            return answer
        raise ServiceNotFound(f"no {self.transport} query interface in {len(sites)} site(s)")

    def _exchange_and_check(self, hop, request_id, rd, request):
        hop.number = len(self.trace)
        self.trace.append(hop)
        raw, hop.datagrams = self.exchange(hop.transport, hop.addr, hop.request)
        if self.tamper:
            raw = self.tamper(raw, hop)
        hop.raw = raw
        answer = Message(raw, rd=rd)
        hop.response = answer
        if answer.request_id != request_id:
            raise ProtocolError(f"request id {answer.request_id:#x}, sent {request_id:#x}")
        # Compressed or encrypted: not for a public resolution. The
        # truncated bit (0x20) is left alone: the datagrams are reassembled
        # by sequence number and message length whatever it says.
        if answer.envelope_flags & 0xC0:
            raise ProtocolError(f"envelope flags {answer.envelope_flags:#x}")
        if rd:
            if answer.digest is None:
                raise ProtocolError("RD sent, no digest")
            sent = Message(request)
            if answer.digest[1] != digest(answer.digest[0], sent.hb):
                raise ProtocolError("the request digest does not match the request")
        return answer

    def _check_time(self, answer):
        if answer.expiration < int(self.clock()):
            raise ProtocolError(f"answer expired at {answer.expiration}")

    def exchange(self, transport, addr, request):
        """Network I/O; returns (whole answer, datagram sizes)."""
        if transport == "udp":
            return udp_exchange(addr, request, self.timeout)
        return tcp_exchange(addr, request, self.timeout)
