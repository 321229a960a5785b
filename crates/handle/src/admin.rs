//! Handle administration: the bodies of the admin requests (CREATE_HANDLE
//! 100 to LIST_HANDLES 105) and of their results, the data of HS_ADMIN and
//! HS_VLIST values, and the authorization rule that decides whether an
//! authenticated admin may perform an operation
//! (docs/handle-admin.md).
//!
//! # Request bodies
//! | opcode | body |
//! |---|---|
//! | 100 CREATE_HANDLE | handle str, count int4, values |
//! | 101 DELETE_HANDLE | handle str |
//! | 102 ADD_VALUE | handle str, count int4, values |
//! | 103 REMOVE_VALUE | handle str, count int4, indexes (int4 each) |
//! | 104 MODIFY_VALUE | handle str, count int4, values (matched by index) |
//! | 105 LIST_HANDLES | prefix handle str (`0.NA/p`, or a bare `p`) |
//!
//! Values are in the wire form of [`idnode_core::wire`]. Bytes after the
//! last field are ignored (CNRI writes some in places); a body shorter than
//! its counts and lengths declare is refused. A handle that is not UTF-8 or
//! is longer than [`limits::MAX_IDENTIFIER_BYTES`] is
//! [`AdminDecodeError::InvalidHandle`] (102 INVALID_HANDLE); any other
//! malformed body is [`AdminDecodeError::Decode`] (4 PROTOCOL_ERROR).
//!
//! # Result bodies
//! After the RD digest (only when the request set RD): nothing for 101-104,
//! the created handle (str) for 100, a count and that many handles (str)
//! for 105 (at most [`LIST_HANDLES_PER_MESSAGE`] per message, CN set on all
//! but the last), an error message (str, CNRI leaves it empty) for errors.
//!
//! # Authorization ([`authorize`])
//! An HS_ADMIN value grants its permission bits ([`AdminPerms`]) to the
//! admin it names, or to every member of the HS_VLIST group it names
//! (groups nest). Which record's HS_ADMIN values govern an operation, and
//! which bits it needs, is [`Operation::rule`].

use crate::{
    DecodeError, Digest, Envelope, Header, ResponseBuilder, ResponseContext, code,
    encode_error_response, flags, opcode,
};
use idnode_core::wire::{MIN_VALUE_LEN, Reader, decode_value, encode_value, put_bytes, put_u32};
use idnode_core::{Value, limits};
use std::collections::{HashSet, VecDeque};
use std::ops::{BitOr, BitOrAssign};
use thiserror::Error;

/// Type of an admin value.
pub const HS_ADMIN: &str = "HS_ADMIN";
/// Type of a group of admin references.
pub const HS_VLIST: &str = "HS_VLIST";
/// Handles per LIST_HANDLES response message (CNRI's batch size).
pub const LIST_HANDLES_PER_MESSAGE: usize = 50;
/// Most HS_VLIST groups [`authorize`] resolves for one decision, so that a
/// hostile or cyclic group graph costs a bounded number of look-ups.
pub const MAX_GROUP_LOOKUPS: usize = 64;
/// Most members read from one HS_VLIST value.
pub const MAX_VLIST_MEMBERS: usize = 4096;

/// Why an admin request body did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AdminDecodeError {
    /// The body is malformed: answer 4 PROTOCOL_ERROR.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The handle is not UTF-8 or too long: answer 102 INVALID_HANDLE.
    #[error("invalid handle (not UTF-8 or too long)")]
    InvalidHandle,
    /// The opcode is not one of 100-105: answer 5 OPERATION_NOT_SUPPORTED
    /// (or route it elsewhere).
    #[error("opcode {0} is not an admin operation")]
    NotAdmin(u32),
}

impl AdminDecodeError {
    /// The response code to answer with.
    pub fn response_code(&self) -> u32 {
        match self {
            Self::Decode(_) => code::PROTOCOL_ERROR,
            Self::InvalidHandle => code::INVALID_HANDLE,
            Self::NotAdmin(_) => code::OPERATION_NOT_SUPPORTED,
        }
    }
}

impl From<idnode_core::Error> for AdminDecodeError {
    fn from(e: idnode_core::Error) -> Self {
        Self::Decode(e.into())
    }
}

/// A decoded admin request body (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    CreateHandle {
        handle: String,
        values: Vec<Value>,
    },
    DeleteHandle {
        handle: String,
    },
    AddValue {
        handle: String,
        values: Vec<Value>,
    },
    RemoveValue {
        handle: String,
        indexes: Vec<u32>,
    },
    ModifyValue {
        handle: String,
        values: Vec<Value>,
    },
    /// `prefix` as sent: `0.NA/p` or a bare `p` (see
    /// [`prefix_handle`]).
    ListHandles {
        prefix: String,
    },
}

/// Whether `opcode` is one of the admin operations 100-105.
pub fn is_admin_opcode(op: u32) -> bool {
    (opcode::CREATE_HANDLE..=opcode::LIST_HANDLES).contains(&op)
}

fn read_handle(r: &mut Reader<'_>, what: &'static str) -> Result<String, AdminDecodeError> {
    let raw = r.bytes(what)?;
    if raw.len() > limits::MAX_IDENTIFIER_BYTES {
        return Err(AdminDecodeError::InvalidHandle);
    }
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| AdminDecodeError::InvalidHandle)
}

