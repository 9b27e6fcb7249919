//! x509 identities: a verified client certificate's subject becomes an `x509` ACL id, as in
//! ZooKeeper's `X509AuthenticationProvider`, which uses
//! `getSubjectX500Principal().getName()`: the RFC 2253 form, most specific name first.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The ACL scheme of certificate identities.
pub const SCHEME: &str = "x509";

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC 2253),
/// or `None` if the certificate cannot be parsed.
pub fn subject_rfc2253(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    match (keyword(&oid), atv.as_str()) {
                        (Some(k), Ok(v)) => format!("{k}={}", escape(v)),
                        // Java writes attributes it has no keyword for as OID=#hex(DER value).
                        _ => format!("{oid}=#{}", hex_der(atv.attr_value())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // DER lists the most general name first; RFC 2253 writes the most specific first.
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The keywords Java's RFC 2253 output uses.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 §2.4 escaping.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex_der(any: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    use x509_parser::der_parser::asn1_rs::ToDer;
    let der = any.to_der_vec().unwrap_or_default();
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(dn: &[(DnType, &str)]) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_is_written_most_specific_first_as_java_does() {
        let der = cert(&[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Rookery"),
            (DnType::OrganizationalUnitName, "ops"),
            (DnType::CommonName, "client-1"),
        ]);
        assert_eq!(
            subject_rfc2253(&der).as_deref(),
            Some("CN=client-1,OU=ops,O=Rookery,C=DE")
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = cert(&[(DnType::CommonName, "a,b+c \"d\" ")]);
        assert_eq!(
            subject_rfc2253(&der).as_deref(),
            Some(r#"CN=a\,b\+c \"d\"\ "#)
        );
        assert_eq!(escape("#x"), r"\#x");
    }

    #[test]
    fn garbage_is_not_an_identity() {
        assert_eq!(subject_rfc2253(b"not a certificate"), None);
        assert_eq!(subject_rfc2253(&[]), None);
    }
}
