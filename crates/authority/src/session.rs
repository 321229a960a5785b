//! Handle sessions as CNRI's clients open them before their first admin
//! request (docs/handle-admin.md, "Sessions"): SESSION_SETUP (400) with a
//! Diffie-Hellman exchange, the session table, HS_MAC-checked and
//! AES-encrypted messages inside a session, and SESSION_TERMINATE (401).
//!
//! A session starts unauthenticated, bound to the identity the setup
//! named. Its first admin request is challenged under the session's own
//! id; a good answer by that identity (and a good HS_MAC on the
//! challenged request) marks it authenticated, and later requests in it
//! are checked against HS_ADMIN for that identity without a challenge.
//! Every request in a session after the challenge carries an HS_MAC made
//! with the session key and a counter; a counter seen before is refused
//! (505). Sessions end when the client terminates them, after their idle
//! timeout, or (unauthenticated ones) after [`SETUP_TTL_SECS`].

use crate::admin::{AdminState, Refusal, refusal};
use crate::service::HandleService;
use idnode_handle::admin::AdminRef;
use idnode_handle::session::{
    self, DhPublicKey, SESSION_KEY_LEN, SessionError, SessionSetupRequest, SetupKey,
};
use idnode_handle::{Envelope, Request, ResponseContext, code, flags, opcode};
use std::collections::{HashMap, VecDeque};

/// Most sessions at once. When the table is full the least recently used
/// unauthenticated session makes room; with none, a setup gets 3
/// SERVER_TOO_BUSY.
pub const MAX_SESSIONS: usize = 10_000;

/// How long a session may stay unauthenticated (idle or not): a client
/// that sets up a session and never answers a challenge holds a slot for
/// this long at most.
pub const SETUP_TTL_SECS: u32 = 120;

/// The longest idle timeout granted (CNRI clients ask for 86 400 s).
pub const MAX_IDLE_SECS: u32 = 86_400;

/// How many recent session counters are remembered to refuse replays.
pub const REPLAY_WINDOW: usize = 200;

/// One session.
pub(crate) struct Session {
    key: [u8; SESSION_KEY_LEN],
    identity_handle: String,
    identity_index: u32,
    authenticated: bool,
    created: u32,
    idle_secs: u32,
    last_used: u32,
    counters: VecDeque<u32>,
}

impl Session {
    fn expired(&self, now: u32) -> bool {
        now.saturating_sub(self.last_used) > self.idle_secs
            || (!self.authenticated && now.saturating_sub(self.created) > SETUP_TTL_SECS)
    }

    /// The identity the setup named.
    pub(crate) fn identity(&self) -> AdminRef {
        AdminRef::new(&self.identity_handle, self.identity_index)
    }

    pub(crate) fn key(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.key
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Checks the HS_MAC of a complete plain message of this session
    /// (404 missing, 502 bad) and that its counter is new (505).
    pub(crate) fn check_message(&mut self, message: &[u8]) -> Result<u32, Refusal> {
        let counter = session::verify_session_mac(message, &self.key)
            .map_err(|e| refusal(e.response_code(), e.to_string()))?;
        if self.counters.contains(&counter) {
            return Err(refusal(
                code::SESSION_MESSAGE_REJECTED,
                format!("session counter {counter} was used before (a replayed message)"),
            ));
        }
        if self.counters.len() == REPLAY_WINDOW {
            self.counters.pop_front();
        }
        self.counters.push_back(counter);
        Ok(counter)
    }
}

/// The session table, keyed by session id.
pub(crate) struct Sessions {
    map: HashMap<u32, Session>,
    capacity: usize,
}

impl Sessions {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
        }
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    /// The live session `id`, its idle clock restarted; 500
    /// SESSION_TIMEOUT when there is none (an expired one is dropped).
    pub(crate) fn get(&mut self, id: u32, now: u32) -> Result<&mut Session, Refusal> {
        if self.map.get(&id).is_some_and(|s| s.expired(now)) {
            self.map.remove(&id);
        }
        let session = self.map.get_mut(&id).ok_or_else(|| {
            refusal(
                code::SESSION_TIMEOUT,
                format!(
                    "no session {id:#x} (never set up, terminated or timed out): set up a new one"
                ),
            )
        })?;
        session.last_used = now;
        Ok(session)
    }