fn read_values(r: &mut Reader<'_>) -> Result<Vec<Value>, AdminDecodeError> {
    let count = r.count("value count", MIN_VALUE_LEN)?;
    if count > limits::MAX_VALUES {
        return Err(DecodeError::TooLong("value count", count as u32).into());
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(decode_value(r)?);
    }
    Ok(values)
}

fn write_values(out: &mut Vec<u8>, values: &[Value]) {
    put_u32(out, values.len() as u32);
    for v in values {
        encode_value(out, v);
    }
}

impl AdminRequest {
    /// Decodes the body of an admin request with this opcode (the
    /// `body` of a [`crate::Request`]). Bounded: every count and length is
    /// checked against the bytes that remain before allocating.
    pub fn decode(op: u32, body: &[u8]) -> Result<Self, AdminDecodeError> {
        if !is_admin_opcode(op) {
            return Err(AdminDecodeError::NotAdmin(op));
        }
        let mut r = Reader::new(body);
        let handle = read_handle(&mut r, "handle")?;
        Ok(match op {
            opcode::CREATE_HANDLE => Self::CreateHandle {
                handle,
                values: read_values(&mut r)?,
            },
            opcode::DELETE_HANDLE => Self::DeleteHandle { handle },
            opcode::ADD_VALUE => Self::AddValue {
                handle,
                values: read_values(&mut r)?,
            },
            opcode::REMOVE_VALUE => {
                let count = r.count("index count", 4)?;
                if count > limits::MAX_VALUES {
                    return Err(DecodeError::TooLong("index count", count as u32).into());
                }
                let mut indexes = Vec::with_capacity(count);
                for _ in 0..count {
                    indexes.push(r.u32("index")?);
                }
                Self::RemoveValue { handle, indexes }
            }
            opcode::MODIFY_VALUE => Self::ModifyValue {
                handle,
                values: read_values(&mut r)?,
            },
            _ => Self::ListHandles { prefix: handle },
        })
    }

    /// The opcode of this request.
    pub fn opcode(&self) -> u32 {
        match self {
            Self::CreateHandle { .. } => opcode::CREATE_HANDLE,
            Self::DeleteHandle { .. } => opcode::DELETE_HANDLE,
            Self::AddValue { .. } => opcode::ADD_VALUE,
            Self::RemoveValue { .. } => opcode::REMOVE_VALUE,
            Self::ModifyValue { .. } => opcode::MODIFY_VALUE,
            Self::ListHandles { .. } => opcode::LIST_HANDLES,
        }
    }

    /// The handle the request is about (the prefix handle for
    /// LIST_HANDLES).
    pub fn handle(&self) -> &str {
        match self {
            Self::CreateHandle { handle, .. }
            | Self::DeleteHandle { handle }
            | Self::AddValue { handle, .. }
            | Self::RemoveValue { handle, .. }
            | Self::ModifyValue { handle, .. } => handle,
            Self::ListHandles { prefix } => prefix,
        }
    }

    /// The values carried (create, add, modify); empty otherwise.
    pub fn values(&self) -> &[Value] {
        match self {
            Self::CreateHandle { values, .. }
            | Self::AddValue { values, .. }
            | Self::ModifyValue { values, .. } => values,
            _ => &[],
        }
    }

    /// Appends the body (what [`decode`](Self::decode) reads).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.handle().as_bytes());
        match self {
            Self::CreateHandle { values, .. }
            | Self::AddValue { values, .. }
            | Self::ModifyValue { values, .. } => write_values(out, values),
            Self::RemoveValue { indexes, .. } => {
                put_u32(out, indexes.len() as u32);
                for i in indexes {
                    put_u32(out, *i);
                }
            }
            Self::DeleteHandle { .. } | Self::ListHandles { .. } => {}
        }
    }

    /// The checks on the values the spec makes before any challenge
    /// (section 6): `Err(code)` to answer with.
    /// - create, add, modify: an index that is 0 or negative as a Java
    ///   int (>= 2^31): 202 INVALID_VALUE; the same index twice: 201
    ///   VALUE_ALREADY_EXISTS;
    /// - add: an empty list: 202.
    ///
    /// Send 202 as 201 to clients below 2.5 ([`invalid_value_code`]).
    pub fn check_values(&self) -> Result<(), u32> {
        let values = match self {
            Self::AddValue { values, .. } if values.is_empty() => {
                return Err(code::INVALID_VALUE);
            }
            Self::CreateHandle { values, .. }
            | Self::AddValue { values, .. }
            | Self::ModifyValue { values, .. } => values,
            _ => return Ok(()),
        };
        if values
            .iter()
            .any(|v| v.index == 0 || v.index > i32::MAX as u32)
        {
            return Err(code::INVALID_VALUE);
        }
        let mut seen = HashSet::with_capacity(values.len());
        if !values.iter().all(|v| seen.insert(v.index)) {
            return Err(code::VALUE_ALREADY_EXISTS);
        }
        Ok(())
    }
}

/// 202 INVALID_VALUE, or 201 for a client below protocol 2.5 (which does
/// not know 202).
pub fn invalid_value_code(version: (u8, u8)) -> u32 {
    if version < (2, 5) {
        code::VALUE_ALREADY_EXISTS
    } else {
        code::INVALID_VALUE
    }
}

