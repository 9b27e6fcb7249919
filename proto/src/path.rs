//! Path rules of `PathUtils.validatePath`.

use thiserror::Error;

/// Why a path is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty path.
    #[error("path must not be empty")]
    Empty,
    /// Does not start with '/'.
    #[error("path must start with /")]
    NoLeadingSlash,
    /// Ends with '/'.
    #[error("path must not end with /")]
    TrailingSlash,
    /// Has an empty segment.
    #[error("empty node name")]
    EmptySegment,
    /// Has a `.` or `..` segment.
    #[error("relative paths not allowed")]
    Relative,
    /// Has a disallowed character.
    #[error("invalid character \\u{0:04x}")]
    BadChar(u32),
}

/// Validates a path as ZooKeeper does (on UTF-16 code units, so any character outside the Basic
/// Multilingual Plane is rejected: its surrogate halves are in the banned range).
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathError::NoLeadingSlash);
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    for unit in path.encode_utf16() {
        let c = u32::from(unit);
        let bad = c == 0
            || (0x01..=0x1f).contains(&c)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || (0xfff0..=0xffff).contains(&c);
        if bad {
            return Err(PathError::BadChar(c));
        }
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::Relative),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a path (`/` for top-level nodes and for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a path.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(validate_path("/").is_ok());
        assert!(validate_path("/a/.b").is_ok());
        assert!(validate_path("/zookeeper/mine").is_ok());
        assert_eq!(validate_path(""), Err(PathError::Empty));
        assert_eq!(validate_path("a"), Err(PathError::NoLeadingSlash));
        assert_eq!(validate_path("/a/"), Err(PathError::TrailingSlash));
        assert_eq!(validate_path("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(validate_path("/a/../b"), Err(PathError::Relative));
        assert_eq!(validate_path("/a\u{1}b"), Err(PathError::BadChar(1)));
        assert!(validate_path("/\u{1F600}").is_err());
        assert!(validate_path("/caf\u{e9}").is_ok());
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/"), "/");
        assert_eq!(name("/a/b"), "b");
    }
}
