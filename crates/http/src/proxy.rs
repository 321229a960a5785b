//! The browser proxy: `GET /88.100.1/ABC-123` answers 302 to the
//! identifier's URL (the lowest index of type URL, or the first location
//! of a `10320/loc` value; `?type=T` or `?index=N` pick another value),
//! `?noredirect` (or an identifier without a URL) shows its public values
//! as a page; `/` has a search box (`/?id=...` goes to the identifier).
//! Only `http` and `https` URLs are redirected to.

use crate::api::{Resolved, referral_for, resolve_public};
use crate::target::{BadTarget, ProxyTarget, proxy_target};
use crate::{Web, pages, qr};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use idnode_core::Value;

pub(crate) fn routes() -> Router<Web> {
    Router::new().fallback(proxy)
}

/// The first `href` of a `10320/loc` location list
/// (`<locations><location href="..."/></locations>`).
fn first_location(xml: &str) -> Option<String> {
    let at = xml.match_indices("<location").find_map(|(at, _)| {
        let next = xml.as_bytes().get(at + "<location".len())?;
        (next.is_ascii_whitespace() || *next == b'/' || *next == b'>').then_some(at)
    })?;
    let rest = &xml[at..];
    let end = rest.find('>')?;
    let tag = &rest[..end];
    let h = tag.find("href")?;
    let after = tag[h + 4..].trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    let close = value.find(quote)?;
    Some(
        value[..close]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

fn web_url(text: &str) -> Option<String> {
    let t = text.trim();
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !t.chars().any(|c| c.is_control() || c == ' ');
    ok.then(|| t.to_owned())
}

/// Where an identifier's values send a browser.
fn target(values: &[Value], index: Option<u32>, kind: Option<&str>) -> Option<String> {
    let text = |v: &Value| std::str::from_utf8(&v.data).ok().map(str::to_owned);
    if let Some(i) = index {
        return values
            .iter()
            .find(|v| v.index == i)
            .and_then(text)
            .and_then(|t| web_url(&t));
    }
    if let Some(k) = kind {
        let mut of: Vec<&Value> = values
            .iter()
            .filter(|v| v.kind.eq_ignore_ascii_case(k))
            .collect();
        of.sort_by_key(|v| v.index);
        return of.into_iter().filter_map(text).find_map(|t| {
            if k == "10320/loc" {
                first_location(&t).and_then(|u| web_url(&u))
            } else {
                web_url(&t)
            }
        });
    }
    let mut locs: Vec<&Value> = values.iter().filter(|v| v.kind == "10320/loc").collect();
    locs.sort_by_key(|v| v.index);
    if let Some(url) = locs
        .into_iter()
        .filter_map(text)
        .find_map(|t| first_location(&t).and_then(|u| web_url(&u)))
    {
        return Some(url);
    }
    let mut urls: Vec<&Value> = values
        .iter()
        .filter(|v| v.kind.eq_ignore_ascii_case("URL"))
        .collect();
    urls.sort_by_key(|v| v.index);
    urls.into_iter().filter_map(text).find_map(|t| web_url(&t))
}

/// A URL as a `Location` header may carry it: bytes outside printable
/// ASCII percent-encoded (the rest, `%` included, as they are).
fn location(url: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const OUTSIDE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>');
    utf8_percent_encode(url, OUTSIDE).to_string()
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// The scheme and host the request came to, as the base of proxy URLs:
/// `http://` and the URI's authority (HTTP/2) or the `Host` header, when it
/// is a plain `host[:port]`.
fn request_base(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let host = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then(|| format!("http://{host}"))
}

/// The proxy URL of `handle` and its QR code, for the record page; none
/// when the base is unknown or the URL is too long for a QR code.
fn record_qr(web: &Web, uri: &Uri, headers: &HeaderMap, handle: &str) -> Option<(String, String)> {
    let base = match &web.base_url {
        Some(base) => base.to_string(),
        None => request_base(uri, headers)?,
    };
    let url = qr::proxy_url(&base, handle);
    match qr::svg(&url, PAGE_QR_SIZE) {
        Ok(svg) => Some((url, svg)),
        Err(e) => {
            tracing::debug!(error = %e, %url, "no QR code on the record page");
            None
        }
    }
}

/// The width of the record page's QR code, in pixels at least.
const PAGE_QR_SIZE: u32 = 200;

async fn proxy(
    State(web): State<Web>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "the proxy answers GET").into_response();
    }
    let (id, noredirect, index, kind) = match proxy_target(uri.path(), query.as_deref()) {
        Ok(ProxyTarget::Home) => return html(StatusCode::OK, pages::home()),
        Ok(ProxyTarget::Search(id)) => {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/{}", pages::encode(&id)))],
            )
                .into_response();
        }
        Ok(ProxyTarget::Favicon) => return StatusCode::NOT_FOUND.into_response(),
        Ok(ProxyTarget::Record {
            identifier,
            noredirect,
            index,
            kind,
        }) => (identifier, noredirect, index, kind),
        Err(BadTarget::NotUtf8(raw)) => {
            return html(StatusCode::BAD_REQUEST, pages::malformed(&raw, "not UTF-8"));
        }
        Err(BadTarget::NotAnIdentifier { text, why }) => {
            return html(StatusCode::BAD_REQUEST, pages::malformed(&text, &why));
        }
    };
    // On the async worker, as the UDP workers answer: a public resolution
    // is a response-cache hit or a point read of the local store, shorter
    // than a hand-off to the blocking pool would be.
    let started = std::time::Instant::now();
    let resolved = {
        let handle = id.as_str();
        let resolved = resolve_public(&web, handle, &[], &[]);
        web.counts
            .resolutions
            .count(started, matches!(resolved, Resolved::Values { .. }));
        let referral = match &resolved {
            Resolved::Refused { code, .. } if *code == idnode_handle::code::SERVER_NOT_RESP => {
                referral_for(&web, handle)
            }
            _ => None,
        };
        (resolved, referral)
    };
    match resolved {
        (Resolved::Values { handle, values }, _) => {
            if !noredirect && let Some(url) = target(&values, index, kind.as_deref()) {
                return (StatusCode::FOUND, [(header::LOCATION, location(&url))]).into_response();
            }
            let qr = record_qr(&web, &uri, &headers, &handle);
            let qr = qr.as_ref().map(|(url, svg)| (url.as_str(), svg.as_str()));
            html(StatusCode::OK, pages::record(&handle, &values, qr))
        }
        (Resolved::Referral { handle, values }, _) | (_, Some((handle, values))) => html(
            StatusCode::OK,
            pages::delegated(id.as_str(), &handle, &servers(&values)),
        ),
        (Resolved::Refused { code, .. }, None) if code == idnode_handle::code::HANDLE_NOT_FOUND => {
            html(StatusCode::NOT_FOUND, pages::not_found(id.as_str()))
        }
        (Resolved::Refused { code, .. }, None) if code == idnode_handle::code::SERVER_NOT_RESP => {
            html(StatusCode::NOT_FOUND, pages::not_found(id.as_str()))
        }
        (Resolved::Refused { code, message }, None) => html(
            crate::api::status_of(code),
            pages::failure(&format!("response code {code}: {message}")),
        ),
    }
}

