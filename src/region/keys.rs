//! MVCC key encoding: `escape(user_key) ++ (u64::MAX - revision)` big-endian.
//!
//! `escape` writes every `0x00` byte as `0x00 0xFF` and ends the key with
//! `0x00 0x01`. That keeps byte order between user keys (a key sorts before
//! every longer key it prefixes) and makes the user-key part prefix-free, so
//! the revision suffix never changes the order of two different keys. The
//! revision is inverted so that a forward scan meets a key's newest version
//! first: seeking to `encode(key, rev)` lands on the newest version `<= rev`.

/// The bytes that end an escaped user key.
const TERMINATOR: [u8; 2] = [0x00, 0x01];
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

/// Escapes `user_key` into `out` (without a revision suffix).
pub fn escape_into(user_key: &[u8], out: &mut Vec<u8>) {
    out.reserve(user_key.len() + 10);
    for &b in user_key {
        if b == 0 {
            out.extend_from_slice(&ESCAPED_ZERO);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

/// The lower bound of all versions of every key `>= user_key`.
pub fn key_prefix(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + 2);
    escape_into(user_key, &mut out);
    out
}

/// The storage key of `user_key` at `revision`.
pub fn encode(user_key: &[u8], revision: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + 10);
    escape_into(user_key, &mut out);
    out.extend_from_slice(&(u64::MAX - revision).to_be_bytes());
    out
}

/// Splits a storage key into (user key, revision). `None` if malformed.
pub fn decode(encoded: &[u8]) -> Option<(Vec<u8>, u64)> {
    if encoded.len() < 10 {
        return None;
    }
    let (body, rev) = encoded.split_at(encoded.len() - 8);
    let revision = u64::MAX - u64::from_be_bytes(rev.try_into().ok()?);
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != 0 {
            key.push(b);
            i += 1;
            continue;
        }
        match body.get(i + 1) {
            Some(0xFF) => {
                key.push(0);
                i += 2;
            }
            Some(0x01) if i + 2 == body.len() => return Some((key, revision)),
            _ => return None,
        }
    }
    None
}

/// The length of the escaped user-key part of `encoded` (everything but the
/// revision suffix), used to tell whether two storage keys share a user key.
pub fn user_part(encoded: &[u8]) -> &[u8] {
    &encoded[..encoded.len().saturating_sub(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for key in [&b"a"[..], b"", b"\0", b"a\0b", b"\0\0\xff", b"\xff\xff"] {
            for rev in [0, 1, 42, u64::MAX] {
                assert_eq!(decode(&encode(key, rev)), Some((key.to_vec(), rev)));
            }
        }
    }

    #[test]
    fn orders_by_key_then_newest_revision_first() {
        let mut keys: Vec<(&[u8], u64)> =
            vec![(b"a", 1), (b"a", 7), (b"a\0", 3), (b"a\x01", 2), (b"ab", 5), (b"b", 9), (b"", 4), (b"\0", 4)];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|(k, r)| encode(k, *r)).collect();
        encoded.sort();
        keys.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        let decoded: Vec<(Vec<u8>, u64)> = encoded.iter().map(|e| decode(e).unwrap()).collect();
        let expected: Vec<(Vec<u8>, u64)> = keys.iter().map(|(k, r)| (k.to_vec(), *r)).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn prefix_bounds_every_version() {
        assert!(key_prefix(b"a") <= encode(b"a", u64::MAX));
        assert!(encode(b"a", 0) < key_prefix(b"a\0"));
        assert!(encode(b"a", 0) < key_prefix(b"b"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode(b"short"), None);
        let mut bad = b"a\0\x02".to_vec();
        bad.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&bad), None);
    }
}
