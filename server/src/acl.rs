//! ACL checks and auth providers: the world, auth, digest, ip and super schemes.

use std::net::IpAddr;

use base64::Engine as _;
use rookery_proto::{Acl, ErrorCode, Id};
use sha1::{Digest, Sha1};

/// `user:BASE64(SHA1("user:password"))`, as `DigestAuthenticationProvider.generateDigest`.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The outcome of an auth packet: the ids it adds to the connection.
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    remote: IpAddr,
    super_digest: Option<&str>,
) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let text = String::from_utf8_lossy(auth);
            let id = digest(&text);
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(id.as_str()) {
                ids.push(super_id());
            }
            ids.push(Id {
                scheme: "digest".into(),
                id,
            });
            Ok(ids)
        }
        "ip" => Ok(vec![ip_id(remote)]),
        _ => Err(ErrorCode::AuthFailed),
    }
}

/// The id that every ACL grants everything to.
pub fn super_id() -> Id {
    Id {
        scheme: "super".into(),
        id: String::new(),
    }
}

/// The id every connection gets from its remote address.
pub fn ip_id(remote: IpAddr) -> Id {
    Id {
        scheme: "ip".into(),
        id: remote.to_string(),
    }
}

/// Whether a scheme's ids count as "authenticated" for the `auth` scheme expansion (ip does not).
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "sasl" | "x509")
}

/// Whether `ids` grants `perm` under `acl` (`ZooKeeperServer.checkACL`).
pub fn check(acl: &[Acl], ids: &[Id], perm: i32) -> bool {
    if acl.is_empty() || ids.iter().any(|id| id.scheme == "super") {
        return true;
    }
    for entry in acl {
        if entry.perms & perm == 0 {
            continue;
        }
        if entry.id.scheme == "world" && entry.id.id == "anyone" {
            return true;
        }
        for id in ids.iter().filter(|id| id.scheme == entry.id.scheme) {
            let matched = match id.scheme.as_str() {
                "ip" => ip_matches(&entry.id.id, &id.id),
                _ => id.id == entry.id.id,
            };
            if matched {
                return true;
            }
        }
    }
    false
}

/// Parses `a.b.c.d`, `a.b.c.d/bits` or the IPv6 forms.
fn parse_cidr(spec: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match spec.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (spec, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn ip_matches(spec: &str, remote: &str) -> bool {
    let (Some((net, bits)), Ok(remote)) = (parse_cidr(spec), remote.parse::<IpAddr>()) else {
        return false;
    };
    let (net, remote, width) = match (net, remote) {
        (IpAddr::V4(n), IpAddr::V4(r)) => (u128::from(u32::from(n)), u128::from(u32::from(r)), 32),
        (IpAddr::V6(n), IpAddr::V6(r)) => (u128::from(n), u128::from(r), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (remote >> shift)
}

/// Validates and expands an ACL for create and setACL (`PrepRequestProcessor.fixupACL`).
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out: Vec<Acl> = Vec::with_capacity(acl.len());
    let mut push = |a: Acl| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for entry in acl {
        match entry.id.scheme.as_str() {
            "world" if entry.id.id == "anyone" => push(entry.clone()),
            "auth" => {
                let mut any = false;
                for id in ids.iter().filter(|id| is_authenticated_scheme(&id.scheme)) {
                    any = true;
                    push(Acl {
                        perms: entry.perms,
                        id: id.clone(),
                    });
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if entry.id.id.split(':').count() == 2 && !entry.id.id.ends_with(':') => {
                push(entry.clone())
            }
            "ip" if parse_cidr(&entry.id.id).is_some() => push(entry.clone()),
            // A distinguished name (X509AuthenticationProvider.isValid parses it as one).
            "x509" if entry.id.id.contains('=') => push(entry.clone()),
            // A Kerberos-style name: `user`, `user@REALM` or `user/host@REALM`.
            "sasl" if !entry.id.id.is_empty() && !entry.id.id.contains(char::is_whitespace) => {
                push(entry.clone())
            }
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(out)
}

/// Masks digest ids (`user:x`) for a caller without ADMIN, as getACL does.
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: "digest".into(),
                        id: format!("{user}:x"),
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// The user name whoAmI reports for an id.
pub fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or("").to_owned(),
        _ => id.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rookery_proto::perms;

    #[test]
    fn digest_matches_zookeeper() {
        assert_eq!(digest("bob:secret"), "bob:fyVmFCwVbTJYrznoSu1koqYEYF0=");
    }

    #[test]
    fn ip_prefixes() {
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("127.0.0.0/8", "127.9.9.9"));
        assert!(!ip_matches("10.0.0.0/8", "127.0.0.1"));
        assert!(!ip_matches("garbage", "127.0.0.1"));
    }

    #[test]
    fn check_and_fixup() {
        let bob = Id {
            scheme: "digest".into(),
            id: digest("bob:secret"),
        };
        let ip = Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        };
        let acl = vec![Acl {
            perms: perms::READ,
            id: bob.clone(),
        }];
        assert!(check(&acl, &[ip.clone(), bob.clone()], perms::READ));
        assert!(!check(&acl, &[ip.clone(), bob.clone()], perms::WRITE));
        assert!(!check(&acl, std::slice::from_ref(&ip), perms::READ));
        assert!(check(&[], &[], perms::ADMIN));
        let fixed = fixup(&[Acl::new(31, "auth", "x")], &[ip.clone(), bob.clone()]).unwrap();
        assert_eq!(fixed, vec![Acl { perms: 31, id: bob }]);
        assert_eq!(
            fixup(&[Acl::new(31, "auth", "")], &[ip]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(31, "world", "me")], &[]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup(&[], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[Acl::new(31, "nope", "x")], &[]),
            Err(ErrorCode::InvalidAcl)
        );
    }
}