    fn insert(&mut self, id: u32, session: Session, now: u32) -> Result<(), Refusal> {
        if self.map.len() >= self.capacity {
            self.map.retain(|_, s| !s.expired(now));
        }
        if self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .filter(|(_, s)| !s.authenticated)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(&id, _)| id);
            match oldest {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => {
                    return Err(refusal(
                        code::SERVER_TOO_BUSY,
                        "too many sessions are open; try again later",
                    ));
                }
            }
        }
        self.map.insert(id, session);
        Ok(())
    }

    pub(crate) fn remove(&mut self, id: u32) -> bool {
        self.map.remove(&id).is_some()
    }

    /// Marks session `id` authenticated when `(handle, index)` is the
    /// identity its setup named (spec: only then). Returns whether it is.
    pub(crate) fn authenticate(&mut self, id: u32, handle: &str, index: u32) -> bool {
        match self.map.get_mut(&id) {
            Some(s)
                if s.identity_index == index
                    && idnode_handle::admin::handles_equal(&s.identity_handle, handle) =>
            {
                s.authenticated = true;
                true
            }
            _ => false,
        }
    }
}

/// Whether a message is encrypted (envelope flag 0x40), reading one byte.
#[inline]
pub(crate) fn is_encrypted(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| b & flags::ENCRYPTED != 0)
}

/// What SESSION_SETUP needs in a request, or why it is refused (504).
fn dh_client_key<'a>(
    request: &Request<'a>,
) -> Result<(SessionSetupRequest<'a>, DhPublicKey), Refusal> {
    let invalid = |e: SessionError| {
        refusal(
            code::INVALID_SESSIONSETUP_REQUEST,
            format!("invalid session setup: {e}"),
        )
    };
    let setup = SessionSetupRequest::decode(request.body).map_err(invalid)?;
    let SetupKey::Client(data) = setup.key else {
        return Err(refusal(
            code::INVALID_SESSIONSETUP_REQUEST,
            "only Diffie-Hellman session setup (key exchange mode 4) is supported",
        ));
    };
    if setup.mode != session::mode::DIFFIE_HELLMAN {
        return Err(refusal(
            code::INVALID_SESSIONSETUP_REQUEST,
            "only Diffie-Hellman session setup (key exchange mode 4) is supported",
        ));
    }
    let key = DhPublicKey::decode(data).map_err(invalid)?;
    Ok((setup, key))
}

impl HandleService {
    /// SESSION_SETUP: a new unauthenticated session for the identity the
    /// request names, our DH key on the client's group, AES; the answer
    /// carries the new session id and is signed (HS_SIGNED) when the
    /// request set CT, as CNRI's clients set it.
    pub(crate) fn setup_session(
        &self,
        admin: &AdminState,
        message: &[u8],
        request: &Request<'_>,
        ctx: &ResponseContext,
        now: u32,
    ) -> Result<Vec<u8>, Refusal> {
        let (setup, client) = dh_client_key(request)?;
        let drawn = session::dh_private()
            .map_err(|_| refusal(code::ERROR, "the node could not draw a random key"))?;
        let bad_key = |e: SessionError| {
            refusal(
                code::INVALID_SESSIONSETUP_REQUEST,
                format!("invalid session setup: {e}"),
            )
        };
        let ours = session::dh_public(&client, &drawn).map_err(bad_key)?;
        let key = session::session_key(&client, &drawn).map_err(bad_key)?;
        let idle_secs = match setup.timeout {
            0 => MAX_IDLE_SECS,
            t => t.min(MAX_IDLE_SECS),
        };
        let id = {
            let mut sessions = admin.sessions();
            let id = admin.fresh_session_id(&sessions)?;
            let session = Session {
                key,
                identity_handle: setup.identity_handle.to_owned(),
                identity_index: setup.identity_index,
                authenticated: false,
                created: now,
                idle_secs,
                last_used: now,
                counters: VecDeque::new(),
            };
            sessions.insert(id, session, now)?;
            id
        };
        tracing::info!(
            session = id,
            identity = %format_args!("{}:{}", setup.identity_index, setup.identity_handle),
            "handle session set up"
        );
        let mut ctx = *ctx;
        ctx.session_id = id;
        let mut out = Vec::new();
        session::encode_dh_setup_response(&mut out, &ctx, session::cipher::AES, &ours);
        self.certify_if_asked(
            message,
            crate::service::Outcome::Reply { keep_open: false },
            &mut out,
        );
        Ok(out)
    }

