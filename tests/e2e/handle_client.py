"""A Handle protocol (RFC 3652) client written from the spec with struct.

It shares no code with idnode's codec, so the end-to-end tests check idnode
against the wire format itself, not against our own reading of it.
"""
import hashlib
import os
import socket
import struct
import time

RESOLUTION, GET_SITE_INFO = 1, 2
SUCCESS, ERROR, PROTOCOL_ERROR, NOT_SUPPORTED = 1, 2, 4, 5
RECURSION_COUNT_TOO_HIGH = 6
HANDLE_NOT_FOUND, INVALID_HANDLE, VALUES_NOT_FOUND = 100, 102, 200
SERVER_NOT_RESP, PREFIX_REFERRAL = 301, 303
REC, CA, KC, PO, RD = 0x10000000, 0x08000000, 0x02000000, 0x01000000, 0x00800000
DNR = 0x00100000
AT = 0x80000000
ENVELOPE = struct.Struct(">BBBBIIII")  # 20 bytes
HEADER = struct.Struct(">IIIhBBII")  # 24 bytes
UDP_PAYLOAD = 492


def _string(b):
    return struct.pack(">I", len(b)) + b


def resolution_request(handle, request_id, indexes=(), types=(), flags=REC | CA | PO,
                       version=(2, 11), suggested=(2, 11)):
    """The message CNRI's 9.x client sends (see shared/vectors)."""
    body = _string(handle.encode()) + struct.pack(">I", len(indexes))
    body += b"".join(struct.pack(">I", i) for i in indexes)
    body += struct.pack(">I", len(types)) + b"".join(_string(t.encode()) for t in types)
    header = HEADER.pack(RESOLUTION, 0, flags, 0, 0, 0, int(time.time()) + 600, len(body))
    message = header + body + struct.pack(">I", 0)
    envelope = ENVELOPE.pack(version[0], version[1], suggested[0] & 0x1F, suggested[1],
                             0, request_id, 0, len(message))
    return envelope + message


class Response:
    def __init__(self, raw):
        self.raw = raw
        (self.major, self.minor, b2, self.suggested_minor, self.session, self.request_id,
         self.sequence, self.length) = ENVELOPE.unpack_from(raw, 0)
        self.envelope_flags = b2 & 0xE0
        (self.opcode, self.code, self.flags, self.site_serial, self.recursion, _,
         self.expiration, body_len) = HEADER.unpack_from(raw, 20)
        assert self.length == len(raw) - 20, (self.length, len(raw))
        self.body = raw[44:44 + body_len]
        assert len(self.body) == body_len
        credential_len, = struct.unpack_from(">I", raw, 44 + body_len)
        assert 44 + body_len + 4 + credential_len == len(raw)
        self.digest = None
        self.values = []
        self.handle = None
        self.message = None
        at = 0
        if self.flags & RD:
            algorithm = self.body[0]
            size = {1: 16, 2: 20, 3: 32}[algorithm]
            self.digest = (algorithm, self.body[1:1 + size])
            at = 1 + size
        if (self.code == SUCCESS and self.opcode == RESOLUTION) or self.code in (302, 303):
            self.handle, at = _read_string(self.body, at)
            count, = struct.unpack_from(">I", self.body, at)
            at += 4
            for _ in range(count):
                value, at = _read_value(self.body, at)
                self.values.append(value)
            assert at == len(self.body)
        elif self.code == SUCCESS and self.opcode == GET_SITE_INFO:
            self.site = decode_site(self.body[at:])
        elif self.code != SUCCESS:
            message, at = _read_string(self.body, at)
            self.message = message.decode()


def _read_string(b, at):
    n, = struct.unpack_from(">I", b, at)
    at += 4
    assert at + n <= len(b)
    return b[at:at + n], at + n


def _read_value(b, at):
    index, timestamp, ttl_type, ttl, permissions = struct.unpack_from(">IIBIB", b, at)
    at += 14
    kind, at = _read_string(b, at)
    data, at = _read_string(b, at)
    refs, = struct.unpack_from(">I", b, at)
    at += 4
    references = []
    for _ in range(refs):
        h, at = _read_string(b, at)
        i, = struct.unpack_from(">I", b, at)
        at += 4
        references.append((h.decode(), i))
    return {"index": index, "timestamp": timestamp, "ttl_type": ttl_type, "ttl": ttl,
            "permissions": permissions, "type": kind.decode(), "data": data,
            "references": references}, at


