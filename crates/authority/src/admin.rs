//! Handle administration over the Handle protocol: the admin requests
//! (CREATE_HANDLE 100 to LIST_HANDLES 105), their 402 challenges, and the
//! CHALLENGE_RESPONSE (200) that authenticates them, as
//! docs/handle-admin.md describes.
//!
//! [`HandleService::respond`] only looks at the opcode: an admin or
//! challenge-response opcode gets [`Outcome::Admin`] and the transport
//! calls [`HandleService::respond_admin`] on a blocking thread (it reads
//! the store, verifies MACs and signatures, and writes through the
//! [`Registry`]). A query-only interface (UDP) answers with
//! [`HandleService::refuse_admin`] instead, which touches nothing.
//!
//! The flow:
//! 1. an admin request without a session gets the checks that come before
//!    a challenge (102, 202/201, 301, 101, 100, 200, 401), then a 402 with
//!    a fresh nonce under a fresh session id; the request waits in a table
//!    keyed by that session id (bounded, entries one-shot, 60 s);
//! 2. the CHALLENGE_RESPONSE takes the entry (500 unknown, 405 expired or
//!    answered already), then: the checks that need the record again, the
//!    admin check against the governing HS_ADMIN values (400, before any
//!    crypto), the answer against the key handle's HS_SECKEY / HS_PUBKEY
//!    values (403, 404, 406);
//! 3. the original request runs through the registry (one durable commit,
//!    change log, caches invalidated) and its result goes out with the
//!    answer's request id.
//!
//! A RESOLUTION with PO clear that names values without public read goes
//! through the same table and checks (see `read.rs`).
//!
//! Sessions (SESSION_SETUP, SESSION_TERMINATE, and any request carrying a
//! session id or encrypted) take the same steps with the session's
//! identity and key (see `session.rs`): the challenge keeps the session id,
//! and once a session is authenticated its requests skip it.
//!
//! Not served: the RSA session key exchanges (modes 1 to 3: 504),
//! SESSION_EXCHANGE_KEY (402), VERIFY_RESPONSE (a key handle that is not on
//! this node gets 403), prefix operations (300-302).

use crate::answer::protocol_error;
use crate::service::{HandleService, Outcome};
use crate::session::{MAX_SESSIONS, Sessions, is_encrypted, open_encrypted, seal};
use idnode_core::{Identifier, Permissions, Record, Value};
use idnode_handle::admin::{
    AdminPerms, AdminRef, AdminRequest, HsAdmin, LIST_HANDLES_PER_MESSAGE, Operation, Rule,
    authorize, encode_admin_success, encode_create_success, encode_list_handles_response,
    hs_admins, invalid_value_code, is_admin_opcode, needed_for_add, needed_for_modify,
    needed_for_remove, prefix_handle, result_context, vlist_members,
};
use idnode_handle::auth::{
    AuthType, CHALLENGE_TTL_SECS, Challenge, ChallengeAnswer, KeyValue, PendingChallenges,
    Verification, VerifyPolicy, encode_challenge, random_nonce, verify_answer,
};
use idnode_handle::{
    Request, ResponseContext, code, decode_request, encode_error_response, flags, opcode,
};
use idnode_registry::{Registry, RegistryError};
use std::sync::{Arc, Mutex};

/// Most challenges waiting for their answer at once; more get 3
/// SERVER_TOO_BUSY until some expire.
pub const MAX_PENDING_CHALLENGES: usize = 10_000;

/// Page size used to read the identifiers of a LIST_HANDLES.
const LIST_PAGE: u32 = 1000;

/// What administration needs: the registry it writes through and the
/// challenges waiting for their answers.
pub(crate) struct AdminState {
    pub(crate) registry: Arc<Registry>,
    /// Original request message bytes, by the 402's session id.
    pending: Mutex<PendingChallenges<Vec<u8>>>,
    /// Open sessions. Lock order: `sessions` is never held while taking
    /// `pending`, nor the other way round.
    sessions: Mutex<Sessions>,
    policy: VerifyPolicy,
}

