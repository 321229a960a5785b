use crate::cache::{Entry, ResponseCache, Ticket};
use idnode_core::wire::{Reader, RecordView, ValueView, encode_value};
use idnode_core::{PrefixInfo, normalize_into};
use idnode_handle::{
    DecodeError, ResolutionQuery, ResponseBuilder, ResponseContext, code, decode_request,
    encode_error_response, encode_resolution_response, encode_values_response, flags, opcode,
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
}

/// What the recursive resolution upstream found, for
/// [`HandleService::answer_recursed`].
#[derive(Debug, Clone, Copy)]
pub enum Recursed<'a> {
    /// The record, every value (the request's filters are applied here).
    Found {
        handle: &'a str,
        values: &'a [idnode_core::Value],
    },
    /// A Handle response code and a message saying why.
    Failed { code: u32, message: &'a str },
}

/// Where a question this node has no record for belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disposition {
    /// Its prefix is homed here: the identifier does not exist.
    Homed,
    /// Its prefix (or a prefix above it) is delegated elsewhere: refer to
    /// the sites on this prefix's record.
    Delegated(String),
    /// This node is not responsible for it.
    Unknown(String),
}

/// Recursion count beyond which a request is refused (the spec's limit).
pub const MAX_RECURSION: u8 = 10;

/// Per-worker buffers reused across requests.
#[derive(Debug, Default)]
pub struct Scratch {
    key: Vec<u8>,
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

/// What [`HandleService::prewarm`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prewarmed {
    /// Records read.
    pub records: usize,
    /// Of those, the ones now in the response cache.
    pub cached: usize,
}

/// How far [`HandleService::begin`] got.
enum Step {
    /// The answer is in `out`.
    Answered(Outcome),
    /// The answer needs the record of the key: read it, then
    /// [`HandleService::finish`] with the ticket for filling the cache.
    Load(Option<Ticket>),
}

/// Answers Handle protocol requests from a store, through a response cache
/// when one is given.
pub struct HandleService {
    store: Arc<dyn Store>,
    cache: Option<Arc<ResponseCache>>,
    /// This node's HS_SITE (binary), the answer to GET_SITE_INFO.
    site_info: std::sync::OnceLock<Vec<u8>>,
    /// Where questions outside the prefixes homed here are resolved when
    /// the request sets REC; `None`: they are referred.
    upstream: Option<Arc<dyn Upstream>>,
}

/// What a recursive resolution upstream found: the whole record (every
/// value; the request's filters are applied by [`HandleService`]), or a
/// Handle response code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAnswer {
    Found {
        handle: String,
        values: Vec<idnode_core::Value>,
    },
    Failed {
        code: u32,
        message: String,
    },
}

/// Resolves identifiers on other nodes (the recursive role), for
/// [`HandleService::recurse`]. Implemented outside this crate, which owns
/// no sockets.
pub trait Upstream: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = UpstreamAnswer> + Send + 'a>>;
}

