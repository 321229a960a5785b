//! The JSON REST API in Handle.Net's shape (docs/http.md):
//! `GET|PUT|DELETE /api/handles/{identifier}` and
//! `GET /api/handles?prefix=P&page=K&pageSize=S`. Answers carry the Handle
//! response code (`responseCode`) and an HTTP status mapped from it: 1 is
//! 200 (201 for a create), 100 is 404, 101 and 201 are 409, 102, 202 and
//! 301 are 400, referrals 300, 402 is 401, other 40x 403, 3 is 503.

use crate::credentials::{AuthHeader, Credential, credential};
use crate::json;
use crate::{Peer, Web};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use idnode_admin::tokens::{
    ADD_ADMIN, ADD_HANDLE, ADD_VALUE, DELETE_HANDLE, LIST_HANDLES, MODIFY_ADMIN, MODIFY_VALUE,
    READ_VALUE, REMOVE_ADMIN, REMOVE_VALUE,
};
use idnode_authority::{Outcome, Scratch};
use idnode_core::{Identifier, Value};
use idnode_handle::admin::AdminRequest;
use idnode_handle::{RequestParams, ResponseBody, code, flags};
use idnode_registry::{Origin, Registry, RegistryError};
use serde_json::{Value as Json, json};

/// A JSON response body.
use axum::Json as Body;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/handles", get(list)).route(
        "/api/handles/{*identifier}",
        get(read).put(write).delete(remove),
    )
}

/// A refusal: HTTP status, Handle response code, message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
    extra: Option<Json>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// A Handle response code with its mapped HTTP status.
    pub(crate) fn code(code: u32, message: impl Into<String>) -> Self {
        Self::new(status_of(code), code, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::AUTHENTICATION_NEEDED,
            message,
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::ERROR,
            "the request failed inside the node; its log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"responseCode": self.code, "message": self.message});
        if let Some(Json::Object(extra)) = self.extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        (self.status, Body(body)).into_response()
    }
}

