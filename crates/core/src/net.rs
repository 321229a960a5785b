//! IP networks (`10.0.0.0/8`, `fc00::/7`) as the configuration names them:
//! the exempt sources of rate limiting, the clients of the recursive role.

use std::net::IpAddr;

/// A network: its address and prefix length.
pub type Network = (IpAddr, u8);

/// Whether `ip` is in `net`. An IPv4-mapped IPv6 address is in the IPv4
/// networks of its IPv4 address.
pub fn contains((net, len): Network, ip: IpAddr) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & keep == u32::from(n) & keep
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & keep == u128::from(n) & keep
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| contains((net, len), IpAddr::V4(v4))),
        _ => false,
    }
}

/// Parses `IP/LEN`, or a bare IP (its own /32 or /128); the error says
/// what is wrong with `text`.
pub fn parse_network(text: &str) -> Result<Network, String> {
    let (ip, len) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: not an IP/prefix"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len.trim() {
        "" => max,
        l => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{text}`: bad prefix length"))?,
    };
    Ok((ip, len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = |s: &str| parse_network(s).unwrap();
        assert!(contains(net("10.0.0.0/8"), ip("10.1.2.3")));
        assert!(!contains(net("10.0.0.0/8"), ip("11.1.2.3")));
        assert!(contains(net("192.168.0.0/16"), ip("192.168.7.1")));
        assert!(contains(net("0.0.0.0/0"), ip("1.2.3.4")));
        assert!(contains(net("10.9.1.1"), ip("10.9.1.1")));
        assert!(!contains(net("10.9.1.1"), ip("10.9.1.2")));
        assert!(contains(net("fc00::/7"), ip("fd00::1")));
        assert!(!contains(net("fc00::/7"), ip("2001:db8::1")));
        assert!(contains(net("127.0.0.0/8"), ip("::ffff:127.0.0.1")));
        assert!(!contains(net("::1/128"), ip("127.0.0.1")));
        for bad in ["x/8", "10.0.0.0/33", "::/129", "10.0.0.0/-1", ""] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
    }
}