/// Sets every value's timestamp to `now` (the server replaces the client's
/// timestamps with its clock).
pub fn stamp_values(values: &mut [Value], now: u32) {
    for v in values {
        v.timestamp = now;
    }
}

/// The prefix handle a LIST_HANDLES body names: `0.NA/p` as is, a bare
/// `p` as `0.NA/p`.
pub fn prefix_handle(prefix: &str) -> String {
    if starts_with_ignore_case(prefix, "0.NA/") {
        prefix.to_owned()
    } else {
        format!("0.NA/{prefix}")
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

// ---------------------------------------------------------------------------
// Result bodies.

/// Writes a SUCCESS with an empty body (DELETE_HANDLE, ADD_VALUE,
/// REMOVE_VALUE, MODIFY_VALUE; set `ctx.op_flags |= flags::OW` when an
/// add overwrote). Returns the whole length.
pub fn encode_admin_success(out: &mut Vec<u8>, ctx: &ResponseContext, op: u32) -> usize {
    ResponseBuilder::start(out, ctx, op, code::SUCCESS).finish()
}

/// Writes the SUCCESS of a CREATE_HANDLE: the body is the created handle
/// (it matters with MNS). Returns the whole length.
pub fn encode_create_success(out: &mut Vec<u8>, ctx: &ResponseContext, handle: &[u8]) -> usize {
    let mut b = ResponseBuilder::start(out, ctx, opcode::CREATE_HANDLE, code::SUCCESS);
    b.put_bytes(handle);
    b.finish()
}

/// Writes one LIST_HANDLES message: a count and the handles. `more`
/// sets CN (more messages follow on the connection). The caller sends
/// [`LIST_HANDLES_PER_MESSAGE`] handles per message, all with the answer's
/// request id, and one empty message when there are none. Returns the
/// whole length.
pub fn encode_list_handles_response<'h>(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    handles: impl IntoIterator<Item = &'h [u8]>,
    more: bool,
) -> usize {
    let mut ctx = *ctx;
    if more {
        ctx.op_flags |= flags::CN;
    } else {
        ctx.op_flags &= !flags::CN;
    }
    let mut b = ResponseBuilder::start(out, &ctx, opcode::LIST_HANDLES, code::SUCCESS);
    let count_at = b.buffer().len();
    b.put_u32(0);
    let mut count = 0u32;
    for h in handles {
        b.put_bytes(h);
        count += 1;
    }
    b.buffer()[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    b.finish()
}

/// Writes an error answer with an empty message, as CNRI does (400, 401,
/// 403, 101...). Returns the whole length.
pub fn encode_admin_error(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    op: u32,
    response_code: u32,
) -> usize {
    encode_error_response(out, ctx, op, response_code, "")
}

/// The context of the result of an authenticated operation (step 4 of the
/// flow): everything from the original request (opcode, flags, RD digest
/// over the original, session id), but the request id of the answer
/// (CHALLENGE_RESPONSE), which the client waits for.
pub fn result_context(
    original: &crate::Request<'_>,
    answer_request_id: u32,
    now: u32,
) -> ResponseContext {
    let mut ctx = ResponseContext::for_request(original, now);
    ctx.request_id = answer_request_id;
    ctx
}

/// A decoded admin response (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub envelope: Envelope,
    pub header: Header,
    /// The RD digest, present when the header has RD.
    pub digest: Option<Digest>,
    pub body: AdminResponseBody,
}

/// The body of an admin response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminResponseBody {
    /// SUCCESS with nothing after the digest.
    Empty,
    /// SUCCESS to CREATE_HANDLE: the created handle (lossy UTF-8).
    Created { handle: String },
    /// SUCCESS to LIST_HANDLES; `more` is the CN flag.
    Handles { handles: Vec<String>, more: bool },
    /// 402 AUTHENTICATION_NEEDED (protocol >= 2.1 layout): the nonce; the
    /// request digest is [`AdminResponse::digest`].
    Challenge { nonce: Vec<u8> },
    /// An error code and its message (lossy UTF-8, often empty).
    Error { message: String },
    /// Anything else: the body bytes after the digest.
    Other(Vec<u8>),
}

/// Largest nonce read from a 402.
pub const MAX_NONCE_LEN: usize = 1024;