/// The HTTP status of a Handle response code.
pub(crate) fn status_of(response_code: u32) -> StatusCode {
    match response_code {
        code::SUCCESS | code::VALUES_NOT_FOUND => StatusCode::OK,
        code::HANDLE_NOT_FOUND => StatusCode::NOT_FOUND,
        code::HANDLE_ALREADY_EXISTS | code::VALUE_ALREADY_EXISTS => StatusCode::CONFLICT,
        code::INVALID_HANDLE | code::INVALID_VALUE | code::SERVER_NOT_RESP => {
            StatusCode::BAD_REQUEST
        }
        code::SERVICE_REFERRAL | code::PREFIX_REFERRAL => StatusCode::MULTIPLE_CHOICES,
        code::AUTHENTICATION_NEEDED => StatusCode::UNAUTHORIZED,
        400..=499 => StatusCode::FORBIDDEN,
        code::SERVER_TOO_BUSY | 7 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a public resolution through the Handle service gave.
pub(crate) enum Resolved {
    /// SUCCESS (or 200 VALUES_NOT_FOUND with no values).
    Values { handle: String, values: Vec<Value> },
    /// Delegated elsewhere: the prefix record asked and the values that
    /// say where (HS_SITE, HS_SITE.PREFIX, HS_SERV...).
    Referral { handle: String, values: Vec<Value> },
    /// Any other response code, with its message.
    Refused { code: u32, message: String },
}

/// Resolves `handle` as an anonymous Handle client would (public values
/// only, no recursion), through the node's service and its cache.
pub(crate) fn resolve_public(
    web: &Web,
    handle: &str,
    indexes: &[u32],
    types: &[&[u8]],
) -> Resolved {
    /// A worker thread's buffers, kept from one request to the next.
    #[derive(Default)]
    struct Buffers {
        request: Vec<u8>,
        out: Vec<u8>,
        scratch: Scratch,
    }
    thread_local! {
        static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::default();
    }
    let now = idnode_registry::system_clock();
    BUFFERS.with(|buffers| {
        // A re-entrant call (none today) would find the buffers taken: it
        // gets fresh ones.
        let mut fresh = Buffers::default();
        let mut taken = buffers.try_borrow_mut();
        let b = match taken.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut fresh,
        };
        b.request.clear();
        idnode_handle::encode_resolution_request(
            &mut b.request,
            &RequestParams {
                request_id: 1,
                session_id: 0,
                op_flags: flags::PO,
                site_serial: -1,
                expiration: now.saturating_add(60),
                handle: handle.as_bytes(),
                indexes,
                types,
            },
        );
        let outcome = web
            .service
            .respond(&b.request, now, &mut b.out, &mut b.scratch);
        if !matches!(outcome, Outcome::Reply { .. }) || b.out.is_empty() {
            return Resolved::Refused {
                code: code::ERROR,
                message: "the node could not answer".into(),
            };
        }
        decoded(handle, &b.out)
    })
}

/// What a resolution's answer says.
fn decoded(handle: &str, out: &[u8]) -> Resolved {
    match idnode_handle::decode_response(out) {
        Ok(r) => match (r.header.response_code, r.body) {
            (_, ResponseBody::Resolution { handle, values }) => Resolved::Values { handle, values },
            (_, ResponseBody::Referral { handle, values }) => Resolved::Referral { handle, values },
            (code::VALUES_NOT_FOUND, _) => Resolved::Values {
                handle: handle.to_owned(),
                values: Vec::new(),
            },
            (code, ResponseBody::Error { message }) => Resolved::Refused { code, message },
            (code, _) => Resolved::Refused {
                code,
                message: String::new(),
            },
        },
        Err(_) => Resolved::Refused {
            code: code::ERROR,
            message: "the node's answer did not decode".into(),
        },
    }
}

/// Where a delegated identifier lives: the referral of its prefix record
/// (`0.NA/<prefix>`), asked of this node.
pub(crate) fn referral_for(web: &Web, identifier: &str) -> Option<(String, Vec<Value>)> {
    let id = Identifier::parse(identifier).ok()?;
    let mut prefix = id.prefix().to_owned();
    loop {
        let handle = format!("0.NA/{prefix}");
        match resolve_public(web, &handle, &[], &[]) {
            Resolved::Referral { handle, values } => return Some((handle, values)),
            Resolved::Values { handle, values }
                if values
                    .iter()
                    .any(|v| v.kind.starts_with("HS_SITE") || v.kind.starts_with("HS_SERV")) =>
            {
                return Some((handle, values));
            }
            _ => {}
        }
        let (parent, _) = prefix.rsplit_once('.')?;
        prefix = parent.to_owned();
    }
}

/// The sites of referral values, as JSON: each server's address and
/// ports.
pub(crate) fn sites_json(values: &[Value]) -> Json {
    let mut sites = Vec::new();
    for v in values.iter().filter(|v| v.kind.starts_with("HS_SITE")) {
        if let Ok(site) = idnode_handle::site::SiteInfo::decode(&v.data) {
            let servers: Vec<Json> = site
                .servers
                .iter()
                .map(|s| {
                    let ports: Vec<Json> = s
                        .interfaces
                        .iter()
                        .map(|i| json!({"protocol": format!("{:?}", i.protocol), "port": i.port}))
                        .collect();
                    json!({"address": s.address.to_string(), "interfaces": ports})
                })
                .collect();
            sites.push(json!({"type": v.kind, "servers": servers}));
        }
    }
    for v in values.iter().filter(|v| v.kind.starts_with("HS_SERV")) {
        sites.push(json!({"type": v.kind, "service": String::from_utf8_lossy(&v.data)}));
    }
    Json::Array(sites)
}

/// Query parameters, repeated ones kept (`index=1&index=2`).
fn params(query: &Option<String>) -> Vec<(String, String)> {
    crate::target::params(query.as_deref())
}

use crate::target::flag;

fn indexes(params: &[(String, String)]) -> Result<Vec<u32>, ApiError> {
    crate::target::indexes(params).map_err(|why| ApiError::code(code::INVALID_VALUE, why))
}

fn checked_identifier(raw: &str) -> Result<Identifier, ApiError> {
    Identifier::parse(raw)
        .map_err(|e| ApiError::code(code::INVALID_HANDLE, format!("`{raw}`: {e}")))
}

async fn read(
    State(web): State<Web>,
    Path(identifier): Path<String>,
    RawQuery(query): RawQuery,
    AuthHeader(headers): AuthHeader,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let id = checked_identifier(&identifier)?;
    let params = params(&query);
    let wanted = indexes(&params)?;
    let types: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "type")
        .map(|(_, v)| v.clone())
        .collect();
    let public_only = flag(&params, "publicOnly").unwrap_or(false);
    let who = credential(&web, &headers).await?;
    let private = !public_only
        && matches!(&who, Credential::Token(g)
            if g.is_operator() || g.check_identifier(id.as_str(), READ_VALUE).is_ok());
    let type_refs: Vec<&[u8]> = types.iter().map(|t| t.as_bytes()).collect();
    // Public values on the async worker, as the UDP workers answer: a
    // response-cache hit or a point read of the local store, shorter than
    // a hand-off to the blocking pool would be. A token's full record goes
    // through the registry on the blocking pool.
    let resolved = if !private {
        resolve_public(&web, id.as_str(), &wanted, &type_refs)
    } else {
        let (web, handle, wanted) = (web.clone(), id.as_str().to_owned(), wanted.clone());
        tokio::task::spawn_blocking(move || {
            let type_refs: Vec<&[u8]> = types.iter().map(|t| t.as_bytes()).collect();
            match web.registry.get_identifier(&handle) {
                Ok(record) => Ok(Resolved::Values {
                    handle: record.identifier,
                    values: record
                        .values
                        .into_iter()
                        .filter(|v| wanted.is_empty() || wanted.contains(&v.index))
                        .filter(|v| {
                            types.is_empty() || types.iter().any(|t| type_matches(t, &v.kind))
                        })
                        .collect(),
                }),
                Err(RegistryError::NotFound(_)) => {
                    Ok(resolve_public(&web, &handle, &wanted, &type_refs))
                }
                Err(e) => Err(registry_error(e)),
            }
        })
        .await
        .map_err(|_| ApiError::internal())??
    };
    web.counts
        .resolutions
        .count(started, matches!(resolved, Resolved::Values { .. }));
    Ok(match resolved {
        Resolved::Values { handle, values } if values.is_empty() && !wanted.is_empty() => (
            StatusCode::OK,
            Body(json!({"responseCode": code::VALUES_NOT_FOUND, "handle": handle, "values": []})),
        )
            .into_response(),
        Resolved::Values { handle, values } => {
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Record<'a> {
                response_code: u32,
                handle: &'a str,
                values: Vec<json::ValueOut<'a>>,
            }
            Body(Record {
                response_code: code::SUCCESS,
                handle: &handle,
                values: values.iter().map(json::ValueOut).collect(),
            })
            .into_response()
        }
        Resolved::Referral { handle, values } => referral(&handle, &values),
        Resolved::Refused { code: c, message } if c == code::SERVER_NOT_RESP => {
            match referral_for(&web, id.as_str()) {
                Some((handle, values)) => referral(&handle, &values),
                None => ApiError::code(c, message).into_response(),
            }
        }
        Resolved::Refused { code: c, message } => {
            let mut e = ApiError::code(c, message);
            e.extra = Some(json!({"handle": id.as_str()}));
            e.into_response()
        }
    })
}

