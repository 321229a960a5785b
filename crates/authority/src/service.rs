//! `HandleService`: decode a Handle request, answer it from the response
//! cache or the store, one request or a batch at a time.

use crate::answer::{
    answer, internal_error, is_valid_handle, project, protocol_error, question, reply_to,
};
use crate::cache::{ResponseCache, Ticket};
use crate::upstream::Upstream;
use idnode_core::normalize_into;
use idnode_handle::ServerKey;
use idnode_handle::{
    ResolutionQuery, ResponseBuilder, ResponseContext, code, decode_request, encode_error_response,
    opcode,
};
use idnode_store::{Space, Store, StoreError};
use std::sync::Arc;

/// What the transport should do after [`HandleService::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send the buffer; `keep_open` is the request's keep-connection flag.
    Reply { keep_open: bool },
    /// Send nothing: the bytes were not a Handle message we can answer.
    Drop,
    /// The question is for a prefix this node does not home, the request
    /// asked for recursion (REC) and this node recurses: resolve
    /// [`HandleService::question`] upstream, then answer with
    /// [`HandleService::answer_recursed`]. `out` is empty.
    Recurse { keep_open: bool },
    /// An admin request (CREATE_HANDLE 100 to LIST_HANDLES 105) or a
    /// CHALLENGE_RESPONSE, on a node that serves administration, or (from
    /// [`HandleService::respond_stream`] only) a RESOLUTION with PO clear
    /// that names values without public read: an admin interface (TCP,
    /// QUIC) answers with [`HandleService::respond_admin`] on a blocking
    /// thread, a query-only one (UDP) with
    /// [`HandleService::refuse_admin`]. `out` is empty.
    Admin { keep_open: bool },
}

/// Per-worker buffers reused across requests.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) key: Vec<u8>,
    values: Vec<u8>,
}

/// Per-worker buffers of [`HandleService::respond_batch`]: the messages of
/// a batch waiting for their records, and their keys.
#[derive(Debug, Default)]
pub struct Batch {
    /// `keys[k]` is the key of `waiting[k]`; longer than `waiting` when an
    /// earlier batch waited for more.
    keys: Vec<Vec<u8>>,
    /// (index in the batch, cache ticket)
    waiting: Vec<(usize, Option<Ticket>)>,
    values: Vec<u8>,
    /// The keys of a batch's questions, and their hashes, for prefetching.
    ahead: Vec<Vec<u8>>,
    hashes: Vec<u64>,
}

/// How far [`HandleService::begin`] got.
enum Step {
    /// The answer is in `out`.
    Answered(Outcome),
    /// The answer needs the record of the key: read it, then
    /// [`HandleService::finish`] with the ticket for filling the cache.
    Load(Option<Ticket>),
}

/// This node's own site, as GET_SITE_INFO answers it, with what every
/// answer's header takes from it.
#[derive(Debug)]
pub(crate) struct OwnSite {
    pub(crate) encoded: Vec<u8>,
    pub(crate) serial: u16,
    pub(crate) primary: bool,
}

/// Answers Handle protocol requests from a store, through a response cache
/// when one is given.
pub struct HandleService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Option<Arc<ResponseCache>>,
    /// This node's HS_SITE (binary), the answer to GET_SITE_INFO.
    pub(crate) site_info: std::sync::OnceLock<OwnSite>,
    /// The key that signs answers to requests with CT (certified), when
    /// this node has one.
    pub(crate) signer: Option<Arc<ServerKey>>,
    /// Where questions outside the prefixes homed here are resolved when
    /// the request sets REC; `None`: they are referred.
    pub(crate) upstream: Option<Arc<dyn Upstream>>,
    /// Who may have questions resolved upstream (`None`: anyone).
    pub(crate) recursion_clients: Option<Vec<(std::net::IpAddr, u8)>>,
    /// Handle administration (the registry and the pending challenges),
    /// when served.
    pub(crate) admin: Option<Arc<crate::admin::AdminState>>,
}