/// Decodes a complete admin response message (envelope included): results
/// of 100-105, their errors, and 402 challenges.
pub fn decode_admin_response(message: &[u8]) -> Result<AdminResponse, DecodeError> {
    let r = crate::decode_response(message)?;
    let raw = match r.body {
        crate::ResponseBody::Error { message } => {
            return Ok(AdminResponse {
                envelope: r.envelope,
                header: r.header,
                digest: r.digest,
                body: AdminResponseBody::Error { message },
            });
        }
        crate::ResponseBody::Other(raw) => raw,
        crate::ResponseBody::Resolution { .. } | crate::ResponseBody::Referral { .. } => {
            return Err(DecodeError::Malformed("admin response: not an admin body"));
        }
    };
    let mut rd = Reader::new(&raw);
    let body = match (r.header.response_code, r.header.opcode) {
        (code::AUTHENTICATION_NEEDED, _) => {
            let nonce = rd.bytes("nonce")?;
            if nonce.len() > MAX_NONCE_LEN {
                return Err(DecodeError::TooLong("nonce", nonce.len() as u32));
            }
            AdminResponseBody::Challenge {
                nonce: nonce.to_vec(),
            }
        }
        (code::SUCCESS, _) if raw.is_empty() => AdminResponseBody::Empty,
        (code::SUCCESS, opcode::CREATE_HANDLE) => {
            let h = rd.bytes("handle")?;
            if h.len() > limits::MAX_IDENTIFIER_BYTES {
                return Err(DecodeError::TooLong("handle", h.len() as u32));
            }
            AdminResponseBody::Created {
                handle: String::from_utf8_lossy(h).into_owned(),
            }
        }
        (code::SUCCESS, opcode::LIST_HANDLES) => {
            let n = rd.count("handle count", 4)?;
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                let h = rd.bytes("handle")?;
                if h.len() > limits::MAX_IDENTIFIER_BYTES {
                    return Err(DecodeError::TooLong("handle", h.len() as u32));
                }
                handles.push(String::from_utf8_lossy(h).into_owned());
            }
            AdminResponseBody::Handles {
                handles,
                more: r.header.op_flags & flags::CN != 0,
            }
        }
        (code::SUCCESS, op) if is_admin_opcode(op) => AdminResponseBody::Empty,
        _ => AdminResponseBody::Other(raw),
    };
    Ok(AdminResponse {
        envelope: r.envelope,
        header: r.header,
        digest: r.digest,
        body,
    })
}

// ---------------------------------------------------------------------------
// HS_ADMIN, HS_VLIST and references.

/// The permission bits of an HS_ADMIN value (spec section 5, CNRI's
/// `AdminRecord`; RFC 3651 errata). Bits above 0x0800 are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AdminPerms(pub u16);

impl AdminPerms {
    pub const NONE: Self = Self(0);
    pub const ADD_HANDLE: Self = Self(0x0001);
    pub const DELETE_HANDLE: Self = Self(0x0002);
    pub const ADD_DERIVED_PREFIX: Self = Self(0x0004);
    pub const DELETE_DERIVED_PREFIX: Self = Self(0x0008);
    pub const MODIFY_VALUE: Self = Self(0x0010);
    pub const REMOVE_VALUE: Self = Self(0x0020);
    pub const ADD_VALUE: Self = Self(0x0040);
    /// Modify an HS_ADMIN value into another HS_ADMIN value.
    pub const MODIFY_ADMIN: Self = Self(0x0080);
    pub const REMOVE_ADMIN: Self = Self(0x0100);
    pub const ADD_ADMIN: Self = Self(0x0200);
    /// Read values without public read.
    pub const READ_VALUE: Self = Self(0x0400);
    pub const LIST_HANDLES: Self = Self(0x0800);
    /// All twelve permissions.
    pub const ALL: Self = Self(0x0fff);