impl HandleService {
    /// A service that reads the store for every request.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: None,
            site_info: std::sync::OnceLock::new(),
            upstream: None,
        }
    }

    /// Answers GET_SITE_INFO with `site` (an encoded HS_SITE value), from
    /// now on; set once (the listeners' ports are known only once they
    /// are bound). False when it was already set.
    pub fn set_site_info(&self, site: Vec<u8>) -> bool {
        self.site_info.set(site).is_ok()
    }

    /// Lets requests with REC set be resolved through `upstream` (the
    /// transport calls [`recurse`](Self::recurse) on
    /// [`Outcome::Recurse`]) instead of referred.
    pub fn set_upstream(&mut self, upstream: Arc<dyn Upstream>) {
        self.upstream = Some(upstream);
    }

    /// Answers `message`, which got [`Outcome::Recurse`], by resolving it
    /// upstream. `out` is left empty only for a message that does not
    /// decode (which `respond` never sends here).
    pub async fn recurse(&self, message: &[u8], out: &mut Vec<u8>, now: impl Fn() -> u32) {
        out.clear();
        let (Some(upstream), Some(handle)) = (&self.upstream, Self::question(message)) else {
            return;
        };
        let answer = upstream.resolve(&handle).await;
        let recursed = match &answer {
            UpstreamAnswer::Found { handle, values } => Recursed::Found { handle, values },
            UpstreamAnswer::Failed { code, message } => Recursed::Failed {
                code: *code,
                message,
            },
        };
        self.answer_recursed(message, now(), recursed, out);
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
    /// Every client is unauthenticated here (no sessions yet), so values
    /// without public read permission are never sent.
    pub fn respond(
        &self,
        message: &[u8],
        now: u32,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        match self.begin(message, now, out, &mut scratch.key) {
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
        }
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
            Step::Answered(outcome) => Some(outcome),
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
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => return Step::Answered(protocol_error(message, e, now, out)),
        };
        let ctx = ResponseContext::for_request(&request, now);
        let reply = reply_to(&request.header);
        let op = request.header.opcode;
        if op == opcode::GET_SITE_INFO {
            match self.site_info.get() {
                Some(site) => {
                    let mut b = ResponseBuilder::start(out, &ctx, op, code::SUCCESS);
                    b.buffer().extend_from_slice(site);
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
        let ctx = ResponseContext::for_request(&request, now);
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

    /// The outcome once the record was looked for: a reply when it was
    /// found (`Ok(true)`), the answer by where the identifier belongs when
    /// it does not exist, an internal error when the store failed.
    fn or_not_here(
        &self,
        loaded: Result<bool, StoreError>,
        header: &idnode_handle::Header,
        ctx: &ResponseContext,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        let outcome = match loaded {
            Ok(true) => Ok(reply_to(header)),
            // No record here: answer by where the identifier belongs.
            Ok(false) => self.not_here(header, ctx, key, out),
            Err(e) => Err(e),
        };
        outcome.unwrap_or_else(|e| internal_error(&e, header, ctx, out))
    }

    /// The answer for a question with no record here: 100 under a prefix
    /// homed here, 303 with the sites of a delegated prefix, 301 when this
    /// node is not responsible, or recursion when asked for and allowed.
    fn not_here(
        &self,
        header: &idnode_handle::Header,
        ctx: &ResponseContext,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        let reply = reply_to(header);
        let op = opcode::RESOLUTION;
        let disposition = self.disposition(key)?;
        if disposition != Disposition::Homed
            && self.upstream.is_some()
            && header.op_flags & flags::REC != 0
        {
            if header.recursion >= MAX_RECURSION {
                let msg = format!("recursion count {} is at the limit", header.recursion);
                encode_error_response(out, ctx, op, code::RECURSION_COUNT_TOO_HIGH, &msg);
                return Ok(reply);
            }
            out.clear();
            return Ok(Outcome::Recurse {
                keep_open: header.op_flags & flags::KC != 0,
            });
        }
        match disposition {
            // The answer (HANDLE_NOT_FOUND) is already in `out`.
            Disposition::Homed => {}
            Disposition::Delegated(prefix) if header.op_flags & flags::DNR == 0 => {
                if !self.refer(ctx, &prefix, out)? {
                    let msg = format!("prefix {prefix} is delegated but its record has no site");
                    encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
                }
            }
            Disposition::Delegated(prefix) => {
                let msg = format!(
                    "prefix {prefix} is delegated to another node and the request forbids \
                     referrals (DNR)"
                );
                encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
            }
            Disposition::Unknown(prefix) => {
                let msg = format!("this node is not responsible for prefix {prefix}");
                encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
            }
        }
        Ok(reply)
    }

    /// Where `key` (a normalized identifier) belongs, from the prefixes
    /// this node knows: the nearest known prefix at or above the
    /// identifier's prefix decides. For a prefix record `0.NA/P`, P is the
    /// prefix looked at; an ancestor of P homed here means P's record would
    /// be here.
    fn disposition(&self, key: &[u8]) -> Result<Disposition, StoreError> {
        let Some(slash) = key.iter().position(|&b| b == b'/') else {
            return Ok(Disposition::Unknown(String::new()));
        };
        let (prefix, suffix) = (&key[..slash], &key[slash + 1..]);
        let is_prefix_record = prefix == b"0.NA";
        let named = if is_prefix_record { suffix } else { prefix };
        let mut at = named;
        loop {
            if let Some(info) = self.store.get(Space::Prefixes, at)? {
                let homed = PrefixInfo::homed_in(&info).unwrap_or(false);
                let name = String::from_utf8_lossy(at).into_owned();
                return Ok(match (homed, at.len() == named.len()) {
                    (true, true) => Disposition::Homed,
                    (true, false) if is_prefix_record => Disposition::Homed,
                    (true, false) => {
                        Disposition::Unknown(String::from_utf8_lossy(named).into_owned())
                    }
                    (false, _) => Disposition::Delegated(name),
                });
            }
            match at.iter().rposition(|&b| b == b'.') {
                Some(dot) => at = &at[..dot],
                None => {
                    return Ok(Disposition::Unknown(
                        String::from_utf8_lossy(named).into_owned(),
                    ));
                }
            }
        }
    }

    /// Writes a 303 PREFIX_REFERRAL naming the record `0.NA/<prefix>` and
    /// carrying its public site values (HS_SITE*, HS_SERV*). False when
    /// the record has none.
    fn refer(
        &self,
        ctx: &ResponseContext,
        prefix: &str,
        out: &mut Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = format!("0.NA/{prefix}");
        let Some(stored) = self.store.get(Space::Records, key.as_bytes())? else {
            return Ok(false);
        };
        let view = RecordView::parse(&stored)
            .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
        let mut sites = Vec::new();
        for value in view.values() {
            let value =
                value.map_err(|e| StoreError::Corrupt(format!("value does not decode: {e}")))?;
            if value.permissions.public_read()
                && (value.kind.starts_with(b"HS_SITE") || value.kind.starts_with(b"HS_SERV"))
            {
                sites.push(value.raw);
            }
        }
        if sites.is_empty() {
            return Ok(false);
        }
        let handle = view.identifier.as_bytes();
        encode_values_response(
            out,
            ctx,
            opcode::RESOLUTION,
            code::PREFIX_REFERRAL,
            handle,
            sites,
        );
        Ok(true)
    }

    /// Fills the response cache with the public values of the stored
    /// records, in key order, while it has room: a node that starts (or
    /// restarts under load) then answers from memory within seconds
    /// instead of paying a store read for each identifier's first question.
    /// Evicts nothing; stops at the end of the records, when a page of them
    /// adds nothing (the cache is full, or writes touched every shard while
    /// the page was read: best effort, the cache then fills as questions
    /// come), or when `keep_going` says so (checked between pages). Safe while writes go on: each page is read
    /// after the cache's generations were taken, so an entry whose record a
    /// write changed meanwhile is refused, as for any fill.
    pub fn prewarm(&self, keep_going: impl Fn() -> bool) -> Result<Prewarmed, StoreError> {
        const PAGE: usize = 1024;
        let mut done = Prewarmed::default();
        let Some(cache) = &self.cache else {
            return Ok(done);
        };
        let mut after: Option<Vec<u8>> = None;
        let mut values = Vec::new();
        while keep_going() {
            let seen = cache.generations();
            let page = self
                .store
                .scan(Space::Records, b"", after.as_deref(), PAGE)?;
            let mut added = 0;
            for (key, stored) in &page {
                // A record that does not decode is left to the question
                // that asks for it, which reports it.
                if let Ok(entry) = project(Some(stored), &mut values)
                    && cache.fill(&seen, key, entry)
                {
                    added += 1;
                }
            }
            done.records += page.len();
            done.cached += added;
            match page.into_iter().last() {
                Some((last, _)) if added > 0 => after = Some(last),
                _ => break,
            }
        }
        Ok(done)
    }

    /// The handle a request asks about, for the transport to resolve
    /// upstream after [`Outcome::Recurse`].
    pub fn question(message: &[u8]) -> Option<String> {
        let request = decode_request(message).ok()?;
        let query = ResolutionQuery::decode(request.body).ok()?;
        std::str::from_utf8(query.handle).ok().map(str::to_owned)
    }

    /// Answers `message` (which got [`Outcome::Recurse`]) from what the
    /// recursive resolution found, with the request's filters applied.
    pub fn answer_recursed(
        &self,
        message: &[u8],
        now: u32,
        recursed: Recursed<'_>,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let Ok(request) = decode_request(message) else {
            return;
        };
        let ctx = ResponseContext::for_request(&request, now);
        let op = opcode::RESOLUTION;
        let Ok(query) = ResolutionQuery::decode(request.body) else {
            return;
        };
        match recursed {
            Recursed::Found { values, .. } => {
                let mut encoded = Vec::new();
                let mut count = 0u32;
                for value in values.iter().filter(|v| v.permissions.public_read()) {
                    encode_value(&mut encoded, value);
                    count += 1;
                }
                let public = Entry::Found {
                    count,
                    values: &encoded,
                };
                answer(out, &ctx, &query, public);
            }
            Recursed::Failed { code, message } => {
                encode_error_response(out, &ctx, op, code, message);
            }
        }
    }
}

/// The public projection of a stored record (`None`: there is none): the
/// wire form of its publicly readable values, written into `values`.
fn project<'v>(stored: Option<&[u8]>, values: &'v mut Vec<u8>) -> Result<Entry<'v>, StoreError> {
    values.clear();
    let Some(stored) = stored else {
        return Ok(Entry::Missing);
    };
    let view = RecordView::parse(stored)
        .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
    let mut count = 0;
    for value in view.values() {
        let value =
            value.map_err(|e| StoreError::Corrupt(format!("value does not decode: {e}")))?;
        if value.permissions.public_read() {
            values.extend_from_slice(value.raw);
            count += 1;
        }
    }
    Ok(Entry::Found { count, values })
}

