//! ACL helpers: the predefined ACL lists, permission bits and digest identities.
//!
//! ```
//! use rookery_client::acl::{self, perms};
//!
//! // Everything for alice (authenticated with `client.add_digest_auth("alice", "secret")`),
//! // read for everyone else.
//! let acl = vec![
//!     acl::digest_acl(perms::ALL, "alice", "secret"),
//!     rookery_client::Acl::new(perms::READ, "world", "anyone"),
//! ];
//! assert_eq!(acl[0].id.id, acl::digest_id("alice", "secret").id);
//! ```

use std::sync::LazyLock;

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use rookery_proto::perms;
pub use rookery_proto::{Acl, Id};

/// `OPEN_ACL_UNSAFE`: every permission for everyone (`world:anyone`).
pub static OPEN_ACL_UNSAFE: LazyLock<Vec<Acl>> = LazyLock::new(Acl::open_unsafe);

/// `CREATOR_ALL_ACL`: every permission for the creator's authenticated identities (`auth:`).
/// The creating connection must have authenticated (for example with
/// [`crate::Client::add_digest_auth`]), or the server answers [`crate::Error::InvalidAcl`].
pub static CREATOR_ALL_ACL: LazyLock<Vec<Acl>> = LazyLock::new(Acl::creator_all);

/// `READ_ACL_UNSAFE`: read for everyone.
pub static READ_ACL_UNSAFE: LazyLock<Vec<Acl>> = LazyLock::new(Acl::read_unsafe);

/// The digest identity of `user` with `password`: scheme `digest`, id
/// `user:BASE64(SHA1("user:password"))`, as ZooKeeper's `DigestAuthenticationProvider` computes
/// it.
pub fn digest_id(user: &str, password: &str) -> Id {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    Id {
        scheme: "digest".to_owned(),
        id: format!(
            "{user}:{}",
            base64::engine::general_purpose::STANDARD.encode(hash)
        ),
    }
}

/// An ACL entry granting `perms` to the digest identity of `user` with `password`.
pub fn digest_acl(perms: i32, user: &str, password: &str) -> Acl {
    Acl {
        perms,
        id: digest_id(user, password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // Observed on ZooKeeper 3.8: bob:secret -> bob:fyVmFCwVbTJYrznoSu1koqYEYF0=
        assert_eq!(
            digest_id("bob", "secret").id,
            "bob:fyVmFCwVbTJYrznoSu1koqYEYF0="
        );
        assert_eq!(OPEN_ACL_UNSAFE[0].perms, perms::ALL);
        assert_eq!(CREATOR_ALL_ACL[0].id.scheme, "auth");
    }
}