    /// Whether every bit of `needed` is set.
    pub fn contains(self, needed: Self) -> bool {
        self.0 & needed.0 == needed.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for AdminPerms {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for AdminPerms {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// A reference to a value: handle and index (an admin identity, an
/// HS_ADMIN's admin, an HS_VLIST member). Index 0 in an HS_ADMIN or
/// HS_VLIST entry means "any index of that handle".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdminRef {
    pub handle: String,
    pub index: u32,
}

impl AdminRef {
    pub fn new(handle: impl Into<String>, index: u32) -> Self {
        Self {
            handle: handle.into(),
            index,
        }
    }

    /// Whether this entry (of an HS_ADMIN or HS_VLIST) names `identity`:
    /// the handles are equal by [`handles_equal`] and the index is 0 or
    /// the identity's.
    pub fn matches(&self, identity: &AdminRef) -> bool {
        (self.index == 0 || self.index == identity.index)
            && handles_equal(&self.handle, &identity.handle)
    }
}

/// Handle equality of the admin check: the prefix (up to the first `/`)
/// ASCII case-insensitive, the suffix exact; the whole handle
/// case-insensitive when it starts with `0.`.
pub fn handles_equal(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if starts_with_ignore_case(a, "0.") {
        return a.eq_ignore_ascii_case(b);
    }
    match (a.split_once('/'), b.split_once('/')) {
        (Some((pa, sa)), Some((pb, sb))) => pa.eq_ignore_ascii_case(pb) && sa == sb,
        (None, None) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// The data of an HS_ADMIN value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HsAdmin {
    pub permissions: AdminPerms,
    pub admin: AdminRef,
    /// The pre-7.4 form (2 trailing zero bytes), kept when re-encoding.
    pub legacy: bool,
}

impl HsAdmin {
    /// Decodes HS_ADMIN data: permissions int2, admin handle str, admin
    /// index int4; 2 legacy trailing bytes (or more) are accepted and
    /// ignored.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let permissions = AdminPerms(r.u16("HS_ADMIN permissions")?);
        let handle = r.bytes("HS_ADMIN handle")?;
        if handle.len() > limits::MAX_IDENTIFIER_BYTES {
            return Err(DecodeError::TooLong("HS_ADMIN handle", handle.len() as u32));
        }
        let handle = std::str::from_utf8(handle)
            .map_err(|_| DecodeError::Malformed("HS_ADMIN handle (not UTF-8)"))?;
        let index = r.u32("HS_ADMIN index")?;
        Ok(Self {
            permissions,
            admin: AdminRef::new(handle, index),
            legacy: r.remaining() >= 2,
        })
    }

    /// Appends the data (with the 2 trailing zero bytes when `legacy`).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.permissions.0.to_be_bytes());
        put_bytes(out, self.admin.handle.as_bytes());
        put_u32(out, self.admin.index);
        if self.legacy {
            out.extend_from_slice(&[0, 0]);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Whether this value grants every permission of `needed`.
    pub fn grants(&self, needed: AdminPerms) -> bool {
        self.permissions.contains(needed)
    }
}

/// The HS_ADMIN values among `values`, decoded (undecodable ones are
/// skipped: they grant nothing).
pub fn hs_admins<'v>(values: impl IntoIterator<Item = &'v Value>) -> Vec<HsAdmin> {
    values
        .into_iter()
        .filter(|v| v.kind == HS_ADMIN)
        .filter_map(|v| HsAdmin::decode(&v.data).ok())
        .collect()
}

/// Decodes HS_VLIST data: count int4, then per member handle str and
/// index int4. Bounded by the bytes present and [`MAX_VLIST_MEMBERS`];
/// trailing bytes are ignored.
pub fn decode_vlist(data: &[u8]) -> Result<Vec<AdminRef>, DecodeError> {
    let mut r = Reader::new(data);
    let n = r.count("HS_VLIST count", 8)?;
    if n > MAX_VLIST_MEMBERS {
        return Err(DecodeError::TooLong("HS_VLIST count", n as u32));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let h = r.bytes("HS_VLIST handle")?;
        if h.len() > limits::MAX_IDENTIFIER_BYTES {
            return Err(DecodeError::TooLong("HS_VLIST handle", h.len() as u32));
        }
        let h = std::str::from_utf8(h)
            .map_err(|_| DecodeError::Malformed("HS_VLIST handle (not UTF-8)"))?;
        let index = r.u32("HS_VLIST index")?;
        out.push(AdminRef::new(h, index));
    }
    Ok(out)
}

/// Encodes HS_VLIST data.
pub fn encode_vlist(members: &[AdminRef]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, members.len() as u32);
    for m in members {
        put_bytes(&mut out, m.handle.as_bytes());
        put_u32(&mut out, m.index);
    }
    out
}

/// The members of the HS_VLIST value at `index` among `values` (`None`
/// when there is no such value, it is not an HS_VLIST, or it does not
/// decode): what a resolver callback of [`authorize`] returns for a local
/// handle.
pub fn vlist_members(values: &[Value], index: u32) -> Option<Vec<AdminRef>> {
    let v = values.iter().find(|v| v.index == index)?;
    if v.kind != HS_VLIST {
        return None;
    }
    decode_vlist(&v.data).ok()
}

/// Whether `identity` is named by one of `refs` directly, or through the
/// HS_VLIST groups they name (breadth-first, nested, each group once,
/// index-0 references not resolved, at most [`MAX_GROUP_LOOKUPS`] look-ups).
/// `resolve(handle, index)` returns the members when that value is an
/// HS_VLIST (locally with non-public values, else by certified
/// resolution), `None` otherwise. For the `server_admins` of the config.
pub fn is_named<'r, R>(
    identity: &AdminRef,
    refs: impl IntoIterator<Item = &'r AdminRef>,
    resolve: R,
) -> bool
where
    R: FnMut(&str, u32) -> Option<Vec<AdminRef>>,
{
    let mut queue = VecDeque::new();
    for r in refs {
        if r.matches(identity) {
            return true;
        }
        queue.push_back(r.clone());
    }
    search_groups(identity, queue, resolve)
}

fn search_groups<R>(identity: &AdminRef, mut queue: VecDeque<AdminRef>, mut resolve: R) -> bool
where
    R: FnMut(&str, u32) -> Option<Vec<AdminRef>>,
{
    let mut visited: HashSet<(String, u32)> = HashSet::new();
    let mut lookups = 0usize;
    while let Some(group) = queue.pop_front() {
        if group.index == 0 {
            continue;
        }
        let key = (group.handle.to_ascii_uppercase(), group.index);
        if !visited.insert(key) {
            continue;
        }
        if lookups >= MAX_GROUP_LOOKUPS {
            return false;
        }
        lookups += 1;
        let Some(members) = resolve(&group.handle, group.index) else {
            continue;
        };
        for m in members {
            if m.matches(identity) {
                return true;
            }
            if queue.len() < MAX_VLIST_MEMBERS {
                queue.push_back(m);
            }
        }
    }
    false
}

/// The admin check of spec section 5, steps 3 and 4: whether one of the
/// governing HS_ADMIN values `admins` holds every permission of `needed`
/// and names `identity`, directly or through HS_VLIST groups (see
/// [`is_named`] for `resolve`). `false` means 400 INVALID_ADMIN (unless
/// the identity is a server admin, step 2, which the caller checks with
/// [`is_named`] on its configured list). A record without HS_ADMIN values
/// admits nobody.
///
/// Call it before verifying the answer (no crypto for a refused admin).
/// With HS_PUBKEY key index 0, verify first to learn the key index, then
/// call this with it.
pub fn authorize<'a, R>(
    identity: &AdminRef,
    needed: AdminPerms,
    admins: impl IntoIterator<Item = &'a HsAdmin>,
    resolve: R,
) -> bool
where
    R: FnMut(&str, u32) -> Option<Vec<AdminRef>>,
{
    let mut queue = VecDeque::new();
    for a in admins {
        if !a.grants(needed) {
            continue;
        }
        if a.admin.matches(identity) {
            return true;
        }
        queue.push_back(a.admin.clone());
    }
    search_groups(identity, queue, resolve)
}