impl AdminState {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            pending: Mutex::new(PendingChallenges::new(MAX_PENDING_CHALLENGES)),
            sessions: Mutex::new(Sessions::new(MAX_SESSIONS)),
            policy: VerifyPolicy::default(),
        }
    }

    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh session id for a new session: ids of sessions have bit 30
    /// clear, those of challenges outside sessions have it set, so the two
    /// tables never hand out the same id.
    pub(crate) fn fresh_session_id(&self, sessions: &Sessions) -> Result<u32, Refusal> {
        fresh_id(0, |id| sessions.contains(id))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingChallenges<Vec<u8>>> {
        // A poisoned lock only means a thread panicked holding it; the
        // table is still a valid table.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `op` is served by [`HandleService::respond_admin`].
#[inline]
pub(crate) fn is_admin_side(op: u32) -> bool {
    is_admin_opcode(op)
        || op == opcode::CHALLENGE_RESPONSE
        || op == opcode::SESSION_SETUP
        || op == opcode::SESSION_TERMINATE
}

/// A refusal: response code and a message for the client (never value
/// data).
pub(crate) type Refusal = (u32, String);

pub(crate) fn refusal(code: u32, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

pub(crate) fn error_message(ctx: &ResponseContext, op: u32, (code, message): Refusal) -> Vec<u8> {
    let mut out = Vec::new();
    encode_error_response(&mut out, ctx, op, code, &message);
    out
}

pub(crate) fn store_failure(e: &RegistryError) -> Refusal {
    if let Some(message) = e.read_only() {
        // A mirror is a site that is not primary: 301, naming the primary.
        return refusal(code::SERVER_NOT_RESP, message);
    }
    if e.is_no_space() {
        tracing::warn!(error = %e, "handle admin: write refused, the disk is full");
        return refusal(code::ERROR, idnode_store::NO_SPACE);
    }
    tracing::warn!(error = %e, "handle admin: store failure");
    refusal(code::ERROR, "the node could not read or write its store")
}

/// The prefix of a prefix handle `0.NA/p` (or a bare `p`).
fn listed_prefix(prefix: &str) -> String {
    let handle = prefix_handle(prefix);
    handle.get(5..).unwrap_or_default().to_owned()
}

impl HandleService {
    /// Serves Handle administration from now on, writing through
    /// `registry` (which must write to this service's store, so that its
    /// commits reach the response cache). Without it, admin requests get
    /// 5 OPERATION_NOT_SUPPORTED.
    pub fn set_registry(&mut self, registry: Arc<Registry>) {
        self.admin = Some(Arc::new(AdminState::new(registry)));
    }

    /// Whether administration is served (a registry was set).
    pub fn serves_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether `message` carries an admin or challenge-response opcode
    /// (what [`Outcome::Admin`] says), reading only its header.
    pub fn is_admin_message(message: &[u8]) -> bool {
        let at = idnode_handle::ENVELOPE_LEN;
        is_encrypted(message)
            || message
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .is_some_and(|b| is_admin_side(u32::from_be_bytes(b)))
    }

    /// The answer of a query-only interface (UDP) to a message that got
    /// [`Outcome::Admin`]: a SESSION_SETUP is served (CNRI's clients send
    /// it over UDP when the site has a UDP interface; it reads and writes
    /// no record), anything else gets 4 PROTOCOL_ERROR, as CNRI's servers
    /// answer an admin request on a non-admin interface, and touches
    /// nothing.
    pub fn refuse_admin(&self, message: &[u8], now: u32, out: &mut Vec<u8>) -> Outcome {
        out.clear();
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => return protocol_error(message, e, now, out),
        };
        let ctx = self.context(&request, now);
        if request.header.opcode == opcode::SESSION_SETUP
            && let Some(admin) = self.admin.as_deref()
        {
            *out = self
                .setup_session(admin, message, &request, &ctx, now)
                .unwrap_or_else(|refused| error_message(&ctx, opcode::SESSION_SETUP, refused));
            return Outcome::Reply { keep_open: false };
        }
        let msg = "Received admin request on non-admin interface: administration is served \
                   over TCP and QUIC";
        encode_error_response(out, &ctx, request.header.opcode, code::PROTOCOL_ERROR, msg);
        Outcome::Reply {
            keep_open: request.header.op_flags & flags::KC != 0,
        }
    }

    /// Answers an admin request (a 402 challenge or a refusal) or a
    /// CHALLENGE_RESPONSE (the result of the challenged request, or a
    /// refusal), on an admin interface (TCP, QUIC). Returns the messages to
    /// send in order (several for a long LIST_HANDLES, CN set on all but
    /// the last); empty when there is nothing to answer.
    ///
    /// Blocking: it reads the store, may compute PBKDF2 or verify a
    /// signature, and commits writes durably. Call it on a blocking thread.
    pub fn respond_admin(&self, message: &[u8], now: u32) -> Vec<Vec<u8>> {
        self.respond_admin_from(message, now, "handle", None)
    }

    /// [`respond_admin`](Self::respond_admin) for a client at `address`
    /// over `surface` (`handle-tcp`, `handle-quic`): the audit trail
    /// records both, with the administrator that authenticated, for every
    /// change the request makes.
    pub fn respond_admin_from(
        &self,
        message: &[u8],
        now: u32,
        surface: &str,
        address: Option<std::net::SocketAddr>,
    ) -> Vec<Vec<u8>> {
        let address = address.map(|a| a.to_string()).unwrap_or_default();
        let origin = idnode_registry::Origin::now("handle:unauthenticated", surface, address);
        idnode_registry::with_origin(origin, || self.admin_message(message, now))
    }

    fn admin_message(&self, message: &[u8], now: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let plain;
        let message = match (is_encrypted(message), self.admin.as_deref()) {
            (true, Some(admin)) => match open_encrypted(admin, message, now) {
                Ok(opened) => {
                    plain = opened;
                    &plain[..]
                }
                Err(refused) => return vec![envelope_error(message, refused, now)],
            },
            _ => message,
        };
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => {
                protocol_error(message, e, now, &mut out);
                return if out.is_empty() { vec![] } else { vec![out] };
            }
        };
        let ctx = self.context(&request, now);
        let op = request.header.opcode;
        let Some(admin) = self.admin.as_deref() else {
            let msg = "administration over the Handle protocol is not enabled on this node";
            return vec![error_message(
                &ctx,
                op,
                refusal(code::OPERATION_NOT_SUPPORTED, msg),
            )];
        };
        let single = |r: Result<Vec<u8>, Refusal>| match r {
            Ok(out) => vec![out],
            Err(refused) => vec![error_message(&ctx, op, refused)],
        };
        // A mirror takes no writes: a site that is not primary answers
        // 301 (docs/handle-admin.md), here before any challenge, naming
        // the primary.
        if matches!(
            op,
            opcode::CREATE_HANDLE
                | opcode::DELETE_HANDLE
                | opcode::ADD_VALUE
                | opcode::REMOVE_VALUE
                | opcode::MODIFY_VALUE
        ) && let Some(reason) = admin.registry.store().refuses_writes()
        {
            return single(Err(refusal(code::SERVER_NOT_RESP, reason)));
        }
        match op {
            opcode::CHALLENGE_RESPONSE => self.redeem(admin, &request, &ctx, now),
            opcode::SESSION_SETUP => {
                single(self.setup_session(admin, message, &request, &ctx, now))
            }
            opcode::SESSION_TERMINATE => {
                single(self.terminate_session(admin, message, &request, &ctx, now))
            }
            _ if request.envelope.session_id != 0 => {
                self.in_session(admin, message, &request, &ctx, now)
            }
            opcode::RESOLUTION => self.challenge_read(admin, message, &request, &ctx, now, None),
            _ => single(self.challenge(admin, message, &request, &ctx, now, None)),
        }
    }

    /// An admin request or a resolution in session `Z` (its envelope's
    /// session id): 500 when there is no such session; in an
    /// authenticated session, the HS_MAC and counter checked and the
    /// request served for the session's identity without a challenge; in
    /// one not authenticated yet, the challenge, under `Z`.
    fn in_session(
        &self,
        admin: &AdminState,
        message: &[u8],
        request: &Request<'_>,
        ctx: &ResponseContext,
        now: u32,
    ) -> Vec<Vec<u8>> {
        let id = request.envelope.session_id;
        let op = request.header.opcode;
        let checked = {
            let mut sessions = admin.sessions();
            sessions.get(id, now).and_then(|s| {
                if !s.is_authenticated() {
                    return Ok(None);
                }
                let counter = s.check_message(message)?;
                Ok(Some((s.identity(), *s.key(), counter)))
            })
        };
        let (identity, key, counter) = match checked {
            Err(refused) => return vec![error_message(ctx, op, refused)],
            Ok(None) if op == opcode::RESOLUTION => {
                return self.challenge_read(admin, message, request, ctx, now, Some(id));
            }
            Ok(None) => {
                return match self.challenge(admin, message, request, ctx, now, Some(id)) {
                    Ok(challenge) => vec![challenge],
                    Err(refused) => vec![error_message(ctx, op, refused)],
                };
            }
            Ok(Some(checked)) => checked,
        };
        let who = identity;
        let (mut messages, private) = if op == opcode::RESOLUTION {
            self.session_read(admin, request, &who, ctx)
        } else {
            let messages = self
                .session_admin(admin, request, &who, ctx)
                .unwrap_or_else(|refused| vec![error_message(ctx, op, refused)]);
            (messages, false)
        };
        for out in &mut messages {
            seal(&key, request.header.op_flags, counter, private, out);
        }
        messages
    }

    /// An admin request in an authenticated session: the checks of a
    /// challenged request, then the session identity against the
    /// governing HS_ADMIN values (400), then the operation.
    fn session_admin(
        &self,
        admin: &AdminState,
        request: &Request<'_>,
        who: &AdminRef,
        ctx: &ResponseContext,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let (req, overwrite) = self.checked(admin, request, ctx)?;
        let op = req.opcode();
        let registry = &*admin.registry;
        let governing = governing(registry, &rules(registry, &req, overwrite)?)?;
        if !allowed(registry, who, &governing) {
            return Err(refused_admin(who));
        }
        tracing::info!(
            op,
            handle = req.handle(),
            admin = %format_args!("{}:{}", who.index, who.handle),
            "handle admin operation in an authenticated session"
        );
        let actor = format!("handle:{}:{}", who.index, who.handle);
        idnode_registry::with_actor(actor, || execute(registry, req, overwrite, ctx))
    }

    /// Step 1: the checks before a challenge, then the 402 (under the
    /// id of `session` when the request is in one, else a fresh id).
    fn challenge(
        &self,
        admin: &AdminState,
        message: &[u8],
        request: &Request<'_>,
        ctx: &ResponseContext,
        now: u32,
        session: Option<u32>,
    ) -> Result<Vec<u8>, Refusal> {
        self.checked(admin, request, ctx)?;
        issue_challenge(admin, message, request, ctx, now, session)
    }

    /// The checks that need no proof of who asks (spec section 6): the
    /// site is primary, the body decodes, its values are well formed, and
    /// the identifier is as the operation needs. Returns the request and
    /// whether it set OW.
    fn checked(
        &self,
        admin: &AdminState,
        request: &Request<'_>,
        ctx: &ResponseContext,
    ) -> Result<(AdminRequest, bool), Refusal> {
        if let Some(own) = self.site_info.get()
            && !own.primary
        {
            return Err(refusal(
                code::SERVER_NOT_RESP,
                "this server is not a primary: send admin requests to a primary site",
            ));
        }
        let req = AdminRequest::decode(request.header.opcode, request.body)
            .map_err(|e| refusal(e.response_code(), e.to_string()))?;
        check_values(&req, (ctx.major, ctx.minor))?;
        let overwrite = request.header.op_flags & flags::OW != 0;
        before_challenge(&admin.registry, &req, overwrite)?;
        Ok((req, overwrite))
    }
}

/// An admin request for an administrator authenticated some other way
/// than by a challenge (HTTP Basic against its HS_SECKEY): the same checks
/// as a challenged request, `who` against the governing HS_ADMIN values,
/// then the write through the registry. Returns the Handle response code
/// and message of a refusal.
pub fn write_as(
    registry: &Registry,
    who: &AdminRef,
    req: AdminRequest,
    overwrite: bool,
) -> Result<(), Refusal> {
    let version = (idnode_handle::VERSION_MAJOR, idnode_handle::VERSION_MINOR);
    check_values(&req, version)?;
    before_challenge(registry, &req, overwrite)?;
    let governing = governing(registry, &rules(registry, &req, overwrite)?)?;
    if !allowed(registry, who, &governing) {
        return Err(refused_admin(who));
    }
    let ctx = ResponseContext {
        request_id: 0,
        session_id: 0,
        major: version.0,
        minor: version.1,
        op_flags: 0,
        site_serial: -1,
        recursion: 0,
        expiration: 0,
        digest: None,
    };
    let actor = format!("handle:{}:{}", who.index, who.handle);
    idnode_registry::with_actor(actor, || execute(registry, req, overwrite, &ctx)).map(|_| ())
}

/// The checks of spec section 6 that come before the challenge.
fn before_challenge(
    registry: &Registry,
    req: &AdminRequest,
    overwrite: bool,
) -> Result<(), Refusal> {
    {
        let writable = |handle: &str| -> Result<(), Refusal> {
            match registry.is_writable(handle) {
                Ok(true) => Ok(()),
                Ok(false) => Err(refusal(
                    code::SERVER_NOT_RESP,
                    format!("this server is not responsible for {handle}"),
                )),
                Err(RegistryError::InvalidArgument { message, .. }) => {
                    Err(refusal(code::INVALID_HANDLE, message))
                }
                Err(e) => Err(store_failure(&e)),
            }
        };
        match req {
            AdminRequest::CreateHandle { handle, .. } => {
                writable(handle)?;
                // The registry's write rules (no control, invisible or
                // bidi-control character, an ASCII prefix),
                // refused before a challenge is spent on them.
                if let Err(e) = Identifier::parse(handle).and_then(|id| id.check_new()) {
                    return Err(refusal(code::INVALID_HANDLE, e.to_string()));
                }
                if !overwrite && load(registry, handle)?.is_some() {
                    return Err(refusal(
                        code::HANDLE_ALREADY_EXISTS,
                        format!("{handle} already exists"),
                    ));
                }
            }
            AdminRequest::DeleteHandle { .. } => {}
            AdminRequest::AddValue { handle, .. } | AdminRequest::RemoveValue { handle, .. } => {
                writable(handle)?;
            }
            AdminRequest::ModifyValue { handle, values } => {
                writable(handle)?;
                let record = load(registry, handle)?.ok_or_else(|| not_found(handle))?;
                for v in values {
                    let Some(old) = record.value(v.index) else {
                        return Err(no_value(handle, v.index));
                    };
                    if old.permissions.0 & Permissions::ADMIN_WRITE == 0 {
                        return Err(refusal(
                            code::INSUFFICIENT_PERMISSIONS,
                            format!("the value at index {} is not admin-writable", v.index),
                        ));
                    }
                }
            }
            AdminRequest::ListHandles { prefix } => {
                let prefix = listed_prefix(prefix);
                match registry.is_homed(&prefix) {
                    Ok(true) => {}
                    Ok(false) | Err(RegistryError::InvalidArgument { .. }) => {
                        return Err(refusal(
                            code::SERVER_NOT_RESP,
                            format!("prefix {prefix} is not homed on this server"),
                        ));
                    }
                    Err(e) => return Err(store_failure(&e)),
                }
            }
        }
        Ok(())
    }
}

impl HandleService {
    /// Steps 2 and 3: the answer to a challenge.
    fn redeem(
        &self,
        admin: &AdminState,
        answer_request: &Request<'_>,
        answer_ctx: &ResponseContext,
        now: u32,
    ) -> Vec<Vec<u8>> {
        let session_id = answer_request.envelope.session_id;
        if session_id == 0 {
            let msg = "a challenge answer must carry the session id of its challenge";
            return vec![error_message(
                answer_ctx,
                opcode::CHALLENGE_RESPONSE,
                refusal(code::AUTHEN_TIMEOUT, msg),
            )];
        }
        let taken = admin.pending().take(session_id, now);
        let (challenge, original_bytes) = match taken {
            Ok(entry) => entry,
            Err(e) => {
                return vec![error_message(
                    answer_ctx,
                    opcode::CHALLENGE_RESPONSE,
                    refusal(e.response_code(), e.to_string()),
                )];
            }
        };
        let original = match decode_request(&original_bytes) {
            Ok(r) => r,
            Err(_) => {
                let msg = "the challenged request could not be read again";
                return vec![error_message(
                    answer_ctx,
                    opcode::CHALLENGE_RESPONSE,
                    refusal(code::ERROR, msg),
                )];
            }
        };
        let mut ctx = result_context(&original, answer_request.envelope.request_id, now);
        if let Some(own) = self.site_info.get() {
            ctx = ctx.with_site(own.serial, own.primary);
        }
        let op = original.header.opcode;
        // A challenge under a session's id: the session is authenticated
        // by this answer if it verifies.
        let session = admin.sessions().contains(session_id).then(|| Answered {
            session_id,
            original: &original_bytes,
            now,
        });
        let mut messages = if op == opcode::RESOLUTION {
            let mut messages = self.redeem_read(
                admin,
                &original,
                answer_request.body,
                &challenge,
                &ctx,
                session,
            );
            // Signed by the server key outside sessions; in one, `seal`
            // below MACs it with the session key instead.
            if session.is_none() {
                for out in &mut messages {
                    let reply = Outcome::Reply { keep_open: false };
                    self.certify_if_asked(&original_bytes, reply, out);
                }
            }
            messages
        } else {
            match self.authenticated(
                admin,
                &original,
                answer_request.body,
                &challenge,
                &ctx,
                session,
            ) {
                Ok(messages) => messages,
                Err(refused) => vec![error_message(&ctx, op, refused)],
            }
        };
        // In a session the result is sealed like any answer in it (a
        // challenged resolution carries values without public read).
        let key = session.and_then(|_| {
            let mut sessions = admin.sessions();
            sessions.get(session_id, now).ok().map(|s| *s.key())
        });
        if let Some(key) = key {
            for out in &mut messages {
                seal(
                    &key,
                    original.header.op_flags,
                    0,
                    op == opcode::RESOLUTION,
                    out,
                );
            }
        }
        messages
    }

    fn authenticated(
        &self,
        admin: &AdminState,
        original: &Request<'_>,
        answer_body: &[u8],
        challenge: &Challenge,
        ctx: &ResponseContext,
        session: Option<Answered<'_>>,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let op = original.header.opcode;
        let answer = ChallengeAnswer::decode(answer_body).map_err(|e| {
            refusal(
                code::PROTOCOL_ERROR,
                format!("the challenge answer does not decode: {e}"),
            )
        })?;
        let req = AdminRequest::decode(op, original.body)
            .map_err(|e| refusal(e.response_code(), e.to_string()))?;
        let overwrite = original.header.op_flags & flags::OW != 0;
        let registry = &*admin.registry;
        let governing = governing(registry, &rules(registry, &req, overwrite)?)?;
        let key_index = verify_identity(admin, &answer, challenge, &governing)?;
        if let Some(session) = session {
            session.verified(admin, answer.key_handle, key_index)?;
        }
        let actor = format!("handle:{key_index}:{}", answer.key_handle);
        tracing::info!(
            op,
            handle = req.handle(),
            admin = %format_args!("{key_index}:{}", answer.key_handle),
            "handle admin operation authenticated"
        );
        idnode_registry::with_actor(actor, || execute(registry, req, overwrite, ctx))
    }
}

/// A challenge answered in a session: what is checked once the answer
/// verifies.
#[derive(Clone, Copy)]
pub(crate) struct Answered<'a> {
    pub(crate) session_id: u32,
    /// The challenged request, as the client sent it in the session.
    pub(crate) original: &'a [u8],
    pub(crate) now: u32,
}