/// Writes the answer to `query` from a record's public projection. False
/// when there is no record (`out` then holds HANDLE_NOT_FOUND, which the
/// caller may replace by a referral).
#[inline]
fn answer(
    out: &mut Vec<u8>,
    ctx: &ResponseContext,
    query: &ResolutionQuery<'_>,
    public: Entry<'_>,
) -> bool {
    let (count, values) = match public {
        Entry::Found { count, values } => (count, values),
        Entry::Missing => {
            let msg = "handle not found";
            encode_error_response(out, ctx, opcode::RESOLUTION, code::HANDLE_NOT_FOUND, msg);
            return false;
        }
    };
    if !query.has_filters() {
        // The hot case: every public value, one copy of the stored bytes.
        let mut b = ResponseBuilder::start(out, ctx, opcode::RESOLUTION, code::SUCCESS);
        b.put_bytes(query.handle);
        b.put_u32(count);
        b.buffer().extend_from_slice(values);
        if b.fits() {
            b.finish();
        } else {
            let msg = "answer exceeds the maximum message length";
            encode_error_response(out, ctx, opcode::RESOLUTION, code::ERROR, msg);
        }
        return true;
    }
    let mut reader = Reader::new(values);
    let selected = std::iter::from_fn(|| {
        (reader.remaining() > 0)
            .then(|| ValueView::read(&mut reader).ok())
            .flatten()
    })
    .filter(|v| query.wants(v.index, v.kind))
    .map(|v| v.raw);
    if encode_resolution_response(out, ctx, query.handle, selected) == 0 {
        let msg = "no value matches the requested indexes and types";
        encode_error_response(out, ctx, opcode::RESOLUTION, code::VALUES_NOT_FOUND, msg);
    }
    true
}

