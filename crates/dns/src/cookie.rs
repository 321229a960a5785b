//! DNS Cookies (RFC 7873) with server cookies in the interoperable form of
//! RFC 9018, and the cap on what an unverified UDP source can draw.
//!
//! A UDP question can come from a spoofed address; answering it with many
//! more bytes than it had makes the node an amplifier in a reflection
//! attack. So an answer to a source that has not shown it receives what is
//! sent to it is at most `amplification` times the question's size, or it
//! is sent truncated (TC: the client asks again over TCP). A source shows
//! it receives by sending back a server cookie we gave it (valid for an
//! hour, bound to its address) or, as the listener records, by a TCP
//! connection.
//!
//! Server cookie (16 octets): version 1, three reserved zero octets, the
//! time it was made (unix seconds, 32 bits), and SipHash-2-4 over the
//! client cookie, those 8 octets and the client's address, keyed with the
//! node's secret.

use crate::message;
use crate::query::{Cookie, HEADER_LEN, OPTION_COOKIE, Query};
use std::hash::Hasher;
use std::net::IpAddr;

/// Length of the server cookies this node makes.
pub const SERVER_COOKIE_LEN: usize = 16;
/// The COOKIE option as we add it to an answer: code, length, client
/// cookie, server cookie.
const OPTION_LEN: usize = 4 + 8 + SERVER_COOKIE_LEN;
/// A server cookie is honoured this long after it was made (RFC 9018
/// section 4.3) ...
const VALID_FOR_SECS: u32 = 3600;
/// ... and this far in the future (clock differences between the servers
/// of a site sharing a secret).
const FUTURE_SLACK_SECS: u32 = 300;
/// An answer to a query with a valid server cookie older than this gets a
/// fresh one.
const REFRESH_AFTER_SECS: u32 = 1800;

/// The key of the server cookies: random per node start.
#[derive(Clone)]
pub struct CookieSecret([u8; 16]);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

impl CookieSecret {
    pub fn new(key: [u8; 16]) -> Self {
        Self(key)
    }

    fn hash(&self, client: &[u8; 8], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
        let mut h = siphasher::sip::SipHasher24::new_with_key(&self.0);
        h.write(client);
        h.write(head);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.finish().to_be_bytes()
    }

    /// The server cookie for `client` at `ip`, made at `now`.
    pub fn server_cookie(&self, client: &[u8; 8], ip: IpAddr, now: u32) -> [u8; 16] {
        let mut head = [0u8; 8];
        head[0] = 1;
        head[4..].copy_from_slice(&now.to_be_bytes());
        let mut cookie = [0u8; 16];
        cookie[..8].copy_from_slice(&head);
        cookie[8..].copy_from_slice(&self.hash(client, &head, ip));
        cookie
    }

    /// Whether `cookie` carries a server cookie we made for its client
    /// cookie and `ip`, still valid at `now`; `Some(made)` when it does.
    pub fn check(&self, cookie: &Cookie<'_>, ip: IpAddr, now: u32) -> Option<u32> {
        let server = <&[u8; SERVER_COOKIE_LEN]>::try_from(cookie.server).ok()?;
        let head = <[u8; 8]>::try_from(&server[..8]).ok()?;
        if head[..4] != [1, 0, 0, 0] {
            return None;
        }
        let made = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let age = now.wrapping_sub(made);
        let fresh = age <= VALID_FOR_SECS || made.wrapping_sub(now) <= FUTURE_SLACK_SECS;
        (fresh && self.hash(&cookie.client, &head, ip) == server[8..]).then_some(made)
    }
}

/// Who sent a UDP query, for [`finish_udp`].
#[derive(Debug, Clone, Copy)]
pub struct UdpSource<'a> {
    pub ip: IpAddr,
    /// Shown to receive already (a TCP connection, or exempt).
    pub verified: bool,
    pub secret: &'a CookieSecret,
    /// Unix seconds.
    pub now: u32,
    /// Largest answer to an unverified source, in multiples of the
    /// question's size; 0: no cap.
    pub amplification: u32,
}

/// What [`finish_udp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Finished {
    /// The answer was cut to its truncated form by the amplification cap.
    pub capped: bool,
    /// The query carried a valid server cookie of ours.
    pub cookie_valid: bool,
}