impl Answered<'_> {
    /// The challenged request's HS_MAC with the session key (404 missing,
    /// 502 bad, 505 counter seen before); then the session is marked
    /// authenticated if the identity that answered is the one its setup
    /// named.
    pub(crate) fn verified(
        &self,
        admin: &AdminState,
        key_handle: &str,
        key_index: u32,
    ) -> Result<(), Refusal> {
        let mut sessions = admin.sessions();
        // The session may have ended while the challenge was out: the
        // answer itself verified, so the operation stands on its own.
        let Ok(session) = sessions.get(self.session_id, self.now) else {
            return Ok(());
        };
        session.check_message(self.original)?;
        if sessions.authenticate(self.session_id, key_handle, key_index) {
            tracing::info!(
                session = self.session_id,
                admin = %format_args!("{key_index}:{key_handle}"),
                "handle session authenticated"
            );
        }
        Ok(())
    }
}

/// Draws a nonce, keeps `message` (the request being challenged) in the
/// pending table under `session`'s id or a fresh one, and returns the 402.
pub(crate) fn issue_challenge(
    admin: &AdminState,
    message: &[u8],
    request: &Request<'_>,
    ctx: &ResponseContext,
    now: u32,
    session: Option<u32>,
) -> Result<Vec<u8>, Refusal> {
    let mut pending = admin.pending();
    let session_id = match session {
        Some(id) => id,
        None => fresh_id(CHALLENGE_ID_BIT, |id| pending.contains(id))?,
    };
    let nonce = random_nonce()
        .map_err(|_| refusal(code::ERROR, "the node could not draw a random nonce"))?;
    let challenge = Challenge::new(request, session_id, nonce, now, CHALLENGE_TTL_SECS);
    let mut out = Vec::new();
    encode_challenge(&mut out, ctx, request.header.opcode, &challenge);
    pending
        .insert(challenge, message.to_vec(), now)
        .map_err(|_| {
            refusal(
                code::SERVER_TOO_BUSY,
                "too many challenges are waiting for their answers; try again shortly",
            )
        })?;
    Ok(out)
}