#[inline]
fn is_valid_handle(handle: &[u8]) -> bool {
    // The first `/` byte is the first `/` character in UTF-8 too.
    let Some(slash) = handle.iter().position(|&b| b == b'/') else {
        return false;
    };
    slash > 0
        && slash + 1 < handle.len()
        && (handle.is_ascii() || std::str::from_utf8(handle).is_ok())
}

/// The answer when the store failed: logged here, the client learns only
/// that it was an internal error.
fn internal_error(
    error: &StoreError,
    header: &idnode_handle::Header,
    ctx: &ResponseContext,
    out: &mut Vec<u8>,
) -> Outcome {
    tracing::error!(%error, "store read failed");
    encode_error_response(out, ctx, header.opcode, code::ERROR, "internal error");
    reply_to(header)
}

/// Send the answer, keeping the connection open if the request asked to
/// (KC).
#[inline]
fn reply_to(header: &idnode_handle::Header) -> Outcome {
    Outcome::Reply {
        keep_open: header.op_flags & flags::KC != 0,
    }
}

/// The question of a RESOLUTION request, or PROTOCOL_ERROR written into
/// `out` (and the outcome to return) when its body does not decode.
#[inline]
fn question<'m>(
    request: &idnode_handle::Request<'m>,
    ctx: &ResponseContext,
    out: &mut Vec<u8>,
) -> Result<ResolutionQuery<'m>, Outcome> {
    ResolutionQuery::decode(request.body).map_err(|e| {
        let msg = format!("malformed resolution request: {e}");
        encode_error_response(out, ctx, opcode::RESOLUTION, code::PROTOCOL_ERROR, &msg);
        reply_to(&request.header)
    })
}

/// A request that does not decode gets PROTOCOL_ERROR when its envelope is
/// readable (so the client learns why), and is dropped otherwise.
fn protocol_error(message: &[u8], error: DecodeError, now: u32, out: &mut Vec<u8>) -> Outcome {
    match ResponseContext::for_undecodable(message, now) {
        Some(ctx) => {
            let msg = format!("cannot decode request: {error}");
            encode_error_response(out, &ctx, 0, code::PROTOCOL_ERROR, &msg);
            Outcome::Reply { keep_open: false }
        }
        None => Outcome::Drop,
    }
}