    /// SESSION_TERMINATE: the session ends (its HS_MAC checked first).
    pub(crate) fn terminate_session(
        &self,
        admin: &AdminState,
        message: &[u8],
        request: &Request<'_>,
        ctx: &ResponseContext,
        now: u32,
    ) -> Result<Vec<u8>, Refusal> {
        let id = request.envelope.session_id;
        let mut sessions = admin.sessions();
        sessions.get(id, now)?.check_message(message)?;
        sessions.remove(id);
        tracing::info!(session = id, "handle session terminated");
        let mut out = Vec::new();
        idnode_handle::admin::encode_admin_success(&mut out, ctx, opcode::SESSION_TERMINATE);
        Ok(out)
    }
}

/// The plain message of an encrypted one, decrypted with its session's key
/// (500 for no such session, 502 when it does not decrypt).
pub(crate) fn open_encrypted(
    admin: &AdminState,
    message: &[u8],
    now: u32,
) -> Result<Vec<u8>, Refusal> {
    let envelope =
        Envelope::decode(message).map_err(|e| refusal(code::PROTOCOL_ERROR, e.to_string()))?;
    let mut sessions = admin.sessions();
    let session = sessions.get(envelope.session_id, now)?;
    session::decrypt_message(message, session.key())
        .map_err(|e| refusal(e.response_code(), e.to_string()))
}

/// What an answer in a session gets before it goes out: an HS_MAC when
/// the request set CT, encryption when it set ENC or `private` (the answer
/// carries values without public read). Failures leave it as it is and
/// are logged.
pub(crate) fn seal(
    key: &[u8; SESSION_KEY_LEN],
    request_flags: u32,
    counter: u32,
    private: bool,
    out: &mut Vec<u8>,
) {
    if request_flags & flags::CT != 0
        && let Err(error) = session::add_session_mac(out, key, counter)
    {
        tracing::warn!(%error, "could not MAC a session answer; sent without");
    }
    if request_flags & flags::ENC != 0 || private {
        let sealed = session::random_iv()
            .map_err(|_| SessionError::InvalidKey("no random IV"))
            .and_then(|iv| session::encrypt_message(out, key, &iv));
        match sealed {
            Ok(sealed) => *out = sealed,
            Err(error) => tracing::warn!(%error, "could not encrypt a session answer"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn session(now: u32) -> Session {
        Session {
            key: [7; SESSION_KEY_LEN],
            identity_handle: "0.NA/88.100.1".into(),
            identity_index: 300,
            authenticated: false,
            created: now,
            idle_secs: 600,
            last_used: now,
            counters: VecDeque::new(),
        }
    }

    #[test]
    fn unauthenticated_sessions_expire_after_the_setup_ttl() {
        let mut t = Sessions::new(4);
        t.insert(1, session(1000), 1000).unwrap();
        assert!(t.get(1, 1000 + SETUP_TTL_SECS).is_ok());
        let e = t.get(1, 1001 + SETUP_TTL_SECS + 1).err().unwrap();
        assert_eq!(e.0, code::SESSION_TIMEOUT);
        assert!(!t.contains(1));
    }

    #[test]
    fn authenticated_sessions_live_until_idle() {
        let mut t = Sessions::new(4);
        t.insert(1, session(1000), 1000).unwrap();
        assert!(!t.authenticate(1, "0.NA/88.100.2", 300));
        assert!(!t.authenticate(1, "0.NA/88.100.1", 301));
        assert!(t.authenticate(1, "0.na/88.100.1", 300));
        assert!(t.get(1, 1500).is_ok());
        assert!(t.get(1, 2000).is_ok());
        assert!(t.get(1, 2601).is_err());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_unauthenticated_session() {
        let mut t = Sessions::new(2);
        t.insert(1, session(10), 10).unwrap();
        t.insert(2, session(20), 20).unwrap();
        t.authenticate(1, "0.NA/88.100.1", 300);
        t.insert(3, session(30), 30).unwrap();
        assert!(t.contains(1) && !t.contains(2) && t.contains(3));
        t.authenticate(3, "0.NA/88.100.1", 300);
        let e = t.insert(4, session(40), 40).err().unwrap();
        assert_eq!(e.0, code::SERVER_TOO_BUSY);
    }

    #[test]
    fn encrypted_flag_is_read_from_the_envelope() {
        assert!(!is_encrypted(&[2, 11, 2]));
        assert!(is_encrypted(&[2, 11, 0x42]));
        assert!(!is_encrypted(&[2]));
    }
}
