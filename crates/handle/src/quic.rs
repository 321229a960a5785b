//! What both ends of Handle over QUIC must agree on: the ALPN name, and the
//! form of the certificate fingerprint a node prints and a client pins.

use sha2::Digest as _;
use std::fmt;

/// The ALPN protocol name of Handle over QUIC (idnode's extension; QUIC is
/// not part of the standard).
pub const ALPN: &[u8] = b"hdl";

/// SHA-256 of a certificate's DER encoding. Displayed as colon-separated
/// upper-case hex pairs (as `openssl x509 -fingerprint -sha256` prints it);
/// parsed from 64 hex digits, with or without `:` between pairs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        Self(sha2::Sha256::digest(der).into())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| *b != b':' && !b.is_ascii_whitespace())
            .collect();
        let bad = || format!("`{s}` is not a SHA-256 fingerprint (64 hex digits)");
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_printed_parses_back() {
        let f = Fingerprint::of(b"certificate");
        assert_eq!(f.to_string().parse::<Fingerprint>(), Ok(f));
        let plain: String = f.to_string().replace(':', "").to_lowercase();
        assert_eq!(plain.parse::<Fingerprint>(), Ok(f));
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }
}