// ---------------------------------------------------------------------------
// Which HS_ADMIN values govern an operation, and the permissions it needs.

/// An operation to authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// CREATE_HANDLE of a handle that does not exist (for OW over an
    /// existing handle, check the changes with [`needed_for_add`],
    /// [`needed_for_modify`] and [`needed_for_remove`] against the
    /// existing handle's HS_ADMIN).
    Create {
        handle: &'a str,
    },
    Delete {
        handle: &'a str,
    },
    /// ADD_VALUE; `needed` from [`needed_for_add`].
    AddValue {
        handle: &'a str,
        needed: AdminPerms,
    },
    /// REMOVE_VALUE; `needed` from [`needed_for_remove`].
    RemoveValue {
        handle: &'a str,
        needed: AdminPerms,
    },
    /// MODIFY_VALUE; `needed` from [`needed_for_modify`] over the values.
    ModifyValue {
        handle: &'a str,
        needed: AdminPerms,
    },
    /// LIST_HANDLES with the prefix as sent (`0.NA/p` or `p`).
    ListHandles {
        prefix: &'a str,
    },
    /// Resolution with PO clear of values without public read.
    ReadValues {
        handle: &'a str,
    },
}

/// Whose HS_ADMIN values decide, and what they must grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The handle whose HS_ADMIN values govern (for a create, the prefix
    /// handle `0.NA/p`, resolved with a certified resolution when not
    /// local, and ignored when `allow_na_admins` is false).
    pub governing: String,
    pub needed: AdminPerms,
}

impl Operation<'_> {
    /// The governing handle and the needed permissions (spec section 5).
    pub fn rule(&self) -> Rule {
        let (governing, needed) = match *self {
            Self::Create { handle } => match derived_prefix_parent(handle) {
                Some(parent) => (parent, AdminPerms::ADD_DERIVED_PREFIX),
                None => (na_handle(handle), AdminPerms::ADD_HANDLE),
            },
            Self::Delete { handle } => (handle.to_owned(), AdminPerms::DELETE_HANDLE),
            Self::AddValue { handle, needed }
            | Self::RemoveValue { handle, needed }
            | Self::ModifyValue { handle, needed } => (handle.to_owned(), needed),
            Self::ListHandles { prefix } => (prefix_handle(prefix), AdminPerms::LIST_HANDLES),
            Self::ReadValues { handle } => (handle.to_owned(), AdminPerms::READ_VALUE),
        };
        Rule { governing, needed }
    }
}

/// The prefix handle of a handle: `0.NA/` and the part before the first
/// `/` (`88.100.1/PUMP-1` -> `0.NA/88.100.1`; a prefix handle `0.NA/88`
/// -> `0.NA/0.NA`; no `/`: the whole string is the prefix).
pub fn na_handle(handle: &str) -> String {
    let prefix = handle.split_once('/').map_or(handle, |(p, _)| p);
    format!("0.NA/{prefix}")
}

/// For a derived prefix handle `0.NA/p.x`, its parent `0.NA/p`; `None`
/// for any other handle (including a top-level `0.NA/p` without a dot).
pub fn derived_prefix_parent(handle: &str) -> Option<String> {
    if !starts_with_ignore_case(handle, "0.NA/") {
        return None;
    }
    let prefix = &handle[5..];
    let (parent, last) = prefix.rsplit_once('.')?;
    if parent.is_empty() || last.is_empty() {
        return None;
    }
    Some(format!("{}{parent}", &handle[..5]))
}

fn is_admin_type(kind: &str) -> bool {
    kind == HS_ADMIN
}

/// Permissions to add values of these types (ADD_VALUE, or the new values
/// of a create over nothing): add value, and add admin when one is an
/// HS_ADMIN. With OW, a value replacing an existing one needs
/// [`needed_for_modify`] instead; a value identical to the existing one
/// needs nothing (the caller leaves it out).
pub fn needed_for_add<'k>(types: impl IntoIterator<Item = &'k str>) -> AdminPerms {
    let mut needed = AdminPerms::NONE;
    for kind in types {
        needed |= if is_admin_type(kind) {
            AdminPerms::ADD_ADMIN
        } else {
            AdminPerms::ADD_VALUE
        };
    }
    needed
}

/// Permissions to remove values of these types: remove value for others,
/// remove admin for HS_ADMIN values, both when mixed (one HS_ADMIN must
/// hold both).
pub fn needed_for_remove<'k>(types: impl IntoIterator<Item = &'k str>) -> AdminPerms {
    let mut needed = AdminPerms::NONE;
    for kind in types {
        needed |= if is_admin_type(kind) {
            AdminPerms::REMOVE_ADMIN
        } else {
            AdminPerms::REMOVE_VALUE
        };
    }
    needed
}

