//! Split keys as operators give them: `--initial-split-keys k1,k2,...`,
//! `--initial-split-keys-file PATH` and `tessera admin split --keys-file
//! PATH` (docs/design.md, "Bulk regions").
//!
//! A keys file holds one key per line, in ascending byte order, without
//! duplicates. A line is the key's bytes as they are (UTF-8 or not), up to
//! the newline; a `\r` before the newline is dropped (files written on
//! Windows). A line starting with `hex:` is the key in hexadecimal
//! (`hex:00ff` is the two bytes 0x00 0xff): the way to write a key holding a
//! newline, ending in `\r`, or itself starting with `hex:`. Blank lines are
//! ignored (the empty key starts the keyspace; it is no split point).

use std::path::Path;

/// The split keys of a keys file's text (see the module doc).
pub fn parse(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let key = match line.strip_prefix(b"hex:") {
            Some(hex) => decode_hex(hex).map_err(|e| format!("line {}: {e}", i + 1))?,
            None => line.to_vec(),
        };
        if key.is_empty() {
            return Err(format!("line {}: an empty key (hex: with no digits)", i + 1));
        }
        if let Some(prev) = keys.last() {
            if key <= *prev {
                return Err(format!("line {}: {}", i + 1, out_of_order(prev, &key)));
            }
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Reads a keys file (see the module doc).
pub fn read_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks that `keys` ascend strictly (sorted, no duplicates) and that none
/// is empty.
pub fn check(keys: &[Vec<u8>]) -> Result<(), String> {
    if keys.iter().any(Vec::is_empty) {
        return Err("an empty split key".into());
    }
    match keys.windows(2).find(|w| w[1] <= w[0]) {
        Some(w) => Err(out_of_order(&w[0], &w[1])),
        None => Ok(()),
    }
}

/// The initial split keys of `tessera serve`: those of
/// `--initial-split-keys` (empty ones dropped) or of
/// `--initial-split-keys-file`, checked (sorted, no duplicates); both
/// given is an error.
pub fn from_flags(listed: &[String], file: Option<&Path>) -> Result<Vec<Vec<u8>>, String> {
    let listed: Vec<Vec<u8>> = listed.iter().filter(|k| !k.is_empty()).map(|k| k.as_bytes().to_vec()).collect();
    let keys = match file {
        Some(_) if !listed.is_empty() => {
            return Err("give --initial-split-keys or --initial-split-keys-file, not both".into())
        }
        Some(path) => read_file(path)?,
        None => listed,
    };
    check(&keys).map_err(|e| format!("split keys: {e}"))?;
    Ok(keys)
}

fn out_of_order(prev: &[u8], key: &[u8]) -> String {
    let what = if key == prev { "a duplicate of" } else { "not after" };
    format!(
        "key {} is {what} the key before it, {} (split keys must be sorted, without duplicates)",
        show(key),
        show(prev)
    )
}

/// A key as an error message shows it: as text if it is printable UTF-8,
/// else in the `hex:` form.
pub fn show(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!("hex:{}", key.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

fn decode_hex(hex: &[u8]) -> Result<Vec<u8>, String> {
    if hex.len() % 2 != 0 {
        return Err("hex: needs an even number of digits".into());
    }
    let digit = |c: u8| (c as char).to_digit(16).ok_or_else(|| format!("{:?} is not a hex digit", c as char));
    hex.chunks(2).map(|p| Ok((digit(p[0])? * 16 + digit(p[1])?) as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_keys_blank_lines_ignored() {
        let keys = parse(b"hex:00ff0a\na\n\nb c\r\nhex:6865783a\n\xff\xfe\n").unwrap();
        let want: Vec<Vec<u8>> =
            vec![vec![0, 0xff, 0x0a], b"a".to_vec(), b"b c".to_vec(), b"hex:".to_vec(), vec![0xff, 0xfe]];
        assert_eq!(keys, want);
        assert_eq!(show(b"a b"), "\"a b\"");
        assert_eq!(show(&[0, 0xff]), "hex:00ff");
    }

    #[test]
    fn unsorted_duplicate_and_bad_hex_are_refused() {
        let e = parse(b"a\nc\nb\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("not after"), "{e}");
        let e = parse(b"a\nb\n\nb\n").unwrap_err();
        assert!(e.contains("line 4") && e.contains("duplicate"), "{e}");
        assert!(parse(b"hex:0g\n").unwrap_err().contains("line 1"));
        assert!(parse(b"hex:abc\n").unwrap_err().contains("even"));
        assert!(parse(b"hex:\n").unwrap_err().contains("empty"));
        assert!(check(&[b"b".to_vec(), b"a".to_vec()]).is_err());
        assert!(check(&[b"a".to_vec(), b"b".to_vec()]).is_ok());
    }

    #[test]
    fn flags_pick_one_source_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "k1\nk2\n").unwrap();
        assert_eq!(from_flags(&[], Some(&path)).unwrap(), vec![b"k1".to_vec(), b"k2".to_vec()]);
        assert!(from_flags(&["a".into()], Some(&path)).unwrap_err().contains("not both"));
        let listed = ["b".to_string(), "".into(), "m".into()];
        assert_eq!(from_flags(&listed, None).unwrap(), vec![b"b".to_vec(), b"m".to_vec()]);
        assert!(from_flags(&["m".into(), "b".into()], None).unwrap_err().contains("sorted"));
        let missing = dir.path().join("nope");
        assert!(from_flags(&[], Some(&missing)).unwrap_err().contains("nope"));
    }
}