/// The checks after a challenge answer (spec section 5): the identity the
/// answer names must be named, with every needed permission, by the
/// HS_ADMIN values of each governing record (HS_VLIST groups followed),
/// checked before any crypto (400); then the answer is verified against the
/// key handle's HS_SECKEY / HS_PUBKEY values (403, 404, 406). For
/// HS_PUBKEY with key index 0 the key that verifies names the identity,
/// which is checked after. Returns the key index of the identity.
pub(crate) fn verify_identity(
    admin: &AdminState,
    answer: &ChallengeAnswer<'_>,
    challenge: &Challenge,
    governing: &[(Vec<HsAdmin>, AdminPerms)],
) -> Result<u32, Refusal> {
    let registry = &*admin.registry;
    let pubkey_any = matches!(answer.auth_type, AuthType::PublicKey) && answer.key_index == 0;
    if !pubkey_any && !allowed(registry, &answer.identity(), governing) {
        return Err(refused_admin(&answer.identity()));
    }
    if let AuthType::Other(_) = answer.auth_type {
        return Err(refusal(
            code::INVALID_CREDENTIAL,
            "unknown auth type: HS_SECKEY and HS_PUBKEY are supported",
        ));
    }
    let keys = key_values(registry, answer.key_handle)?;
    let key_index = match verify_answer(
        answer,
        challenge,
        keys.iter().map(KeyValue::from),
        &admin.policy,
    ) {
        Verification::Verified { key_index } => key_index,
        Verification::Failed(reason) => {
            return Err(refusal(reason.response_code(), reason.to_string()));
        }
    };
    let identity = AdminRef::new(answer.key_handle, key_index);
    if pubkey_any && !allowed(registry, &identity, governing) {
        return Err(refused_admin(&identity));
    }
    Ok(key_index)
}