/// The servers named by HS_SITE values: address, then (protocol, port).
fn servers(values: &[Value]) -> Vec<(String, Vec<(String, u32)>)> {
    values
        .iter()
        .filter(|v| v.kind.starts_with("HS_SITE"))
        .filter_map(|v| idnode_handle::site::SiteInfo::decode(&v.data).ok())
        .flat_map(|site| site.servers)
        .map(|s| {
            let interfaces = s
                .interfaces
                .iter()
                .map(|i| (format!("{:?}", i.protocol), i.port))
                .collect();
            (s.address.to_string(), interfaces)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_base() {
        let mut headers = HeaderMap::new();
        let path: Uri = "/88.1/a".parse().unwrap();
        assert_eq!(request_base(&path, &headers), None);
        headers.insert(header::HOST, "id.example.com:8000".parse().unwrap());
        assert_eq!(
            request_base(&path, &headers).as_deref(),
            Some("http://id.example.com:8000")
        );
        let h2: Uri = "http://[::1]:9/88.1/a".parse().unwrap();
        assert_eq!(
            request_base(&h2, &headers).as_deref(),
            Some("http://[::1]:9")
        );
        headers.insert(header::HOST, "evil/path?x".parse().unwrap());
        assert_eq!(request_base(&path, &headers), None);
    }

    #[test]
    fn locations_and_urls() {
        assert_eq!(
            first_location(
                r#"<locations><location id="0" href="https://a.example/x?a=1&amp;b=2" /></locations>"#
            ),
            Some("https://a.example/x?a=1&b=2".into())
        );
        assert_eq!(first_location("<locations/>"), None);
        let values = vec![
            Value::new(3, "URL", b"https://three".to_vec()),
            Value::new(2, "URL", b"javascript:alert(1)".to_vec()),
            Value::new(5, "EMAIL", b"x@y".to_vec()),
        ];
        assert_eq!(target(&values, None, None), Some("https://three".into()));
        assert_eq!(target(&values, Some(2), None), None);
        assert_eq!(target(&values, Some(3), None), Some("https://three".into()));
        assert_eq!(target(&values, None, Some("EMAIL")), None);
        let mut with_loc = values.clone();
        with_loc.push(Value::new(
            9,
            "10320/loc",
            br#"<locations><location href="http://loc.example/" /></locations>"#.to_vec(),
        ));
        assert_eq!(
            target(&with_loc, None, None),
            Some("http://loc.example/".into())
        );
    }
}
