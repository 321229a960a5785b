//! The browser pages: the search page, an identifier's record page, and
//! the pages for an identifier that is not found, delegated elsewhere, or
//! malformed. Server-rendered (maud escapes every value), no JavaScript,
//! readable on a phone.

use crate::json::rfc3339;
use idnode_core::{Ttl, Value};
use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:46rem;\
padding:1rem;line-height:1.45;color:#1b1b1b}h1{font-size:1.35rem;word-break:break-all}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;\
border-bottom:1px solid #ddd;vertical-align:top}td.data{word-break:break-all}\
input[type=text]{width:100%;font-size:1.1rem;padding:.5rem;box-sizing:border-box}\
button{font-size:1.1rem;padding:.5rem 1rem;margin-top:.5rem}.muted{color:#666}\
code{word-break:break-all}figure.qr{margin:1rem 0}figure.qr svg{display:block;\
max-width:100%;height:auto}";

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · idnode" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (body)
                p.muted { a href="/" { "Look up another identifier" } }
            }
        }
    }
}

fn search_form(value: &str) -> Markup {
    html! {
        form action="/" method="get" {
            label for="id" { "Identifier" }
            input #id type="text" name="id" value=(value) placeholder="88.100.1/ABC-123"
                autocapitalize="off" autocorrect="off" spellcheck="false";
            button type="submit" { "Resolve" }
        }
    }
}

/// `/`: a search box.
pub fn home() -> Markup {
    page(
        "Resolve an identifier",
        html! {
            h1 { "Resolve an identifier" }
            p { "Type an identifier (prefix/suffix) to go to its page, or see its values." }
            (search_form(""))
        },
    )
}

fn ttl_text(ttl: Ttl) -> String {
    match ttl {
        Ttl::Relative(s) => format!("{s} s"),
        Ttl::Absolute(t) => format!("until {}", rfc3339(t)),
    }
}

fn data_text(v: &Value) -> Markup {
    let shown = crate::json::data(v);
    let format = shown["format"].as_str().unwrap_or("");
    let inner = &shown["value"];
    match (format, inner.as_str()) {
        ("string", Some(text)) if text.starts_with("https://") || text.starts_with("http://") => {
            html! { a href=(text) rel="nofollow noopener" { (text) } }
        }
        ("string", Some(text)) => html! { (text) },
        (_, Some(text)) => html! { code { (format) ": " (text) } },
        _ => html! { code { (format) ": " (inner.to_string()) } },
    }
}

/// An identifier's public values, its prefix, its QR code (when given: its
/// proxy URL and that URL's QR code as an SVG) and links.
pub fn record(handle: &str, values: &[Value], qr: Option<(&str, &str)>) -> Markup {
    let prefix = handle.split_once('/').map_or(handle, |(p, _)| p);
    page(
        handle,
        html! {
            h1 { (handle) }
            p.muted {
                "Prefix " a href=(format!("/0.NA/{}?noredirect", encode(prefix))) { (prefix) }
                " · " a href=(format!("/api/handles/{}", encode(handle))) { "JSON" }
            }
            @if values.is_empty() {
                p { "This identifier has no public values." }
            } @else {
                table {
                    thead { tr { th { "Index" } th { "Type" } th { "Data" } th { "TTL" } } }
                    tbody {
                        @for v in values {
                            tr {
                                td { (v.index) }
                                td { (v.kind) }
                                td.data { (data_text(v)) }
                                td { (ttl_text(v.ttl)) }
                            }
                        }
                    }
                }
            }
            @if let Some((url, svg)) = qr {
                figure.qr {
                    (PreEscaped(svg))
                    figcaption.muted { "QR code of " a href=(url) { (url) } }
                }
            }
        },
    )
}

/// 404: no such identifier here.
pub fn not_found(handle: &str) -> Markup {
    page(
        "Not found",
        html! {
            h1 { "Not found" }
            p { "No identifier " code { (handle) } " is registered here." }
            (search_form(handle))
        },
    )
}

/// The identifier's prefix is served by another site.
pub fn delegated(handle: &str, referral: &str, servers: &[(String, Vec<(String, u32)>)]) -> Markup {
    page(
        "Served elsewhere",
        html! {
            h1 { "Served by another site" }
            p { "The prefix of " code { (handle) } " is delegated; its record "
                code { (referral) } " names where it lives:" }
            @if servers.is_empty() {
                p.muted { "(no site information could be read)" }
            } @else {
                ul {
                    @for (address, interfaces) in servers {
                        li { (address)
                            @for (protocol, port) in interfaces { " · " (protocol) " " (port) }
                        }
                    }
                }
            }
        },
    )
}

/// 400: not `prefix/suffix`, or otherwise refused.
pub fn malformed(text: &str, reason: &str) -> Markup {
    page(
        "Not an identifier",
        html! {
            h1 { "Not an identifier" }
            p { code { (text) } " is not an identifier: " (reason) }
            p.muted { "Identifiers look like " code { "88.100.1/ABC-123" } ": a prefix, a slash, a suffix." }
            (search_form(text))
        },
    )
}

/// An error of the node itself.
pub fn failure(message: &str) -> Markup {
    page(
        "Error",
        html! { h1 { "The node could not answer" } p { (message) } },
    )
}

/// Percent-encodes an identifier for a path: every byte but unreserved
/// characters and `/`.
pub fn encode(handle: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const PATH: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'.')
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(handle, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let v = Value::new(1, "<b>", b"<script>alert(1)</script>".to_vec());
        let html = record("88.1/<x>", &[v], None).into_string();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("88.1/<x>"));
        let html = record("88.1/x", &[], Some(("http://h/88.1/<x>", "<svg></svg>"))).into_string();
        assert!(html.contains("<svg></svg>"));
        assert!(html.contains("http://h/88.1/&lt;x&gt;"));
    }

    #[test]
    fn identifiers_are_encoded_for_paths() {
        assert_eq!(encode("88.100.1/ÄBC 1?"), "88.100.1/%C3%84BC%201%3F");
    }
}