/// The HS_ADMIN values governing each rule, with the permissions it needs,
/// read once.
pub(crate) fn governing(
    registry: &Registry,
    rules: &[Rule],
) -> Result<Vec<(Vec<HsAdmin>, AdminPerms)>, Refusal> {
    let mut governing = Vec::with_capacity(rules.len());
    for rule in rules {
        let admins = load(registry, &rule.governing)?
            .map(|r| hs_admins(&r.values))
            .unwrap_or_default();
        governing.push((admins, rule.needed));
    }
    Ok(governing)
}

/// Whether `identity` is named, with every needed permission, by the
/// HS_ADMIN values of each governing record (HS_VLIST groups followed).
pub(crate) fn allowed(
    registry: &Registry,
    identity: &AdminRef,
    governing: &[(Vec<HsAdmin>, AdminPerms)],
) -> bool {
    governing.iter().all(|(admins, needed)| {
        authorize(identity, *needed, admins, |handle, index| {
            let record = registry.get_identifier(handle).ok()?;
            vlist_members(&record.values, index)
        })
    })
}

pub(crate) fn refused_admin(identity: &AdminRef) -> Refusal {
    refusal(
        code::INVALID_ADMIN,
        format!(
            "{}:{} is not an administrator with the permissions this operation needs",
            identity.index, identity.handle
        ),
    )
}

