//! Chroot: a path prefix the client adds to every outgoing path and strips from every returned
//! path. The server never sees it.

use std::sync::Arc;

use rookery_proto::path::validate_path;

use crate::error::{Error, Result};

/// A validated chroot, or none. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chroot(Option<Arc<str>>);

impl Chroot {
    /// The chroot for `path` (`None`, empty or `/` mean none).
    pub(crate) fn new(path: Option<&str>) -> Result<Self> {
        match path {
            None | Some("") | Some("/") => Ok(Chroot(None)),
            Some(p) => {
                validate_path(p)
                    .map_err(|e| Error::InvalidArgument(format!("chroot {p:?}: {e}")))?;
                Ok(Chroot(Some(Arc::from(p))))
            }
        }
    }

    /// The chroot path, if there is one.
    pub(crate) fn path(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The server path for a client path (which must start with `/`).
    pub(crate) fn apply(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_owned(),
            Some(root) if path == "/" => root.to_string(),
            Some(root) => format!("{root}{path}"),
        }
    }

    /// The client path for a server path. A path outside the chroot is returned unchanged.
    pub(crate) fn strip(&self, path: &str) -> String {
        let Some(root) = &self.0 else {
            return path.to_owned();
        };
        match path.strip_prefix(&**root) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => path.to_owned(),
        }
    }
}

/// Checks a client path. A sequential create may end in `/` (the server appends the suffix).
pub(crate) fn check_path(path: &str, sequential: bool) -> Result<()> {
    let result = if sequential && path.ends_with('/') {
        validate_path(&format!("{path}0"))
    } else {
        validate_path(path)
    };
    result.map_err(|e| Error::InvalidArgument(format!("path {path:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_and_strip() {
        let c = Chroot::new(Some("/app")).unwrap();
        assert_eq!(c.apply("/"), "/app");
        assert_eq!(c.apply("/x/y"), "/app/x/y");
        assert_eq!(c.strip("/app"), "/");
        assert_eq!(c.strip("/app/x"), "/x");
        assert_eq!(c.strip("/apple"), "/apple");
        let none = Chroot::new(Some("/")).unwrap();
        assert_eq!(none.apply("/x"), "/x");
        assert_eq!(none.strip("/x"), "/x");
        assert!(Chroot::new(Some("/bad/")).is_err());
    }

    #[test]
    fn paths() {
        assert!(check_path("/a", false).is_ok());
        assert!(check_path("/a/", false).is_err());
        assert!(check_path("/a/", true).is_ok());
        assert!(check_path("a", false).is_err());
    }
}