fn type_matches(wanted: &str, kind: &str) -> bool {
    match wanted.strip_suffix('.') {
        Some(family) => {
            kind.starts_with(family) && kind.as_bytes().get(family.len()) == Some(&b'.')
        }
        None => wanted.eq_ignore_ascii_case(kind),
    }
}

/// A referral: where the identifier lives instead.
fn referral(handle: &str, values: &[Value]) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Body(json!({
            "responseCode": code::PREFIX_REFERRAL,
            "message": "the identifier's prefix is served by another site",
            "handle": handle,
            "sites": sites_json(values),
        })),
    )
        .into_response()
}

fn registry_error(e: RegistryError) -> ApiError {
    let (c, message) = match &e {
        RegistryError::NotFound(_) => (code::HANDLE_NOT_FOUND, e.to_string()),
        RegistryError::AlreadyExists(_) => (code::HANDLE_ALREADY_EXISTS, e.to_string()),
        RegistryError::InvalidArgument { field, .. } if field.starts_with("identifier") => {
            (code::INVALID_HANDLE, e.to_string())
        }
        RegistryError::InvalidArgument { .. } => (code::INVALID_VALUE, e.to_string()),
        RegistryError::FailedPrecondition(_) => (code::SERVER_NOT_RESP, e.to_string()),
        _ if e.read_only().is_some() => {
            // A mirror: the write goes to its primary, which the message
            // names.
            return ApiError::new(StatusCode::CONFLICT, code::SERVER_NOT_RESP, e.to_string());
        }
        _ if e.is_no_space() => {
            tracing::warn!(error = %e, "http: write refused, the disk is full");
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                code::ERROR,
                idnode_store::NO_SPACE,
            );
        }
        _ => {
            tracing::warn!(error = %e, "http: store failure");
            return ApiError::internal();
        }
    };
    ApiError::code(c, message)
}