/// 4 and 11 (or the older code) for values a request may not carry.
fn check_values(req: &AdminRequest, version: (u8, u8)) -> Result<(), Refusal> {
    req.check_values().map_err(|c| {
        if c == code::INVALID_VALUE {
            refusal(
                invalid_value_code(version),
                "a value index is 0 or negative, or no value was given",
            )
        } else {
            refusal(c, "two values share an index")
        }
    })
}

/// Bit 30 of the ids of challenges outside sessions (session ids have it
/// clear).
const CHALLENGE_ID_BIT: u32 = 0x4000_0000;

/// A fresh non-zero id (positive as a Java int) with bit 30 as `high`
/// says, for which `taken` is false.
fn fresh_id(high: u32, taken: impl Fn(u32) -> bool) -> Result<u32, Refusal> {
    for _ in 0..16 {
        let bytes = random_nonce()
            .map_err(|_| refusal(code::ERROR, "the node could not draw a session id"))?;
        let id =
            (u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x3fff_ffff) | high;
        if id != 0 && !taken(id) {
            return Ok(id);
        }
    }
    Err(refusal(code::SERVER_TOO_BUSY, "no free session id"))
}

/// An error answer to a message whose header could not be read (an
/// encrypted message of an unknown session, or one that does not
/// decrypt): the envelope's ids, opcode 0.
fn envelope_error(message: &[u8], (code, text): Refusal, now: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(envelope) = idnode_handle::Envelope::decode(message) else {
        return out;
    };
    let ctx = ResponseContext {
        request_id: envelope.request_id,
        session_id: envelope.session_id,
        major: envelope.major,
        minor: envelope.minor.min(idnode_handle::VERSION_MINOR),
        op_flags: flags::REC,
        site_serial: -1,
        recursion: 0,
        expiration: now.saturating_add(idnode_handle::EXPIRATION_SECS),
        digest: None,
    };
    encode_error_response(&mut out, &ctx, 0, code, &text);
    out
}