/// Permissions to modify one value from `old_type` (with `old_public_write`
/// its public-write bit) to `new_type`: HS_ADMIN -> HS_ADMIN modify admin;
/// HS_ADMIN -> other remove admin + modify value; other -> HS_ADMIN modify
/// value + add admin; other -> other modify value, or nothing when the old
/// value is public-write. Union over the values of a request.
pub fn needed_for_modify(old_type: &str, old_public_write: bool, new_type: &str) -> AdminPerms {
    match (is_admin_type(old_type), is_admin_type(new_type)) {
        (true, true) => AdminPerms::MODIFY_ADMIN,
        (true, false) => AdminPerms::REMOVE_ADMIN | AdminPerms::MODIFY_VALUE,
        (false, true) => AdminPerms::MODIFY_VALUE | AdminPerms::ADD_ADMIN,
        (false, false) if old_public_write => AdminPerms::NONE,
        (false, false) => AdminPerms::MODIFY_VALUE,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn v(index: u32, kind: &str) -> Value {
        Value::new(index, kind, bytes_of(kind))
    }

    fn bytes_of(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn bodies_round_trip() {
        let reqs = [
            AdminRequest::CreateHandle {
                handle: "88/a".into(),
                values: vec![v(1, "URL"), v(100, HS_ADMIN)],
            },
            AdminRequest::DeleteHandle {
                handle: "88/a".into(),
            },
            AdminRequest::AddValue {
                handle: "88/a".into(),
                values: vec![v(2, "EMAIL")],
            },
            AdminRequest::RemoveValue {
                handle: "88/a".into(),
                indexes: vec![2, 3],
            },
            AdminRequest::ModifyValue {
                handle: "88/a".into(),
                values: vec![v(1, "URL")],
            },
            AdminRequest::ListHandles {
                prefix: "0.NA/88".into(),
            },
        ];
        for req in reqs {
            let mut body = Vec::new();
            req.encode_body(&mut body);
            assert_eq!(AdminRequest::decode(req.opcode(), &body).unwrap(), req);
            // Trailing bytes are ignored.
            body.extend_from_slice(&[0, 0]);
            assert_eq!(AdminRequest::decode(req.opcode(), &body).unwrap(), req);
            // Every truncation of the real fields fails cleanly.
            for cut in 0..body.len() - 2 {
                assert!(AdminRequest::decode(req.opcode(), &body[..cut]).is_err());
            }
        }
    }

    #[test]
    fn hostile_bodies_fail_without_allocating() {
        let mut body = Vec::new();
        put_bytes(&mut body, b"88/a");
        put_u32(&mut body, u32::MAX);
        for op in [100, 102, 103, 104] {
            assert!(matches!(
                AdminRequest::decode(op, &body),
                Err(AdminDecodeError::Decode(_))
            ));
        }
        let mut body = Vec::new();
        put_bytes(&mut body, &[0xff, 0xfe]);
        let e = AdminRequest::decode(101, &body).unwrap_err();
        assert_eq!(e, AdminDecodeError::InvalidHandle);
        assert_eq!(e.response_code(), code::INVALID_HANDLE);
        assert_eq!(
            AdminRequest::decode(1, &body).unwrap_err().response_code(),
            code::OPERATION_NOT_SUPPORTED
        );
        let mut long = Vec::new();
        put_bytes(&mut long, &vec![b'a'; limits::MAX_IDENTIFIER_BYTES + 1]);
        assert_eq!(
            AdminRequest::decode(101, &long),
            Err(AdminDecodeError::InvalidHandle)
        );
    }

    #[test]
    fn value_checks_follow_the_spec() {
        let add = |values| AdminRequest::AddValue {
            handle: "88/a".into(),
            values,
        };
        assert_eq!(add(vec![]).check_values(), Err(code::INVALID_VALUE));
        assert_eq!(
            add(vec![v(0, "URL")]).check_values(),
            Err(code::INVALID_VALUE)
        );
        assert_eq!(
            add(vec![v(0x8000_0000, "URL")]).check_values(),
            Err(code::INVALID_VALUE)
        );
        assert_eq!(
            add(vec![v(1, "URL"), v(1, "EMAIL")]).check_values(),
            Err(code::VALUE_ALREADY_EXISTS)
        );
        assert_eq!(add(vec![v(1, "URL"), v(2, "EMAIL")]).check_values(), Ok(()));
        let create = AdminRequest::CreateHandle {
            handle: "88/a".into(),
            values: vec![],
        };
        assert_eq!(create.check_values(), Ok(()));
        assert_eq!(invalid_value_code((2, 4)), code::VALUE_ALREADY_EXISTS);
        assert_eq!(invalid_value_code((2, 11)), code::INVALID_VALUE);
        let mut values = vec![v(1, "URL")];
        stamp_values(&mut values, 77);
        assert_eq!(values[0].timestamp, 77);
    }

    #[test]
    fn handle_equality_and_references() {
        assert!(handles_equal("88.100.1/Pump", "88.100.1/Pump"));
        assert!(handles_equal("88.A/Pump", "88.a/Pump"));
        assert!(!handles_equal("88.100.1/Pump", "88.100.1/PUMP"));
        assert!(handles_equal("0.NA/88.A", "0.na/88.a"));
        assert!(!handles_equal("0.NA/88", "0.NA/89"));
        assert!(!handles_equal("88/a", "88/ab"));
        assert!(!handles_equal("88a", "88/"));
        let id = AdminRef::new("0.NA/88", 300);
        assert!(AdminRef::new("0.na/88", 0).matches(&id));
        assert!(AdminRef::new("0.NA/88", 300).matches(&id));
        assert!(!AdminRef::new("0.NA/88", 301).matches(&id));
    }

    #[test]
    fn hs_admin_forms() {
        let a = HsAdmin {
            permissions: AdminPerms(0x0471),
            admin: AdminRef::new("0.NA/88", 300),
            legacy: true,
        };
        let data = a.encode();
        assert_eq!(data.len(), 2 + 4 + 7 + 4 + 2);
        assert_eq!(HsAdmin::decode(&data).unwrap(), a);
        let modern = HsAdmin { legacy: false, ..a };
        assert_eq!(HsAdmin::decode(&modern.encode()).unwrap(), modern);
        for cut in 0..data.len() - 2 {
            assert!(HsAdmin::decode(&data[..cut]).is_err());
        }
        let g = vec![AdminRef::new("0.NA/88", 300), AdminRef::new("88/x", 1)];
        assert_eq!(decode_vlist(&encode_vlist(&g)).unwrap(), g);
        assert!(decode_vlist(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn rules_name_the_governing_record() {
        let r = Operation::Create {
            handle: "88.100.1/PUMP-1",
        }
        .rule();
        assert_eq!(r.governing, "0.NA/88.100.1");
        assert_eq!(r.needed, AdminPerms::ADD_HANDLE);
        let r = Operation::Create {
            handle: "0.NA/88.100.1",
        }
        .rule();
        assert_eq!(r.governing, "0.NA/88.100");
        assert_eq!(r.needed, AdminPerms::ADD_DERIVED_PREFIX);
        let r = Operation::Create { handle: "0.NA/88" }.rule();
        assert_eq!(r.governing, "0.NA/0.NA");
        assert_eq!(r.needed, AdminPerms::ADD_HANDLE);
        let r = Operation::ListHandles { prefix: "88.100.1" }.rule();
        assert_eq!(r.governing, "0.NA/88.100.1");
        assert_eq!(r.needed, AdminPerms::LIST_HANDLES);
        let r = Operation::Delete { handle: "88/a" }.rule();
        assert_eq!(
            (r.governing.as_str(), r.needed),
            ("88/a", AdminPerms::DELETE_HANDLE)
        );
        assert_eq!(
            Operation::ReadValues { handle: "88/a" }.rule().needed,
            AdminPerms::READ_VALUE
        );
        assert_eq!(needed_for_add(["URL", "EMAIL"]), AdminPerms::ADD_VALUE);
        assert_eq!(
            needed_for_add(["URL", HS_ADMIN]),
            AdminPerms::ADD_VALUE | AdminPerms::ADD_ADMIN
        );
        assert_eq!(needed_for_remove([HS_ADMIN]), AdminPerms::REMOVE_ADMIN);
        assert_eq!(
            needed_for_remove(["URL", HS_ADMIN]),
            AdminPerms::REMOVE_ADMIN | AdminPerms::REMOVE_VALUE
        );
        assert_eq!(
            needed_for_modify(HS_ADMIN, false, HS_ADMIN),
            AdminPerms::MODIFY_ADMIN
        );
        assert_eq!(
            needed_for_modify(HS_ADMIN, false, "URL"),
            AdminPerms::REMOVE_ADMIN | AdminPerms::MODIFY_VALUE
        );
        assert_eq!(
            needed_for_modify("URL", false, HS_ADMIN),
            AdminPerms::MODIFY_VALUE | AdminPerms::ADD_ADMIN
        );
        assert_eq!(needed_for_modify("URL", true, "URL"), AdminPerms::NONE);
        assert_eq!(
            needed_for_modify("URL", false, "URL"),
            AdminPerms::MODIFY_VALUE
        );
    }

    #[test]
    fn groups_are_bounded_and_cycles_end() {
        let id = AdminRef::new("88/me", 1);
        let admins = [HsAdmin {
            permissions: AdminPerms::ALL,
            admin: AdminRef::new("88/g0", 1),
            legacy: false,
        }];
        // A cycle g0 -> g1 -> g0 never reaches the identity.
        let mut calls = 0;
        let cyc = |h: &str, _i: u32| {
            calls += 1;
            Some(vec![AdminRef::new(
                if h == "88/g0" { "88/g1" } else { "88/g0" },
                1,
            )])
        };
        assert!(!authorize(&id, AdminPerms::ADD_VALUE, &admins, cyc));
        assert_eq!(calls, 2);
        // An endless chain stops after MAX_GROUP_LOOKUPS look-ups.
        let mut calls = 0;
        let chain = |h: &str, _i: u32| {
            calls += 1;
            Some(vec![AdminRef::new(format!("{h}x"), 1)])
        };
        assert!(!authorize(&id, AdminPerms::ADD_VALUE, &admins, chain));
        assert_eq!(calls, MAX_GROUP_LOOKUPS);
        // Nested groups admit.
        let nested = |h: &str, _i: u32| match h {
            "88/g0" => Some(vec![AdminRef::new("88/g1", 2)]),
            "88/g1" => Some(vec![AdminRef::new("88/ME", 1), AdminRef::new("88/me", 0)]),
            _ => None,
        };
        assert!(authorize(&id, AdminPerms::ADD_VALUE, &admins, nested));
        assert!(is_named(&id, &[AdminRef::new("88/g0", 1)], nested));
        assert!(!is_named(&id, &[AdminRef::new("88/g0", 0)], nested));
    }
}
