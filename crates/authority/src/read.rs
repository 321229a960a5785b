//! Authenticated resolution: values without public read, to an admin
//! with the read value permission (docs/handle-admin.md, "Authenticated
//! resolution").
//!
//! A RESOLUTION with PO (public values only) clear asks for every value it
//! names, public or not. On an admin interface (TCP, QUIC: the transports
//! call [`HandleService::respond_stream`]) a node that serves
//! administration answers it like an admin request when the record holds
//! a value the question names and that lacks public read: a 402 challenge
//! ([`Outcome::Admin`], then [`HandleService::respond_admin`] on a blocking
//! thread, with the pending-challenge table of administration). The
//! CHALLENGE_RESPONSE is checked as for administration, against the
//! HS_ADMIN values of the identifier itself, which must grant read value
//! (0x0400) to the identity, directly or through HS_VLIST groups (400
//! otherwise, before any crypto); then the answer is verified (403, 404,
//! 406). The result carries every value the question names that has public
//! read or admin read, with the answer's request id.
//!
//! Everything else is answered as before: UDP (its workers call
//! [`HandleService::respond`] and the batch path, which never challenge a
//! resolution), PO set, a record without such values, a node without
//! administration: publicly readable values only, through the response
//! cache. The authenticated answer is built from the store each time and
//! never enters the response cache, which holds public projections only.
//! Value data is never logged.

use crate::admin::{
    AdminState, Answered, Refusal, allowed, error_message, issue_challenge, not_found, refusal,
    refused_admin, store_failure, verify_identity,
};
use crate::answer::is_valid_handle;
use crate::service::{HandleService, Outcome, Scratch};
use idnode_core::normalize_into;
use idnode_core::wire::{RecordView, ValueView};
use idnode_core::{Permissions, Value};
use idnode_handle::admin::{AdminPerms, AdminRef, HS_ADMIN, HsAdmin, Operation};
use idnode_handle::auth::{Challenge, ChallengeAnswer};
use idnode_handle::{
    ENVELOPE_LEN, Request, ResolutionQuery, ResponseContext, code, decode_request,
    encode_error_response, encode_resolution_response, flags, opcode,
};
use idnode_registry::RegistryError;
use idnode_store::{Space, StoreError};