fn denied(status: tonic::Status) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        code::INSUFFICIENT_PERMISSIONS,
        status.message(),
    )
}

/// What a write asks for.
enum Change {
    /// PUT without `index`: the whole record.
    Record { values: Vec<Value>, overwrite: bool },
    /// PUT with `index`: these values added or replaced.
    Values(Vec<Value>),
    /// DELETE without `index`.
    Delete,
    /// DELETE with `index`.
    Remove(Vec<u32>),
}

async fn write(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    Path(identifier): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = checked_identifier(&identifier)?;
    let params = params(&query);
    let body: Json = serde_json::from_slice(&body)
        .map_err(|e| ApiError::code(code::INVALID_VALUE, format!("the body is not JSON: {e}")))?;
    let values = json::parse_values(&body)
        .map_err(|e| ApiError::code(code::INVALID_VALUE, e.to_string()))?;
    let change = if params.iter().any(|(k, _)| k == "index") {
        let listed = indexes(&params)?;
        let values: Vec<Value> = values
            .into_iter()
            .filter(|v| listed.is_empty() || listed.contains(&v.index))
            .collect();
        Change::Values(values)
    } else {
        Change::Record {
            values,
            overwrite: flag(&params, "overwrite").unwrap_or(true),
        }
    };
    apply(&web, peer, &headers, id, change).await
}

async fn remove(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    Path(identifier): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = checked_identifier(&identifier)?;
    let params = params(&query);
    let change = if params.iter().any(|(k, _)| k == "index") {
        Change::Remove(indexes(&params)?)
    } else {
        Change::Delete
    };
    apply(&web, peer, &headers, id, change).await
}

fn is_admin(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("HS_ADMIN")
}

/// The token permissions a change needs (as the gRPC calls ask them).
fn token_needs(registry: &Registry, id: &Identifier, change: &Change) -> u16 {
    let existing = registry.get_identifier(id.as_str()).ok();
    match change {
        Change::Record { overwrite, .. } => {
            if *overwrite && existing.is_some() {
                ADD_HANDLE | DELETE_HANDLE
            } else {
                ADD_HANDLE
            }
        }
        Change::Values(values) => values.iter().fold(0, |need, v| {
            let replaces = existing.as_ref().and_then(|r| r.value(v.index)).is_some();
            need | match (is_admin(&v.kind), replaces) {
                (true, true) => MODIFY_ADMIN,
                (true, false) => ADD_ADMIN,
                (false, true) => MODIFY_VALUE,
                (false, false) => ADD_VALUE,
            }
        }),
        Change::Delete => DELETE_HANDLE,
        Change::Remove(indexes) => indexes.iter().fold(0, |need, i| {
            let admin = existing
                .as_ref()
                .and_then(|r| r.value(*i))
                .is_some_and(|v| is_admin(&v.kind));
            need | if admin { REMOVE_ADMIN } else { REMOVE_VALUE }
        }),
    }
}

async fn apply(
    web: &Web,
    peer: Peer,
    headers: &HeaderMap,
    id: Identifier,
    change: Change,
) -> Result<Response, ApiError> {
    let who = credential(web, headers).await?;
    if let Credential::Token(grant) = &who
        && grant.max_identifiers().is_some()
        && matches!(change, Change::Record { .. })
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::INSUFFICIENT_PERMISSIONS,
            "a token with an identifier quota registers through gRPC (idnode import, \
             CreateIdentifier), which counts its quota",
        ));
    }
    let origin = Origin::now(who.actor(), "http", peer.0.to_string());
    let registry = web.registry.clone();
    let created = matches!(change, Change::Record { .. });
    let handle = id.as_str().to_owned();
    let done = tokio::task::spawn_blocking(move || {
        idnode_registry::with_origin(origin, || run(&registry, &who, &id, change))
    })
    .await
    .map_err(|_| ApiError::internal())??;
    let status = if created && !done {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Body(json!({"responseCode": code::SUCCESS, "handle": handle})),
    )
        .into_response())
}