def new_request_id():
    return struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF


def udp_exchange(addr, message, timeout=3.0):
    """Sends one request datagram; returns (whole response, datagram sizes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(message, addr)
        parts, sizes, total = {}, [], None
        while True:
            data, _ = s.recvfrom(65535)
            sizes.append(len(data))
            _, _, _, _, _, _, seq, length = ENVELOPE.unpack_from(data, 0)
            total = length
            parts[seq] = data[20:]
            if sum(len(p) for p in parts.values()) >= length:
                break
        payload = b"".join(parts[i] for i in sorted(parts))
        envelope = bytearray(data[:20])
        struct.pack_into(">I", envelope, 12, 0)
        assert len(payload) == total
        return bytes(envelope) + payload, sizes


def udp_resolve(addr, handle, timeout=3.0, **kw):
    rid = new_request_id()
    raw, sizes = udp_exchange(addr, resolution_request(handle, rid, **kw), timeout)
    r = Response(raw)
    assert r.request_id == rid
    r.datagram_sizes = sizes
    return r


def tcp_exchange(addr, message, timeout=3.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(message)
        return _read_frame(s)


def _read_frame(s):
    buf = b""
    while len(buf) < 20:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an envelope")
        buf += chunk
    length, = struct.unpack_from(">I", buf, 16)
    while len(buf) < 20 + length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-message")
        buf += chunk
    return buf[:20 + length]


def tcp_resolve(addr, handle, **kw):
    rid = new_request_id()
    r = Response(tcp_exchange(addr, resolution_request(handle, rid, **kw)))
    assert r.request_id == rid
    return r


def digest(algorithm, header_and_body):
    return {1: hashlib.md5, 2: hashlib.sha1, 3: hashlib.sha256}[algorithm](header_and_body).digest()


def site_info_request(request_id):
    """GET_SITE_INFO: a header and an empty body."""
    header = HEADER.pack(GET_SITE_INFO, 0, 0, 0, 0, 0, int(time.time()) + 600, 0)
    message = header + struct.pack(">I", 0)
    return ENVELOPE.pack(2, 11, 2, 11, 0, request_id, 0, len(message)) + message


def decode_site(b):
    """An HS_SITE value, read from the layout in the spec."""
    at = 0
    version, major, minor, serial, primary, hash_option = struct.unpack_from(">hBBhBB", b, at)
    at += 8
    hash_filter, at = _read_string(b, at)
    attributes = []
    n, = struct.unpack_from(">I", b, at)
    at += 4
    for _ in range(n):
        name, at = _read_string(b, at)
        value, at = _read_string(b, at)
        attributes.append((name.decode(), value.decode()))
    servers = []
    n, = struct.unpack_from(">I", b, at)
    at += 4
    for _ in range(n):
        server_id, = struct.unpack_from(">I", b, at)
        address = b[at + 4:at + 20]
        at += 20
        key, at = _read_string(b, at)
        count, = struct.unpack_from(">I", b, at)
        at += 4
        interfaces = []
        for _ in range(count):
            kind, protocol, port = struct.unpack_from(">BBI", b, at)
            at += 6
            interfaces.append({"kind": kind, "protocol": protocol, "port": port})
        ip = socket.inet_ntoa(address[12:]) if address[:12] == bytes(12) else address
        servers.append({"id": server_id, "address": ip, "interfaces": interfaces,
                        "public_key": key})
    assert at == len(b), (at, len(b))
    return {"version": version, "protocol": (major, minor), "serial": serial,
            "primary": primary, "hash": hash_option, "servers": servers}


def server_index(hashed_part, servers):
    """The spec's rule: MD5 of the upper-cased part, last 4 bytes as a signed
    int, absolute value, modulo the number of servers."""
    d = hashlib.md5(hashed_part.upper().encode()).digest()
    n, = struct.unpack(">i", d[-4:])
    return abs(n) % servers