impl HandleService {
    /// A service that reads the store for every request.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: None,
            site_info: std::sync::OnceLock::new(),
            signer: None,
            upstream: None,
            recursion_clients: None,
            admin: None,
        }
    }

    /// Answers GET_SITE_INFO with `site` (an encoded HS_SITE value), from
    /// now on; set once (the listeners' ports are known only once they
    /// are bound). False when it was already set.
    ///
    /// From then on every answer carries that site's serial, and the AT
    /// (authoritative) flag when the site is primary, as CNRI's servers
    /// write them. Bytes that do not decode as a site are still served to
    /// GET_SITE_INFO, with serial -1 and no AT.
    pub fn set_site_info(&self, site: Vec<u8>) -> bool {
        let (serial, primary) = match idnode_handle::SiteInfo::decode(&site) {
            Ok(info) => (info.serial, info.primary),
            Err(_) => (u16::MAX, false),
        };
        self.site_info
            .set(OwnSite {
                encoded: site,
                serial,
                primary,
            })
            .is_ok()
    }

    /// Signs the answers to requests that set CT (certified) with `key`,
    /// whose public half the node's site record publishes. Without a key,
    /// such answers go out unsigned (which a certifying client rejects).
    pub fn set_signer(&mut self, key: Arc<ServerKey>) {
        self.signer = Some(key);
    }

    /// Signs `out`, the answer to `message`, when the request set CT and
    /// this node has a key (HS_SIGNED, the hash CNRI's rule picks for the
    /// answer's version). Answers without CT pass untouched: one byte is
    /// read. A signing failure leaves the answer unsigned and is logged.
    #[inline]
    pub(crate) fn certify_if_asked(&self, message: &[u8], outcome: Outcome, out: &mut Vec<u8>) {
        // The op flags are the big-endian word at header offset 8.
        const CT_BYTE: usize = idnode_handle::ENVELOPE_LEN + 8;
        const CT_BIT: u8 = (idnode_handle::flags::CT >> 24) as u8;
        if message.get(CT_BYTE).is_none_or(|b| b & CT_BIT == 0)
            || !matches!(outcome, Outcome::Reply { .. })
            || out.is_empty()
        {
            return;
        }
        let Some(key) = &self.signer else {
            return;
        };
        let Ok(envelope) = idnode_handle::Envelope::decode(out) else {
            return;
        };
        let version = (envelope.major, envelope.minor);
        let hash = idnode_handle::certify::hash_for(version, key.kind());
        if let Err(error) = idnode_handle::certify::sign_response(out, key, hash) {
            tracing::warn!(%error, "could not sign a certified answer; sent unsigned");
        }
    }

    /// The context of an answer to `request`: the request's, with this
    /// node's site serial and, on a primary, the AT flag.
    #[inline]
    pub(crate) fn context(
        &self,
        request: &idnode_handle::Request<'_>,
        now: u32,
    ) -> ResponseContext {
        let ctx = ResponseContext::for_request(request, now);
        match self.site_info.get() {
            Some(own) => ctx.with_site(own.serial, own.primary),
            None => ctx,
        }
    }

    /// A service that answers from `cache` when it can. The cache must be
    /// told about every write (register it as a
    /// [`CommitObserver`](idnode_store::CommitObserver) of the store).
    pub fn with_cache(store: Arc<dyn Store>, cache: Arc<ResponseCache>) -> Self {
        Self {
            cache: Some(cache),
            ..Self::new(store)
        }
    }

    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_deref()
    }

    /// Answers one complete request message (envelope included) into `out`.
    ///
    /// Every client is unauthenticated here, so values without public read
    /// permission are never sent. Admin interfaces (TCP, QUIC) call
    /// [`respond_stream`](Self::respond_stream) instead, which may
    /// challenge a resolution that asks for such values.
    pub fn respond(
        &self,
        message: &[u8],
        now: u32,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let outcome = match self.begin(message, now, out, &mut scratch.key) {
            Step::Answered(outcome) => outcome,
            Step::Load(ticket) => {
                let stored = self.store.get(Space::Records, &scratch.key);
                let stored = stored.as_ref().map(Option::as_deref);
                self.finish(
                    message,
                    now,
                    ticket,
                    stored,
                    &scratch.key,
                    out,
                    &mut scratch.values,
                )
            }
        };
        self.certify_if_asked(message, outcome, out);
        outcome
    }

    /// Answers several complete request messages at once: `outs[i]` and
    /// `outcomes[i]` get the answer to `messages[i]`, as from
    /// [`respond`](Self::respond). The records of the questions the
    /// response cache cannot answer are read with one multi-get (RocksDB
    /// then shares one snapshot and its filter and index probes between
    /// them). Slices shorter than `messages` leave the rest unanswered.
    pub fn respond_batch(
        &self,
        messages: &[&[u8]],
        now: u32,
        outs: &mut [Vec<u8>],
        outcomes: &mut [Outcome],
        batch: &mut Batch,
    ) {
        self.prefetch(messages, batch);
        for (i, ((message, out), outcome)) in messages
            .iter()
            .zip(outs.iter_mut())
            .zip(outcomes.iter_mut())
            .enumerate()
        {
            if let Some(answered) = self.begin_in(batch, i, message, now, out) {
                *outcome = answered;
            }
        }
        self.finish_batch(batch, messages, now, outs, outcomes);
    }

    /// Starts loading the response cache's memory for the resolution
    /// questions of `messages` (see [`ResponseCache::prefetch`]), before a
    /// batch is answered: their lookups then wait on memory together.
    /// Messages that do not decode are skipped (answering them says why).
    pub fn prefetch(&self, messages: &[&[u8]], batch: &mut Batch) {
        let Some(cache) = self
            .cache
            .as_deref()
            .filter(|c| messages.len() > 1 && c.worth_prefetching())
        else {
            return;
        };
        let mut n = 0;
        for message in messages {
            let Ok(request) = decode_request(message) else {
                continue;
            };
            if request.header.opcode != opcode::RESOLUTION {
                continue;
            }
            let Ok(query) = ResolutionQuery::decode(request.body) else {
                continue;
            };
            if batch.ahead.len() <= n {
                batch.ahead.push(Vec::new());
            }
            normalize_into(query.handle, &mut batch.ahead[n]);
            n += 1;
        }
        let keys = batch.ahead[..n].iter().map(Vec::as_slice);
        cache.prefetch(keys, &mut batch.hashes);
    }

    /// The first pass over `messages[i]` of a batch (for transports that
    /// answer some messages of a batch on their own): its outcome when it
    /// is answered already (from the response cache, or an error), or
    /// `None` when it waits in `batch` for
    /// [`finish_batch`](Self::finish_batch), which writes its outcome.
    pub fn begin_in(
        &self,
        batch: &mut Batch,
        i: usize,
        message: &[u8],
        now: u32,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        if batch.keys.len() <= batch.waiting.len() {
            batch.keys.push(Vec::new());
        }
        let key = &mut batch.keys[batch.waiting.len()];
        match self.begin(message, now, out, key) {
            Step::Answered(outcome) => {
                self.certify_if_asked(message, outcome, out);
                Some(outcome)
            }
            Step::Load(ticket) => {
                batch.waiting.push((i, ticket));
                None
            }
        }
    }

    /// Reads the records of the messages waiting in `batch` with one
    /// multi-get and answers each (`outs[i]`, `outcomes[i]`); `batch` is
    /// empty again after.
    pub fn finish_batch(
        &self,
        batch: &mut Batch,
        messages: &[&[u8]],
        now: u32,
        outs: &mut [Vec<u8>],
        outcomes: &mut [Outcome],
    ) {
        if batch.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut batch.waiting);
        let keys: Vec<&[u8]> = batch.keys[..waiting.len()]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let stored = self.store.multi_get(Space::Records, &keys);
        for (k, &(i, ticket)) in waiting.iter().enumerate() {
            let (Some(message), Some(out), Some(outcome)) =
                (messages.get(i), outs.get_mut(i), outcomes.get_mut(i))
            else {
                continue;
            };
            let record = match &stored {
                Ok(records) => Ok(records.get(k).and_then(Option::as_deref)),
                Err(e) => Err(e),
            };
            *outcome = self.finish(
                message,
                now,
                ticket,
                record,
                keys[k],
                out,
                &mut batch.values,
            );
            self.certify_if_asked(message, *outcome, out);
        }
        // Keep the allocation for the next batch.
        batch.waiting = waiting;
        batch.waiting.clear();
    }

    /// Everything of an answer that needs no store read: a decoded request
    /// whose answer is in the response cache, or that cannot be answered
    /// (an error), is answered into `out`; otherwise `key` holds the
    /// normalized identifier whose record [`finish`](Self::finish) needs.
    #[inline]
    fn begin(&self, message: &[u8], now: u32, out: &mut Vec<u8>, key: &mut Vec<u8>) -> Step {
        out.clear();
        if self.admin.is_some() && crate::session::is_encrypted(message) {
            // A session message: decrypted on the admin side.
            return Step::Answered(Outcome::Admin { keep_open: true });
        }
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => return Step::Answered(protocol_error(message, e, now, out)),
        };
        let ctx = self.context(&request, now);
        let reply = reply_to(&request.header);
        let op = request.header.opcode;
        if op == opcode::GET_SITE_INFO {
            match self.site_info.get() {
                Some(site) => {
                    let mut b = ResponseBuilder::start(out, &ctx, op, code::SUCCESS);
                    b.buffer().extend_from_slice(&site.encoded);
                    b.finish();
                }
                None => {
                    let msg = "this node has no site information configured";
                    encode_error_response(out, &ctx, op, code::OPERATION_NOT_SUPPORTED, msg);
                }
            }
            return Step::Answered(reply);
        }
        if op != opcode::RESOLUTION {
            if self.admin.is_some() && crate::admin::is_admin_side(op) {
                let keep_open = matches!(reply, Outcome::Reply { keep_open: true });
                return Step::Answered(Outcome::Admin { keep_open });
            }
            let msg = format!("operation {op} is not supported by this node");
            encode_error_response(out, &ctx, op, code::OPERATION_NOT_SUPPORTED, &msg);
            return Step::Answered(reply);
        }
        let query = match question(&request, &ctx, out) {
            Ok(q) => q,
            Err(refused) => return Step::Answered(refused),
        };
        if !is_valid_handle(query.handle) {
            let msg = "handle must be UTF-8 `prefix/suffix`";
            encode_error_response(out, &ctx, op, code::INVALID_HANDLE, msg);
            return Step::Answered(reply);
        }
        normalize_into(query.handle, key);
        match &self.cache {
            Some(cache) => match cache.with(key, |e| answer(out, &ctx, &query, e)) {
                Ok(true) => Step::Answered(reply),
                // A cached "no such record": answer by where it belongs.
                Ok(false) => {
                    Step::Answered(self.or_not_here(Ok(false), &request.header, &ctx, key, out))
                }
                Err(ticket) => Step::Load(Some(ticket)),
            },
            None => Step::Load(None),
        }
    }

    /// Answers `message`, which [`begin`](Self::begin) left waiting for the
    /// record of `key`, from `stored` (the store's answer), and fills the
    /// response cache with it under `ticket`.
    #[allow(clippy::too_many_arguments)] // the two halves of one answer
    fn finish(
        &self,
        message: &[u8],
        now: u32,
        ticket: Option<Ticket>,
        stored: Result<Option<&[u8]>, &StoreError>,
        key: &[u8],
        out: &mut Vec<u8>,
        values: &mut Vec<u8>,
    ) -> Outcome {
        // `begin` decoded this message already; decoding again (a few
        // nanoseconds) is cheaper than carrying its borrowed parts.
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => return protocol_error(message, e, now, out),
        };
        let ctx = self.context(&request, now);
        let query = match question(&request, &ctx, out) {
            Ok(q) => q,
            Err(refused) => return refused,
        };
        let loaded = match stored {
            Ok(record) => project(record, values).map(|entry| {
                if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
                    cache.insert(key, ticket, entry);
                }
                answer(out, &ctx, &query, entry)
            }),
            Err(e) => return internal_error(e, &request.header, &ctx, out),
        };
        self.or_not_here(loaded, &request.header, &ctx, key, out)
    }
}
