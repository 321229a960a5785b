//! What a request asks for, read from its target (path and query) without
//! I/O: the browser proxy's identifier and options, and the REST API's
//! query parameters. Every input comes from the network: nothing here
//! panics, and the number of parameters read is bounded (the fuzz target
//! `http_target` feeds it arbitrary targets).

use idnode_core::Identifier;

/// Query parameters the REST API reads at most.
pub const MAX_API_PARAMS: usize = 256;
/// Query parameters the browser proxy reads at most.
pub const MAX_PROXY_PARAMS: usize = 64;

/// The `key=value` pairs of a query string, percent- and `+`-decoded
/// (invalid UTF-8 replaced), repeated keys kept in order.
pub fn url_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

/// The first [`MAX_API_PARAMS`] query parameters.
pub fn params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| url_pairs(q).take(MAX_API_PARAMS).collect())
        .unwrap_or_default()
}

/// A yes/no parameter (case-insensitive name): absent is `None`; present,
/// anything but `false`, `0` and `no` is yes.
pub fn flag(params: &[(String, String)], name: &str) -> Option<bool> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| !matches!(v.as_str(), "false" | "0" | "no"))
}

/// Every `index` parameter, each a number or a comma-separated list; an
/// error names the first that is no number.
pub fn indexes(params: &[(String, String)]) -> Result<Vec<u32>, String> {
    params
        .iter()
        .filter(|(k, _)| k == "index")
        .flat_map(|(_, v)| v.split(','))
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("index `{v}`: expected a number"))
        })
        .collect()
}

/// What a request to the browser proxy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyTarget {
    /// `/`: the home page.
    Home,
    /// `/?id=...`: what was typed into the home page's form.
    Search(String),
    /// `/favicon.ico`: there is none.
    Favicon,
    /// `/<identifier>`: its URL, or its page with `?noredirect`.
    Record {
        identifier: Identifier,
        noredirect: bool,
        /// `?index=N`: redirect to this value.
        index: Option<u32>,
        /// `?type=T`: redirect to the first value of this type.
        kind: Option<String>,
    },
}

/// Why a proxy target names no identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadTarget {
    /// The path, percent-decoded, is not UTF-8 (the raw path).
    NotUtf8(String),
    /// The decoded path is no identifier: the text, and why.
    NotAnIdentifier { text: String, why: String },
}

/// Reads a proxy request's target: `path` as the URI has it (leading `/`
/// included), `query` without its `?`.
pub fn proxy_target(path: &str, query: Option<&str>) -> Result<ProxyTarget, BadTarget> {
    let params: Vec<(String, String)> = query
        .map(|q| url_pairs(q).take(MAX_PROXY_PARAMS).collect())
        .unwrap_or_default();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let raw = path.trim_start_matches('/');
    if raw.is_empty() {
        return Ok(match get("id").map(|s| s.trim().to_owned()) {
            Some(id) if !id.is_empty() => ProxyTarget::Search(id),
            _ => ProxyTarget::Home,
        });
    }
    if raw == "favicon.ico" {
        return Ok(ProxyTarget::Favicon);
    }
    let text = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| BadTarget::NotUtf8(raw.to_owned()))?
        .into_owned();
    let identifier = Identifier::parse(&text).map_err(|e| BadTarget::NotAnIdentifier {
        why: e.to_string(),
        text,
    })?;
    Ok(ProxyTarget::Record {
        identifier,
        noredirect: params.iter().any(|(k, _)| k == "noredirect"),
        index: get("index").and_then(|i| i.parse().ok()),
        kind: get("type"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxy_targets() {
        assert_eq!(proxy_target("/", None), Ok(ProxyTarget::Home));
        assert_eq!(proxy_target("/", Some("id=+")), Ok(ProxyTarget::Home));
        assert_eq!(
            proxy_target("/", Some("id=88.100.1%2FA")),
            Ok(ProxyTarget::Search("88.100.1/A".into()))
        );
        assert_eq!(proxy_target("/favicon.ico", None), Ok(ProxyTarget::Favicon));
        let Ok(ProxyTarget::Record {
            identifier,
            noredirect,
            index,
            kind,
        }) = proxy_target("/88.100.1/A%20%C3%A4", Some("noredirect&index=2&type=URL"))
        else {
            panic!("no record");
        };
        assert_eq!(identifier.as_str(), "88.100.1/A ä");
        assert!(noredirect);
        assert_eq!((index, kind.as_deref()), (Some(2), Some("URL")));
        assert_eq!(
            proxy_target("/88.100.1/%FF", None),
            Err(BadTarget::NotUtf8("88.100.1/%FF".into()))
        );
        assert!(matches!(
            proxy_target("/no-slash", None),
            Err(BadTarget::NotAnIdentifier { .. })
        ));
    }

    #[test]
    fn api_parameters() {
        let p = params(Some("index=1,2&index=%203&type=URL&publicOnly=no&x"));
        assert_eq!(indexes(&p), Ok(vec![1, 2, 3]));
        assert_eq!(flag(&p, "publiconly"), Some(false));
        assert_eq!(flag(&p, "x"), Some(true));
        assert_eq!(flag(&p, "overwrite"), None);
        assert!(
            indexes(&params(Some("index=1,x")))
                .unwrap_err()
                .contains("`x`")
        );
        let many = "a=1&".repeat(1000);
        assert_eq!(params(Some(&many)).len(), MAX_API_PARAMS);
    }
}
