"""A Handle administration client written from the wire description
(docs/handle-admin.md and the CNRI behaviour it follows) with struct,
hashlib, hmac and the `cryptography` package.

It shares no code with idnode's codec: admin requests (CREATE_HANDLE 100 to
LIST_HANDLES 105), the 402 challenge, the CHALLENGE_RESPONSE (200) with an
HS_SECKEY answer (HMAC-SHA256 `13`, or PBKDF2-HMAC-SHA1 `22` as CNRI 9.x
sends) or an HS_PUBKEY answer (RSA PKCS#1 v1.5 over SHA-256), over TCP,
one request per connection as CNRI's client does.

Also an authenticated resolution (docs/handle-admin.md, "Authenticated
resolution"): a RESOLUTION with PO clear for a record holding values
without public read is challenged like an admin request, and the result
of the answered challenge carries those values (`resolve`).
"""
import hashlib
import hmac
import os
import socket
import struct
import time

RESOLUTION = 1
CREATE_HANDLE, DELETE_HANDLE, ADD_VALUE, REMOVE_VALUE, MODIFY_VALUE, LIST_HANDLES = range(100, 106)
CHALLENGE_RESPONSE = 200

SUCCESS, PROTOCOL_ERROR = 1, 4
HANDLE_NOT_FOUND, HANDLE_ALREADY_EXISTS = 100, 101
VALUES_NOT_FOUND, VALUE_ALREADY_EXISTS = 200, 201
SERVER_NOT_RESP = 301
INVALID_ADMIN, INSUFFICIENT_PERMISSIONS = 400, 401
AUTHENTICATION_NEEDED, AUTHENTICATION_FAILED = 402, 403
AUTHEN_TIMEOUT, SESSION_TIMEOUT = 405, 500

AT, CT = 0x80000000, 0x40000000
REC, CA, CN, PO, RD, OW = 0x10000000, 0x08000000, 0x04000000, 0x01000000, 0x00800000, 0x00400000
CLIENT_FLAGS = REC | CA | PO  # what CNRI 9.x sends with admin requests

ENVELOPE = struct.Struct(">BBBBIIII")  # 20 bytes
HEADER = struct.Struct(">IIIhBBII")  # 24 bytes
DIGEST_SIZES = {1: 16, 2: 20, 3: 32}

HS_ADMIN_ALL = 0x0FFF
LIST_PERMISSION = 0x0800


def s(b):
    """A length-prefixed string (int4 + bytes)."""
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def value(index, kind, data, permissions=0x0E, ttl=86400):
    """A handle value in its wire form: index, timestamp, TTL type and
    TTL, permissions, type, data, no references."""
    if isinstance(data, str):
        data = data.encode()
    return (struct.pack(">IIBIB", index, 0, 0, ttl, permissions)
            + s(kind) + s(data) + struct.pack(">I", 0))


def hs_admin(permissions, admin_handle, admin_index):
    """HS_ADMIN data: permissions int2 first (RFC 3651 errata), admin
    handle, admin index."""
    return struct.pack(">H", permissions) + s(admin_handle) + struct.pack(">I", admin_index)