/// Checks and runs a change; returns whether a record was replaced (for
/// a PUT of a whole record).
fn run(
    registry: &Registry,
    who: &Credential,
    id: &Identifier,
    change: Change,
) -> Result<bool, ApiError> {
    let handle = id.as_str().to_owned();
    let existed = registry.get_identifier(&handle).is_ok();
    match who {
        Credential::Anonymous => Err(ApiError::unauthorized(
            "writing needs credentials: `Authorization: Bearer <token>` (a scoped token) or \
             HTTP Basic with `index:handle` and the secret key of a Handle administrator",
        )),
        Credential::Token(grant) => {
            let need = token_needs(registry, id, &change);
            grant.check_identifier(&handle, need).map_err(denied)?;
            match change {
                Change::Record { values, overwrite } => registry
                    .create_identifier(&handle, values, overwrite)
                    .map(|_| existed),
                Change::Values(values) => registry.put_values(&handle, values).map(|_| existed),
                Change::Delete => registry.delete_identifier(&handle).map(|()| existed),
                Change::Remove(indexes) => {
                    registry.remove_values(&handle, &indexes).map(|_| existed)
                }
            }
            .map_err(registry_error)
        }
        Credential::Handle(admin) => {
            let (req, overwrite) = match change {
                Change::Record { values, overwrite } => {
                    (AdminRequest::CreateHandle { handle, values }, overwrite)
                }
                Change::Values(values) => (AdminRequest::AddValue { handle, values }, true),
                Change::Delete => (AdminRequest::DeleteHandle { handle }, false),
                Change::Remove(indexes) => (AdminRequest::RemoveValue { handle, indexes }, false),
            };
            idnode_authority::admin::write_as(registry, admin, req, overwrite)
                .map(|()| existed)
                .map_err(|(c, message)| ApiError::code(c, message))
        }
    }
}

async fn list(
    State(web): State<Web>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = params(&query);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let prefix = get("prefix").ok_or_else(|| {
        ApiError::code(
            code::INVALID_HANDLE,
            "give the prefix to list: ?prefix=88.100.1",
        )
    })?;
    let prefix = prefix.strip_prefix("0.NA/").unwrap_or(&prefix).to_owned();
    let number = |name: &str, default: u32| -> Result<u32, ApiError> {
        match get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::code(
                    code::INVALID_VALUE,
                    format!("{name} `{v}`: expected a number"),
                )
            }),
        }
    };
    let page = number("page", 0)?;
    let page_size = number("pageSize", 100)?.clamp(1, 1000);
    let who = credential(&web, &headers).await?;
    match &who {
        Credential::Token(grant) => {
            let record = format!("0.NA/{prefix}");
            grant
                .check_identifier(&record, LIST_HANDLES)
                .map_err(denied)?;
        }
        Credential::Handle(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                code::INSUFFICIENT_PERMISSIONS,
                "listing over HTTP needs a token with list_handles (Handle administrators list \
                 over the Handle protocol, LIST_HANDLES)",
            ));
        }
        Credential::Anonymous => {
            return Err(ApiError::unauthorized(
                "listing needs a token with list_handles: `Authorization: Bearer <token>`",
            ));
        }
    }
    let registry = web.registry.clone();
    let listed = tokio::task::spawn_blocking(move || -> Result<Vec<String>, RegistryError> {
        let (skip, size) = (page as usize * page_size as usize, page_size as usize);
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let chunk = registry.list_identifiers(&prefix, 1000, &token)?;
            all.extend(chunk.identifiers);
            if all.len() >= skip + size || chunk.next_page_token.is_empty() {
                break;
            }
            token = chunk.next_page_token;
        }
        Ok(all.into_iter().skip(skip).take(size).collect())
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(registry_error)?;
    Ok(Body(json!({
        "responseCode": code::SUCCESS,
        "prefix": get("prefix").unwrap_or_default(),
        "page": page,
        "pageSize": page_size,
        "handles": listed,
    }))
    .into_response())
}
