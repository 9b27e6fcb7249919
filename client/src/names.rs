//! Node names as Curator and kazoo make them: protected prefixes and sequence suffixes.
//!
//! A sequential node's name ends with the parent's child version formatted as `%010d`, as
//! ZooKeeper's server does: ten characters, zero-padded, with a sign for negative values (the
//! counter is an `i32` that wraps after 2³¹ creations: `-000000005`, and `-2147483648` at the
//! wrap, eleven characters). A protected node's name starts with `_c_<uuid>-` (Curator's
//! `ProtectedUtils`), so recipes sort children by the sequence, never by the whole name.

/// The prefix of every protected name.
pub const PROTECTED_PREFIX: &str = "_c_";

/// Characters of a UUID in its text form.
const UUID_LEN: usize = 36;

/// The name prefix for a protected create with this id: `_c_<id>-`.
pub fn protected_prefix(id: &str) -> String {
    format!("{PROTECTED_PREFIX}{id}-")
}

/// The protected id (the UUID) of a protected name, or `None` for another name.
pub fn protected_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PROTECTED_PREFIX)?;
    let id = rest.get(..UUID_LEN)?;
    (rest.as_bytes().get(UUID_LEN) == Some(&b'-')
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
    .then_some(id)
}

/// The name without its protected prefix (the name itself when it has none), as Curator's
/// `ZKPaths.getNodeFromPath` plus `ProtectedUtils.normalize` give it.
pub fn strip_protected(name: &str) -> &str {
    match protected_id(name) {
        Some(_) => &name[PROTECTED_PREFIX.len() + UUID_LEN + 1..],
        None => name,
    }
}

/// The sequence number a sequential node's name ends with, or `None` when it does not end
/// with one. The wrapped value `-2147483648` is read too when it follows a `-`.
pub fn sequence_number(name: &str) -> Option<i32> {
    let b = name.as_bytes();
    // Eleven characters only for values below -999999999, which follow a separator: in
    // `lock--2147483648` the first `-` is the name's, the second the sign.
    if b.len() >= 12 && b[b.len() - 11] == b'-' && b[b.len() - 12] == b'-' {
        if let Some(n) = name[b.len() - 11..]
            .parse::<i32>()
            .ok()
            .filter(|n| *n < -999_999_999)
        {
            return Some(n);
        }
    }
    let tail = name.get(name.len().checked_sub(10)?..)?;
    let digits = tail.strip_prefix('-').unwrap_or(tail);
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// Sorts sequential node names by their sequence number (names without one go last, by
/// name), as Curator's and kazoo's recipes order lock and election candidates.
pub fn sort_by_sequence(names: &mut [String]) {
    let key = |n: &str| {
        let seq = sequence_number(n);
        (seq.is_none(), seq)
    };
    names.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.cmp(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn protected_names_round_trip() {
        let name = format!("{}lock-0000000007", protected_prefix(ID));
        assert_eq!(name, format!("_c_{ID}-lock-0000000007"));
        assert_eq!(protected_id(&name), Some(ID));
        assert_eq!(strip_protected(&name), "lock-0000000007");
        assert_eq!(strip_protected("lock-0000000007"), "lock-0000000007");
        assert_eq!(protected_id("_c_short-lock"), None);
        assert_eq!(protected_id("lock-0000000001"), None);
    }

    #[test]
    fn sequences_parse_like_the_server_writes_them() {
        assert_eq!(sequence_number("lock-0000000007"), Some(7));
        assert_eq!(sequence_number("0000000000"), Some(0));
        assert_eq!(sequence_number("lock-2147483647"), Some(i32::MAX));
        assert_eq!(sequence_number("lock--000000005"), Some(-5));
        assert_eq!(sequence_number("lock--2147483648"), Some(i32::MIN));
        assert_eq!(
            sequence_number(&format!("_c_{ID}-latch-0000000012")),
            Some(12)
        );
        assert_eq!(sequence_number("lock"), None);
        assert_eq!(sequence_number("lock-00000x0001"), None);
        // A 1,000,000,000 after a plain separator is positive, not the wrapped negative.
        assert_eq!(sequence_number("lock-1000000000"), Some(1_000_000_000));
    }

    #[test]
    fn sorting_is_by_sequence_not_by_name() {
        // The protected prefixes sort the other way round lexicographically.
        let mut names = vec![
            "_c_ffffffff-d9cb-469f-a165-70867728950e-lock-0000000001".to_owned(),
            "plain".to_owned(),
            "_c_00000000-d9cb-469f-a165-70867728950e-lock-0000000003".to_owned(),
            "lock-0000000002".to_owned(),
        ];
        sort_by_sequence(&mut names);
        let seqs: Vec<_> = names.iter().map(|n| sequence_number(n)).collect();
        assert_eq!(seqs, [Some(1), Some(2), Some(3), None]);
    }
}