def rsa_pub_key(public_key):
    """HS_PUBKEY data of an RSA key: `RSA_PUB_KEY`, flags 0, exponent,
    modulus (two's-complement big-endian), and CNRI's 4 zero bytes."""
    numbers = public_key.public_numbers()

    def unsigned(n):
        return n.to_bytes(n.bit_length() // 8 + 1, "big")  # with a leading 0 as Java writes
    return s("RSA_PUB_KEY") + struct.pack(">H", 0) + s(unsigned(numbers.e)) + s(unsigned(numbers.n)) \
        + b"\0\0\0\0"


def message(opcode, body, request_id, session_id=0, flags=CLIENT_FLAGS, site_serial=1):
    """A whole request: envelope (2.11 suggesting 2.11), header, body and
    an empty credential."""
    header = HEADER.pack(opcode, 0, flags, site_serial, 0, 0, int(time.time()) + 3600, len(body))
    payload = header + body + struct.pack(">I", 0)
    envelope = ENVELOPE.pack(2, 11, 2, 11, session_id, request_id, 0, len(payload))
    return envelope + payload


def new_request_id():
    return struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF or 1


class Reply:
    """One response message."""

    def __init__(self, raw):
        (self.major, self.minor, _, _, self.session_id, self.request_id, _,
         length) = ENVELOPE.unpack_from(raw, 0)
        (self.opcode, self.code, self.flags, self.site_serial, _, _, self.expiration,
         body_len) = HEADER.unpack_from(raw, 20)
        body = raw[44:44 + body_len]
        self.digest_alg, self.digest = None, None
        if self.flags & RD:
            self.digest_alg = body[0]
            size = DIGEST_SIZES[self.digest_alg]
            self.digest = body[1:1 + size]
            body = body[1 + size:]
        self.body = body
        self.nonce = self.message = self.handle = None
        self.handles = []
        self.values = []  # (index, type, data, permissions) of a resolution
        if self.code == AUTHENTICATION_NEEDED:
            self.nonce = _read_str(body, 0)[0]
        elif self.code != SUCCESS:
            self.message = _read_str(body, 0)[0].decode("utf-8", "replace") if body else ""
        elif self.opcode == RESOLUTION:
            self.handle, at = _read_str(body, 0)
            self.handle = self.handle.decode()
            count, = struct.unpack_from(">I", body, at)
            at += 4
            for _ in range(count):
                index, _, _, _, permissions = struct.unpack_from(">IIBIB", body, at)
                kind, at = _read_str(body, at + 14)
                data, at = _read_str(body, at)
                refs, = struct.unpack_from(">I", body, at)
                at += 4
                for _ in range(refs):
                    at = _read_str(body, at)[1] + 4
                self.values.append((index, kind.decode(), data, permissions))
        elif self.opcode == CREATE_HANDLE and body:
            self.handle = _read_str(body, 0)[0].decode()
        elif self.opcode == LIST_HANDLES:
            count, = struct.unpack_from(">I", body, 0)
            at = 4
            for _ in range(count):
                h, at = _read_str(body, at)
                self.handles.append(h.decode())

    @property
    def more(self):
        return bool(self.flags & CN)

    def __repr__(self):
        return f"Reply(op={self.opcode}, code={self.code}, message={self.message!r})"


def _read_str(b, at):
    n, = struct.unpack_from(">I", b, at)
    return b[at + 4:at + 4 + n], at + 4 + n


def exchange(addr, raw, timeout=10.0):
    """One request on a new TCP connection; every response message (more
    follow while CN is set)."""
    replies = []
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(raw)
        rest = b""
        while True:
            frame, rest = _read_frame_with(sock, rest)
            r = Reply(frame)
            replies.append(r)
            if not r.more:
                return replies


def _read_frame_with(sock, buf):
    while len(buf) < 20:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an envelope")
        buf += chunk
    length, = struct.unpack_from(">I", buf, 16)
    while len(buf) < 20 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-message")
        buf += chunk
    return buf[:20 + length], buf[20 + length:]


# --- request bodies ---------------------------------------------------------

def create_body(handle, values):
    return s(handle) + struct.pack(">I", len(values)) + b"".join(values)


def delete_body(handle):
    return s(handle)


def add_body(handle, values):
    return create_body(handle, values)


def modify_body(handle, values):
    return create_body(handle, values)


def remove_body(handle, indexes):
    return s(handle) + struct.pack(">I", len(indexes)) + b"".join(struct.pack(">I", i) for i in indexes)


def list_body(prefix_handle):
    return s(prefix_handle)


def resolution_body(handle, indexes=(), types=()):
    """A RESOLUTION body: handle, index list, type list."""
    return (s(handle) + struct.pack(">I", len(indexes))
            + b"".join(struct.pack(">I", i) for i in indexes)
            + struct.pack(">I", len(types)) + b"".join(s(t) for t in types))


# --- answers ----------------------------------------------------------------

class SecretKey:
    """An HS_SECKEY identity: `algorithm` 0x13 (HMAC-SHA256) or 0x22
    (PBKDF2-HMAC-SHA1, what CNRI 9.x sends at 2.7 and above)."""

    def __init__(self, handle, index, secret, algorithm=0x13):
        self.handle, self.index, self.secret, self.algorithm = handle, index, secret, algorithm

    auth_type = "HS_SECKEY"

    def answer(self, nonce, digest):
        m = nonce + digest
        if self.algorithm == 0x13:
            return bytes([0x13]) + hmac.new(self.secret, m, hashlib.sha256).digest()
        if self.algorithm == 0x22:
            salt, iterations, bits = os.urandom(16), 10000, 160
            # Java re-encodes the secret read as ISO-8859-1 into UTF-8.
            password = self.secret.decode("latin-1").encode("utf-8")
            key = hashlib.pbkdf2_hmac("sha1", password, salt, iterations, bits // 8)
            mac = hmac.new(key, m, hashlib.sha1).digest()
            return bytes([0x22]) + s(salt) + struct.pack(">II", iterations, bits) + s(mac)
        raise ValueError(self.algorithm)


class RsaKey:
    """An HS_PUBKEY identity holding the private half."""

    auth_type = "HS_PUBKEY"

    def __init__(self, handle, index, private_key):
        self.handle, self.index, self.private_key = handle, index, private_key

    def answer(self, nonce, digest):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        signature = self.private_key.sign(nonce + digest, padding.PKCS1v15(), hashes.SHA256())
        return s("SHA-256") + s(signature)


def answer_message(challenge, key, request_id=None):
    body = (s(key.auth_type) + s(key.handle) + struct.pack(">I", key.index)
            + s(key.answer(challenge.nonce, challenge.digest)))
    return message(CHALLENGE_RESPONSE, body, request_id or new_request_id(),
                   session_id=challenge.session_id)


class Outcome:
    """What an authenticated operation gave: the 402, the answer sent, and
    the result messages."""

    def __init__(self, challenge, answer, replies):
        self.challenge, self.answer, self.replies = challenge, answer, replies

    @property
    def code(self):
        return self.replies[0].code


def run(addr, opcode, body, key, flags=CLIENT_FLAGS):
    """The whole flow: request, 402, answer on a new connection, result.
    Stops at the first reply when it is not a 402."""
    rid = new_request_id()
    first = exchange(addr, message(opcode, body, rid, flags=flags))
    assert len(first) == 1 and first[0].request_id == rid, first
    challenge = first[0]
    if challenge.code != AUTHENTICATION_NEEDED:
        return Outcome(None, None, first)
    assert challenge.flags & RD and challenge.digest_alg == 3, "SHA-256 digest at 2.11"
    assert challenge.session_id != 0
    assert len(challenge.nonce) == 16
    rid2 = new_request_id()
    answer = answer_message(challenge, key, rid2)
    replies = exchange(addr, answer)
    for r in replies:
        assert r.request_id == rid2, (r.request_id, rid2)
        assert r.opcode == opcode
    return Outcome(challenge, answer, replies)


# What CNRI's client sends to read values without public read: PO clear.
READ_FLAGS = REC | CA


def resolve(addr, handle, key, indexes=(), types=(), flags=READ_FLAGS):
    """An authenticated resolution over TCP: the RESOLUTION (PO clear), its
    402, the answer on a new connection, the result (its values in
    `Outcome.replies[0].values`). A first reply that is not a 402 (the
    node had nothing private to guard, or refused) ends the flow."""
    return run(addr, RESOLUTION, resolution_body(handle, indexes, types), key, flags=flags)


# --- sessions -----------------------------------------------------------------
# What CNRI's HandleResolver does before its first admin request
# (docs/handle-admin.md, "Sessions"): SESSION_SETUP with a Diffie-Hellman
# exchange, then every request in the session carries its id and an HS_MAC
# (HMAC-SHA256 with the session key over version, ids, counter, header and
# body), requests carrying values without public read are AES-128-CBC
# encrypted, and the first request is challenged under the session's id.

SESSION_SETUP, SESSION_TERMINATE = 400, 401
INVALID_CREDENTIAL = 404
INVALID_SESSION_KEY, INVALID_SESSIONSETUP_REQUEST, SESSION_MESSAGE_REJECTED = 502, 504, 505
ENC = 0x20000000
ENCRYPTED = 0x40
SETUP_FLAGS = CT | REC | CA | PO | RD  # 0x59800000, what CNRI sends

# RFC 2409 group 2 (1024-bit MODP), g = 2: what the JDK gives CNRI's client.
DH_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)
DH_G = 2


def java_int(n):
    """A BigInteger as Java writes it: two's complement, big-endian."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def dh_pub_key(y, p, g):
    return s("DH_PUB_KEY") + struct.pack(">H", 0) + s(java_int(y)) + s(java_int(p)) + s(java_int(g))


def read_dh_pub_key(data):
    kind, at = _read_str(data, 0)
    assert kind == b"DH_PUB_KEY", kind
    at += 2
    y, at = _read_str(data, at)
    p, at = _read_str(data, at)
    g, at = _read_str(data, at)
    return int.from_bytes(y, "big"), int.from_bytes(p, "big"), int.from_bytes(g, "big")


def session_key(shared, p):
    z = shared.to_bytes((p.bit_length() + 7) // 8, "big")
    at = 0
    while len(z) - at > 32 and z[at] == 0:
        at += 1
    return z[at:at + 32]


def with_credential(raw, credential):
    """raw (a whole message with an empty credential) with `credential`."""
    body_len, = struct.unpack_from(">I", raw, 20 + 20)
    hb_end = 20 + 24 + body_len
    payload = raw[20:hb_end] + s(credential)
    return raw[:16] + struct.pack(">I", len(payload)) + payload


def mac_bytes(raw, counter):
    """What an HS_MAC covers at 2.8 and above."""
    major, minor, b2, sminor, session_id, request_id = struct.unpack_from(">BBBBII", raw, 0)
    body_len, = struct.unpack_from(">I", raw, 20 + 20)
    return (bytes([major, minor, b2 & 0x1F, sminor])
            + struct.pack(">III", session_id, request_id, counter) + raw[20:20 + 24 + body_len])


def hs_mac(raw, key, counter):
    tag = hmac.new(key, mac_bytes(raw, counter), hashlib.sha256).digest()
    section = s("HMAC-SHA256") + s(tag)
    return struct.pack(">BBH", 0, 0, 0) + s(b"") + struct.pack(">I", counter) + s("HS_MAC") \
        + s(section)


def encrypt(raw, key, iv=None):
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    iv = iv or os.urandom(16)
    padder = sympad.PKCS7(128).padder()
    plain = padder.update(raw[20:]) + padder.finalize()
    enc = Cipher(algorithms.AES(key[:16]), modes.CBC(iv)).encryptor()
    payload = iv + enc.update(plain) + enc.finalize()
    envelope = bytearray(raw[:20])
    envelope[2] |= ENCRYPTED
    struct.pack_into(">I", envelope, 16, len(payload))
    return bytes(envelope) + payload


def decrypt(raw, key):
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    assert raw[2] & ENCRYPTED
    iv, ciphertext = raw[20:36], raw[36:]
    dec = Cipher(algorithms.AES(key[:16]), modes.CBC(iv)).decryptor()
    unpadder = sympad.PKCS7(128).unpadder()
    plain = unpadder.update(dec.update(ciphertext) + dec.finalize()) + unpadder.finalize()
    envelope = bytearray(raw[:20])
    envelope[2] &= ~ENCRYPTED & 0xFF
    struct.pack_into(">I", envelope, 16, len(plain))
    return bytes(envelope) + plain


def exchange_raw(addr, raw, timeout=10.0):
    """One request on a new TCP connection; the raw response frames."""
    frames = []
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(raw)
        rest = b""
        while True:
            frame, rest = _read_frame_with(sock, rest)
            frames.append(frame)
            plain_flags, = struct.unpack_from(">I", frame, 28) if not frame[2] & ENCRYPTED else (0,)
            if not plain_flags & CN:
                return frames


class Session:
    """A client session with the node, set up as CNRI's client does."""

    def __init__(self, session_id, key, identity, setup_reply):
        self.id, self.key, self.identity = session_id, key, identity
        self.setup_reply = setup_reply
        self.counter = 0

    @classmethod
    def setup(cls, send, identity_handle, identity_index, timeout=86400):
        """`send(raw) -> raw response`: over UDP or TCP."""
        x = int.from_bytes(os.urandom(32), "big")
        y = pow(DH_G, x, DH_P)
        body = (struct.pack(">HI", 4, timeout) + s(identity_handle)
                + struct.pack(">I", identity_index) + s(dh_pub_key(y, DH_P, DH_G)) + b"\0\0")
        request = message(SESSION_SETUP, body, new_request_id(), flags=SETUP_FLAGS)
        raw = send(request)
        reply = Reply(raw)
        if reply.code != SUCCESS:
            return reply
        mode, = struct.unpack_from(">H", reply.body, 0)
        data, _ = _read_str(reply.body, 2)
        cipher, = struct.unpack_from(">I", data, 0)
        ys, p, g = read_dh_pub_key(data[4:])
        assert (mode, cipher, p, g) == (4, 3, DH_P, DH_G), (mode, cipher)
        assert 1 < ys < p - 1
        key = session_key(pow(ys, x, p), p)
        session = cls(reply.session_id, key, (identity_handle, identity_index), reply)
        session.setup_raw, session.setup_request = raw, request
        return session

    def request(self, opcode, body, flags=CLIENT_FLAGS, encrypted=False, mac=True,
                key=None, counter=None):
        """A request in the session: HS_MAC with the next counter (or the
        one given), encrypted if asked."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        raw = message(opcode, body, new_request_id(), session_id=self.id, flags=flags)
        if mac:
            raw = with_credential(raw, hs_mac(raw, key or self.key, counter))
        return encrypt(raw, self.key) if encrypted else raw

    def send(self, addr, raw):
        """Sends a session request over TCP; the replies, decrypted."""
        frames = exchange_raw(addr, raw)
        self.last_frames = frames
        return [Reply(decrypt(f, self.key) if f[2] & ENCRYPTED else f) for f in frames]

    def answer(self, challenge, key):
        """The answer to a 402 in the session: its id, no credential."""
        body = (s(key.auth_type) + s(key.handle) + struct.pack(">I", key.index)
                + s(key.answer(challenge.nonce, challenge.digest)))
        return message(CHALLENGE_RESPONSE, body, new_request_id(), session_id=self.id)

    def terminate(self, addr):
        raw = self.request(SESSION_TERMINATE, s(self.identity[0]))
        return self.send(addr, raw)