pub(crate) fn not_found(handle: &str) -> Refusal {
    refusal(code::HANDLE_NOT_FOUND, format!("{handle} not found"))
}

fn no_value(handle: &str, index: u32) -> Refusal {
    refusal(
        code::VALUES_NOT_FOUND,
        format!("{handle} has no value at index {index}"),
    )
}

/// The record of `handle` with every value, `None` when there is none.
fn load(registry: &Registry, handle: &str) -> Result<Option<Record>, Refusal> {
    match registry.get_identifier(handle) {
        Ok(record) => Ok(Some(record)),
        Err(RegistryError::NotFound(_)) => Ok(None),
        Err(RegistryError::InvalidArgument { message, .. }) => {
            Err(refusal(code::INVALID_HANDLE, message))
        }
        Err(e) => Err(store_failure(&e)),
    }
}

/// The values of the key handle, which must be on this node.
fn key_values(registry: &Registry, key_handle: &str) -> Result<Vec<Value>, Refusal> {
    match registry.get_identifier(key_handle) {
        Ok(record) => Ok(record.values),
        Err(RegistryError::NotFound(_)) => match registry.is_writable(key_handle) {
            // Homed here but absent: it holds no key.
            Ok(true) => Ok(Vec::new()),
            _ => Err(refusal(
                code::AUTHENTICATION_FAILED,
                format!(
                    "key handle {key_handle} is not on this node; verifying keys held by \
                     other servers (VERIFY_RESPONSE) is not supported"
                ),
            )),
        },
        Err(RegistryError::InvalidArgument { .. }) => Err(refusal(
            code::AUTHENTICATION_FAILED,
            format!("key handle {key_handle} is not a valid handle"),
        )),
        Err(e) => Err(store_failure(&e)),
    }
}

/// The checks after the answer that need the record, and the rules that
/// must all pass (spec section 5).
fn rules(registry: &Registry, req: &AdminRequest, overwrite: bool) -> Result<Vec<Rule>, Refusal> {
    Ok(match req {
        AdminRequest::CreateHandle { handle, .. } => {
            let mut rules = vec![Operation::Create { handle }.rule()];
            if load(registry, handle)?.is_some() {
                if !overwrite {
                    return Err(refusal(
                        code::HANDLE_ALREADY_EXISTS,
                        format!("{handle} already exists"),
                    ));
                }
                // Replacing a handle: delete it, then add it.
                rules.push(Operation::Delete { handle }.rule());
            }
            rules
        }
        AdminRequest::DeleteHandle { handle } => {
            load(registry, handle)?.ok_or_else(|| not_found(handle))?;
            vec![Operation::Delete { handle }.rule()]
        }
        AdminRequest::AddValue { handle, values } => {
            let record = load(registry, handle)?.ok_or_else(|| not_found(handle))?;
            let mut needed = AdminPerms::NONE;
            for v in values {
                match record.value(v.index) {
                    None => needed |= needed_for_add([v.kind.as_str()]),
                    Some(_) if !overwrite => {
                        return Err(refusal(
                            code::VALUE_ALREADY_EXISTS,
                            format!("{handle} already has a value at index {}", v.index),
                        ));
                    }
                    Some(old) if same_value(old, v) => {}
                    Some(old) => {
                        needed |= needed_for_modify(&old.kind, public_write(old), &v.kind);
                    }
                }
            }
            vec![Operation::AddValue { handle, needed }.rule()]
        }
        AdminRequest::RemoveValue { handle, indexes } => {
            let record = load(registry, handle)?.ok_or_else(|| not_found(handle))?;
            let mut kinds = Vec::with_capacity(indexes.len());
            for &index in indexes {
                let old = record.value(index).ok_or_else(|| no_value(handle, index))?;
                kinds.push(old.kind.as_str());
            }
            let needed = needed_for_remove(kinds);
            vec![Operation::RemoveValue { handle, needed }.rule()]
        }
        AdminRequest::ModifyValue { handle, values } => {
            let record = load(registry, handle)?.ok_or_else(|| not_found(handle))?;
            let mut needed = AdminPerms::NONE;
            for v in values {
                let old = record
                    .value(v.index)
                    .ok_or_else(|| no_value(handle, v.index))?;
                needed |= needed_for_modify(&old.kind, public_write(old), &v.kind);
            }
            vec![Operation::ModifyValue { handle, needed }.rule()]
        }
        AdminRequest::ListHandles { prefix } => vec![Operation::ListHandles { prefix }.rule()],
    })
}

