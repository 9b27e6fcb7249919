//! Authentication beyond the `digest` and `ip` schemes of [`crate::acl`]: SASL (DIGEST-MD5,
//! with users from a JAAS-style file) and TLS (x509 identities from client certificates).

pub mod digest_md5;
pub mod jaas;
pub mod x509;