/// Finishes the UDP answer in `out` to `message`: adds a server cookie
/// when the query had a COOKIE option, and truncates an answer larger
/// than the amplification cap allows for an unverified source. `max_udp`
/// is the node's largest UDP payload. Never panics.
pub fn finish_udp(
    message: &[u8],
    out: &mut Vec<u8>,
    source: &UdpSource<'_>,
    max_udp: u16,
) -> Finished {
    let mut done = Finished::default();
    let has_additional = message.get(10..12).is_some_and(|c| c != [0, 0]);
    let cap = (source.amplification as usize).saturating_mul(message.len());
    let over = !source.verified && source.amplification > 0 && out.len() > cap;
    if !has_additional && !over {
        return done;
    }
    let Ok(query) = Query::parse(message) else {
        return done;
    };
    let mut fresh = None;
    if let Some(cookie) = query.cookie {
        let made = source.secret.check(&cookie, source.ip, source.now);
        done.cookie_valid = made.is_some();
        // A valid cookie young enough is sent back as it came (RFC 9018
        // section 4.3); otherwise a new one.
        fresh = Some(match (made, <[u8; 16]>::try_from(cookie.server)) {
            (Some(made), Ok(same)) if source.now.wrapping_sub(made) < REFRESH_AFTER_SECS => same,
            _ => source
                .secret
                .server_cookie(&cookie.client, source.ip, source.now),
        });
    }
    let extra = if fresh.is_some() { OPTION_LEN } else { 0 };
    let verified = source.verified || done.cookie_valid;
    let limit = query.udp_limit(max_udp);
    if (!verified && source.amplification > 0 && out.len() + extra > cap)
        || out.len() + extra > limit
    {
        message::truncate(out, &query, max_udp);
        done.capped = !verified;
    }
    if let (Some(server), Some(cookie)) = (fresh, query.cookie) {
        append_cookie(out, &cookie.client, &server);
    }
    done
}

/// Adds a COOKIE option to the OPT record that ends `out` (an answer as
/// this crate writes it: the OPT record last, without options). False
/// when `out` does not end so.
pub fn append_cookie(
    out: &mut Vec<u8>,
    client: &[u8; 8],
    server: &[u8; SERVER_COOKIE_LEN],
) -> bool {
    let len = out.len();
    let arcount = out
        .get(10..12)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    let Some(opt) = len.checked_sub(11).filter(|&at| at >= HEADER_LEN) else {
        return false;
    };
    if arcount == 0 || out[opt] != 0 || out[opt + 1..opt + 3] != [0, 41] || out[len - 2..] != [0, 0]
    {
        return false;
    }
    out[len - 2..].copy_from_slice(&(OPTION_LEN as u16).to_be_bytes());
    out.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
    out.extend_from_slice(&((8 + SERVER_COOKIE_LEN) as u16).to_be_bytes());
    out.extend_from_slice(client);
    out.extend_from_slice(server);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn cookie<'a>(client: [u8; 8], server: &'a [u8]) -> Cookie<'a> {
        Cookie { client, server }
    }

    #[test]
    fn server_cookies_check_their_client_address_and_age() {
        let secret = CookieSecret::new([7; 16]);
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let made = secret.server_cookie(&client, IP, 1_000_000);
        assert_eq!(made[..4], [1, 0, 0, 0]);
        assert_eq!(
            secret.check(&cookie(client, &made), IP, 1_000_010),
            Some(1_000_000)
        );
        // Another address, another client cookie, another secret, too old.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));
        assert_eq!(secret.check(&cookie(client, &made), other, 1_000_010), None);
        assert_eq!(secret.check(&cookie([9; 8], &made), IP, 1_000_010), None);
        assert_eq!(
            CookieSecret::new([8; 16]).check(&cookie(client, &made), IP, 1_000_010),
            None
        );
        assert_eq!(
            secret.check(&cookie(client, &made), IP, 1_000_000 + 3601),
            None
        );
        // A cookie from slightly ahead (another server's clock) is taken.
        assert!(
            secret
                .check(&cookie(client, &made), IP, 1_000_000 - 60)
                .is_some()
        );
        // Any changed octet breaks it; so does a short one.
        let mut bent = made;
        bent[15] ^= 1;
        assert_eq!(secret.check(&cookie(client, &bent), IP, 1_000_010), None);
        assert_eq!(
            secret.check(&cookie(client, &made[..8]), IP, 1_000_010),
            None
        );
    }
}