fn public_write(v: &Value) -> bool {
    v.permissions.0 & Permissions::PUBLIC_WRITE != 0
}

/// Whether an added value is identical to the one it would replace (then
/// it needs no permission).
fn same_value(old: &Value, new: &Value) -> bool {
    old.kind == new.kind
        && old.data == new.data
        && old.permissions == new.permissions
        && old.ttl == new.ttl
        && old.references == new.references
}

/// A registry refusal as a Handle response code.
fn registry_refusal(op: u32, version: (u8, u8), e: RegistryError) -> Refusal {
    let code = match &e {
        RegistryError::InvalidArgument { field, .. } if field.starts_with("identifier") => {
            code::INVALID_HANDLE
        }
        RegistryError::InvalidArgument { .. } => invalid_value_code(version),
        RegistryError::AlreadyExists(_) if op == opcode::CREATE_HANDLE => {
            code::HANDLE_ALREADY_EXISTS
        }
        RegistryError::AlreadyExists(_) => code::VALUE_ALREADY_EXISTS,
        RegistryError::NotFound(_) if op == opcode::REMOVE_VALUE || op == opcode::MODIFY_VALUE => {
            code::VALUES_NOT_FOUND
        }
        RegistryError::NotFound(_) => code::HANDLE_NOT_FOUND,
        RegistryError::FailedPrecondition(_) if op == opcode::CREATE_HANDLE => {
            code::SERVER_NOT_RESP
        }
        RegistryError::FailedPrecondition(_) => code::ERROR,
        _ => return store_failure(&e),
    };
    refusal(code, e.to_string())
}

/// Step 3: the operation, through the registry, and its result messages.
fn execute(
    registry: &Registry,
    req: AdminRequest,
    overwrite: bool,
    ctx: &ResponseContext,
) -> Result<Vec<Vec<u8>>, Refusal> {
    let op = req.opcode();
    let version = (ctx.major, ctx.minor);
    let fail = |e| registry_refusal(op, version, e);
    let mut out = Vec::new();
    match req {
        AdminRequest::CreateHandle { handle, values } => {
            let existed = overwrite && registry.get_identifier(&handle).is_ok();
            let record = registry
                .create_identifier(&handle, values, overwrite)
                .map_err(fail)?;
            let mut ctx = *ctx;
            if existed {
                ctx.op_flags |= flags::OW;
            }
            encode_create_success(&mut out, &ctx, record.identifier.as_bytes());
        }
        AdminRequest::DeleteHandle { handle } => {
            registry.delete_identifier(&handle).map_err(fail)?;
            encode_admin_success(&mut out, ctx, op);
        }
        AdminRequest::AddValue { handle, values } => {
            let mut ctx = *ctx;
            if overwrite {
                let (_, replaced) = registry.put_values(&handle, values).map_err(fail)?;
                if replaced {
                    ctx.op_flags |= flags::OW;
                }
            } else {
                registry.add_values(&handle, values).map_err(fail)?;
            }
            encode_admin_success(&mut out, &ctx, op);
        }
        AdminRequest::RemoveValue { handle, indexes } => {
            registry.remove_values(&handle, &indexes).map_err(fail)?;
            encode_admin_success(&mut out, ctx, op);
        }
        AdminRequest::ModifyValue { handle, values } => {
            registry.modify_values(&handle, values).map_err(fail)?;
            encode_admin_success(&mut out, ctx, op);
        }
        AdminRequest::ListHandles { prefix } => {
            return list_handles(registry, &listed_prefix(&prefix), ctx).map_err(fail);
        }
    }
    Ok(vec![out])
}

/// Every identifier under `prefix`, [`LIST_HANDLES_PER_MESSAGE`] a
/// message, CN on all but the last; one empty message when there are none.
fn list_handles(
    registry: &Registry,
    prefix: &str,
    ctx: &ResponseContext,
) -> Result<Vec<Vec<u8>>, RegistryError> {
    let mut handles: Vec<String> = Vec::new();
    let mut token = String::new();
    loop {
        let page = registry.list_identifiers(prefix, LIST_PAGE, &token)?;
        handles.extend(page.identifiers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Identifiers parse: they were stored through the registry. Skip any
    // that would not (they could not be named in a request either).
    handles.retain(|h| Identifier::parse(h).is_ok());
    let chunks: Vec<&[String]> = if handles.is_empty() {
        vec![&[]]
    } else {
        handles.chunks(LIST_HANDLES_PER_MESSAGE).collect()
    };
    let last = chunks.len().saturating_sub(1);
    Ok(chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut out = Vec::new();
            encode_list_handles_response(
                &mut out,
                ctx,
                chunk.iter().map(|h| h.as_bytes()),
                i < last,
            );
            out
        })
        .collect())
}