/// Whether the header of `message` says RESOLUTION with PO clear: the one
/// request that may ask for values without public read. Reads 8 bytes.
#[inline]
fn asks_beyond_public(message: &[u8]) -> bool {
    let word = |at: usize| {
        message
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    word(ENVELOPE_LEN) == Some(opcode::RESOLUTION)
        && word(ENVELOPE_LEN + 8).is_some_and(|f| f & flags::PO == 0)
}

/// Whether a value may go to an admin with read value: public read or
/// admin read. A value with neither is never sent.
fn admin_readable(permissions: Permissions) -> bool {
    permissions.0 & (Permissions::PUBLIC_READ | Permissions::ADMIN_READ) != 0
}

fn corrupt(e: impl std::fmt::Display) -> Refusal {
    store_failure(&RegistryError::Store(StoreError::Corrupt(format!(
        "record does not decode: {e}"
    ))))
}

impl HandleService {
    /// Answers one request on an admin interface (TCP, QUIC): as
    /// [`respond`](Self::respond), except that a RESOLUTION with PO clear
    /// whose record holds a value it names without public read gets
    /// [`Outcome::Admin`] on a node that serves administration (the
    /// transport then calls [`respond_admin`](Self::respond_admin), which
    /// challenges it). Requests with PO set pay one header check.
    pub fn respond_stream(
        &self,
        message: &[u8],
        now: u32,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        if self.admin.is_some()
            && asks_beyond_public(message)
            && let Some(keep_open) = self.needs_authentication(message, &mut scratch.key)
        {
            out.clear();
            return Outcome::Admin { keep_open };
        }
        self.respond(message, now, out, scratch)
    }

    /// Whether [`respond_stream`](Self::respond_stream) answered `message`
    /// with [`Outcome::Admin`] (an admin request, a challenge answer, or a
    /// resolution that needs authentication) rather than
    /// [`Outcome::Recurse`]; for a transport that must tell the two apart
    /// later (QUIC). May read the store.
    pub fn defers_to_admin(&self, message: &[u8]) -> bool {
        Self::is_admin_message(message)
            || (self.admin.is_some()
                && asks_beyond_public(message)
                && self
                    .needs_authentication(message, &mut Vec::new())
                    .is_some())
    }

    /// For a RESOLUTION with PO clear: `Some(keep_open)` when the record
    /// of its identifier is here and holds a value the question names
    /// that lacks public read. `None` for anything else, including a
    /// request that does not decode or a record that cannot be read (the
    /// ordinary path answers those).
    fn needs_authentication(&self, message: &[u8], key: &mut Vec<u8>) -> Option<bool> {
        let request = decode_request(message).ok()?;
        let header = &request.header;
        if header.opcode != opcode::RESOLUTION || header.op_flags & flags::PO != 0 {
            return None;
        }
        let query = ResolutionQuery::decode(request.body).ok()?;
        if !is_valid_handle(query.handle) {
            return None;
        }
        normalize_into(query.handle, key);
        let stored = self.store.get(Space::Records, key).ok()??;
        let view = RecordView::parse(&stored).ok()?;
        let restricted = view
            .values()
            .any(|v| v.is_ok_and(|v| !v.permissions.public_read() && query.wants(v.index, v.kind)));
        restricted.then_some(header.op_flags & flags::KC != 0)
    }

    /// Step 1 for a resolution: the 402 (signed when the request set CT),
    /// or, when the record no longer needs it, the ordinary answer.
    pub(crate) fn challenge_read(
        &self,
        admin: &AdminState,
        message: &[u8],
        request: &Request<'_>,
        ctx: &ResponseContext,
        now: u32,
        session: Option<u32>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self
            .needs_authentication(message, &mut Vec::new())
            .is_none()
        {
            // Changed since the transport asked: public values, as usual.
            return match self.respond(message, now, &mut out, &mut Scratch::default()) {
                Outcome::Reply { .. } => vec![out],
                Outcome::Drop => vec![],
                Outcome::Recurse { .. } | Outcome::Admin { .. } => {
                    let msg = "the record changed while it was read; ask again";
                    let mut out = error_message(ctx, opcode::RESOLUTION, refusal(code::ERROR, msg));
                    self.certify_if_asked(message, Outcome::Reply { keep_open: false }, &mut out);
                    vec![out]
                }
            };
        }
        out = match issue_challenge(admin, message, request, ctx, now, session) {
            Ok(challenge) => challenge,
            Err(refused) => error_message(ctx, opcode::RESOLUTION, refused),
        };
        self.certify_if_asked(message, Outcome::Reply { keep_open: false }, &mut out);
        vec![out]
    }

    /// Steps 2 and 3 for a resolution: the answer checked, then every
    /// value the question names that an admin may read, with the answer's
    /// request id (`ctx`); the caller signs it when the resolution set CT.
    pub(crate) fn redeem_read(
        &self,
        admin: &AdminState,
        original: &Request<'_>,
        answer_body: &[u8],
        challenge: &Challenge,
        ctx: &ResponseContext,
        session: Option<Answered<'_>>,
    ) -> Vec<Vec<u8>> {
        let answered = ChallengeAnswer::decode(answer_body)
            .map_err(|e| {
                refusal(
                    code::PROTOCOL_ERROR,
                    format!("the challenge answer does not decode: {e}"),
                )
            })
            .and_then(|answer| {
                self.read_as(original, ctx, |governing| {
                    let key_index = verify_identity(admin, &answer, challenge, governing)?;
                    if let Some(session) = session {
                        session.verified(admin, answer.key_handle, key_index)?;
                    }
                    Ok(AdminRef::new(answer.key_handle, key_index))
                })
            });
        let out = match answered {
            Ok((out, _)) => out,
            Err(refused) => error_message(ctx, opcode::RESOLUTION, refused),
        };
        vec![out]
    }

    /// A resolution in an authenticated session, for its identity: the
    /// answer, and whether it carries values without public read (then it
    /// is encrypted).
    pub(crate) fn session_read(
        &self,
        admin: &AdminState,
        request: &Request<'_>,
        who: &AdminRef,
        ctx: &ResponseContext,
    ) -> (Vec<Vec<u8>>, bool) {
        let read = self.read_as(request, ctx, |governing| {
            if allowed(&admin.registry, who, governing) {
                Ok(who.clone())
            } else {
                Err(refused_admin(who))
            }
        });
        match read {
            Ok((out, private)) => (vec![out], private),
            Err(refused) => (vec![error_message(ctx, opcode::RESOLUTION, refused)], false),
        }
    }

    /// The values a resolution names that an admin may read, once
    /// `identify` (given the governing HS_ADMIN values of the identifier
    /// and the read permission) says who reads; with whether any of them
    /// lacks public read.
    fn read_as(
        &self,
        original: &Request<'_>,
        ctx: &ResponseContext,
        identify: impl FnOnce(&[(Vec<HsAdmin>, AdminPerms)]) -> Result<AdminRef, Refusal>,
    ) -> Result<(Vec<u8>, bool), Refusal> {
        let query = ResolutionQuery::decode(original.body).map_err(|e| {
            refusal(
                code::PROTOCOL_ERROR,
                format!("malformed resolution request: {e}"),
            )
        })?;
        let handle = std::str::from_utf8(query.handle)
            .ok()
            .filter(|_| is_valid_handle(query.handle))
            .ok_or_else(|| refusal(code::INVALID_HANDLE, "handle must be UTF-8 `prefix/suffix`"))?;
        let mut key = Vec::new();
        normalize_into(query.handle, &mut key);
        let stored = self
            .store
            .get(Space::Records, &key)
            .map_err(|e| store_failure(&RegistryError::Store(e)))?
            .ok_or_else(|| not_found(handle))?;
        let view = RecordView::parse(&stored).map_err(corrupt)?;
        let values: Vec<ValueView<'_>> =
            view.values().collect::<Result<_, _>>().map_err(corrupt)?;
        // Spec section 5: resolving values without public read is governed
        // by the identifier's own HS_ADMIN values, and needs read value.
        let rule = Operation::ReadValues { handle }.rule();
        let admins: Vec<HsAdmin> = values
            .iter()
            .filter(|v| v.kind == HS_ADMIN.as_bytes())
            .filter_map(|v| v.to_value().ok())
            .filter_map(|v: Value| HsAdmin::decode(&v.data).ok())
            .collect();
        let who = identify(&[(admins, rule.needed)])?;

        let wanted = || values.iter().filter(|v| query.wants(v.index, v.kind));
        let withheld = wanted().filter(|v| !admin_readable(v.permissions)).count();
        let mut out = Vec::new();
        let sent = encode_resolution_response(
            &mut out,
            ctx,
            query.handle,
            wanted()
                .filter(|v| admin_readable(v.permissions))
                .map(|v| v.raw),
        );
        let private = wanted()
            .filter(|v| admin_readable(v.permissions))
            .any(|v| !v.permissions.public_read());
        tracing::info!(
            handle,
            admin = %format_args!("{}:{}", who.index, who.handle),
            values = sent,
            withheld,
            "authenticated resolution"
        );
        if sent == 0 {
            out.clear();
            let (code, msg) = if withheld > 0 {
                (
                    code::INSUFFICIENT_PERMISSIONS,
                    "the values asked for have neither public read nor admin read",
                )
            } else {
                (
                    code::VALUES_NOT_FOUND,
                    "no value matches the requested indexes and types",
                )
            };
            encode_error_response(&mut out, ctx, opcode::RESOLUTION, code, msg);
            return Ok((out, false));
        }
        Ok((out, private))
    }
}
