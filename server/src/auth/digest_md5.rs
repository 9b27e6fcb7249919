//! The server side of SASL DIGEST-MD5 (RFC 2831), as Apache ZooKeeper runs it: Java's
//! `DigestMD5Server` created with protocol `zookeeper` and server name `zk-sasl-md5`, offering
//! qop `auth` only (authentication, no security layer), charset utf-8 and algorithm md5-sess.
//!
//! The exchange is sans-io and single-use: [`DigestMd5Server::challenge`] answers the client's
//! empty initial token, [`DigestMd5Server::respond`] checks the client's digest-response and
//! returns the final `rspauth=...` token, which proves to the client that the server knows the
//! password too. The nonce is an input ([`generate_nonce`] makes one), so tests are
//! deterministic.
//!
//! DIGEST-MD5 is obsolete (RFC 6331) and MD5 is broken; it is here because ZooKeeper clients
//! (zkCli.sh, the C client with Cyrus SASL, kazoo with pure-sasl) use it. Run it over TLS where
//! the password matters.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// The SASL service (serv-type) ZooKeeper uses; the first part of the digest-uri.
pub const SERVICE: &str = "zookeeper";

/// The realm (and server name) ZooKeeper hard-wires for DIGEST-MD5 on both sides.
pub const ZOOKEEPER_REALM: &str = "zk-sasl-md5";

/// The longest digest-response accepted. RFC 2831 caps it at 4096 bytes, and real ones are
/// about 300; the bound keeps a hostile client from making the parser work on megabytes.
pub const MAX_RESPONSE_LEN: usize = 4096;

/// The only nonce count accepted: every exchange gets a fresh nonce and is used once, so
/// subsequent authentication (nc > 1) is not supported, as in Java.
const NONCE_COUNT: &[u8] = b"00000001";

/// The only quality of protection offered: ZooKeeper negotiates no security layer.
const QOP_AUTH: &[u8] = b"auth";

/// Random bytes in a nonce; 30 (40 base64 characters) as in Java's `DigestMD5Base`.
const RAW_NONCE_LEN: usize = 30;

/// The directives of a digest-response this server knows. Each may appear at most once (RFC
/// 2831 §2.1.2); unknown ones are ignored, as the RFC requires.
const KNOWN_DIRECTIVES: [&str; 12] = [
    "username",
    "realm",
    "nonce",
    "cnonce",
    "nc",
    "qop",
    "digest-uri",
    "response",
    "maxbuf",
    "charset",
    "cipher",
    "authzid",
];

/// Why a digest-response was refused. The messages name the problem and, where it helps an
/// operator, the username; never a password, a hash or the client's response value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// [`DigestMd5Server::respond`] before [`DigestMd5Server::challenge`].
    #[error("DIGEST-MD5: response before the challenge was sent")]
    NotChallenged,
    /// A second [`DigestMd5Server::respond`] on one exchange: each nonce is good for one try.
    #[error("DIGEST-MD5: exchange already finished (each exchange is single-use)")]
    AlreadyUsed,
    /// The response is over [`MAX_RESPONSE_LEN`].
    #[error("DIGEST-MD5: response is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_RESPONSE_LEN`].
        max: usize,
    },
    /// The response is not a comma-separated list of `name=value` directives.
    #[error("DIGEST-MD5: malformed response at byte {offset}: {reason}")]
    Malformed {
        /// Where parsing stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A directive that must be unique appears twice.
    #[error("DIGEST-MD5: directive {0} appears more than once")]
    Duplicate(&'static str),
    /// A required directive is absent (or empty).
    #[error("DIGEST-MD5: missing or empty directive {0}")]
    Missing(&'static str),
    /// A directive that must be text is not UTF-8.
    #[error("DIGEST-MD5: directive {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A charset other than utf-8.
    #[error("DIGEST-MD5: unsupported charset (only utf-8 is offered)")]
    UnsupportedCharset,
    /// A realm other than the one offered.
    #[error("DIGEST-MD5: realm does not match the server's")]
    RealmMismatch,
    /// A nonce other than this exchange's.
    #[error("DIGEST-MD5: nonce does not match this exchange's")]
    NonceMismatch,
    /// A nonce count other than 00000001.
    #[error("DIGEST-MD5: nonce count must be 00000001")]
    BadNonceCount,
    /// A qop other than auth (integrity and privacy layers are not offered).
    #[error("DIGEST-MD5: unsupported qop (only auth is offered)")]
    UnsupportedQop,
    /// A digest-uri that is not `zookeeper/<host>`.
    #[error("DIGEST-MD5: digest-uri is not zookeeper/<host>")]
    BadDigestUri,
    /// No password is known for the user.
    #[error("DIGEST-MD5: unknown user {0:?}")]
    UnknownUser(String),
    /// The response value does not match: the password is wrong (or the client hashed
    /// differently).
    #[error("DIGEST-MD5: wrong password for user {0:?}")]
    BadResponse(String),
    /// The client asked to act as someone else (authzid); ZooKeeper's users are only ever
    /// themselves.
    #[error("DIGEST-MD5: user {username:?} may not act as {authzid:?}")]
    NotAuthorized {
        /// The authenticated user.
        username: String,
        /// The identity it asked for.
        authzid: String,
    },
}

/// A successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The final server token, `rspauth=<32 hex digits>`: send it to the client, which checks
    /// it to authenticate the server.
    pub token: Vec<u8>,
    /// The authentication id: the user whose password was verified.
    pub username: String,
    /// The identity to act as: the authzid if the client sent one (it then equals the
    /// username), else the username.
    pub authorization_id: String,
}

/// Makes a nonce for [`DigestMd5Server::new`]: 30 random bytes in base64, like Java's.
pub fn generate_nonce<R: rand::RngCore + rand::CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut raw = [0u8; RAW_NONCE_LEN];
    rng.fill_bytes(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Created; the challenge has not been asked for.
    Fresh,
    /// The challenge is out; one response may be checked.
    Challenged,
    /// A response was checked (whatever the outcome).
    Finished,
}

/// One DIGEST-MD5 exchange on the server side.
#[derive(Debug)]
pub struct DigestMd5Server {
    realm: String,
    nonce: String,
    /// The serv-type a digest-uri must name; [`SERVICE`] except in the RFC's example test.
    serv_type: &'static str,
    state: State,
}

impl DigestMd5Server {
    /// An exchange in `realm` (ZooKeeper's is [`ZOOKEEPER_REALM`]) with a fresh, unpredictable
    /// `nonce` (see [`generate_nonce`]; it should be base64 or another printable token).
    pub fn new(realm: &str, nonce: String) -> Self {
        Self {
            realm: realm.to_owned(),
            nonce,
            serv_type: SERVICE,
            state: State::Fresh,
        }
    }

    /// The digest-challenge, sent in answer to the client's empty initial token. It is
    /// byte-for-byte what Java sends for ZooKeeper:
    /// `realm="zk-sasl-md5",nonce="...",charset=utf-8,algorithm=md5-sess` (no qop directive,
    /// which means auth). Calling it again returns the same challenge.
    pub fn challenge(&mut self) -> Vec<u8> {
        if self.state == State::Fresh {
            self.state = State::Challenged;
        }
        let mut out = Vec::with_capacity(64 + self.realm.len() + self.nonce.len());
        out.extend_from_slice(b"realm=\"");
        push_quoted(&mut out, self.realm.as_bytes());
        out.extend_from_slice(b"\",nonce=\"");
        push_quoted(&mut out, self.nonce.as_bytes());
        out.extend_from_slice(b"\",charset=utf-8,algorithm=md5-sess");
        out
    }

    /// Checks the client's digest-response against `password_of(username)` and, on success,
    /// returns the `rspauth` token and the identities. The exchange is then finished, whatever
    /// the outcome: a second call fails with [`DigestError::AlreadyUsed`], so one nonce buys
    /// one password guess.
    ///
    /// Accepted, as from Java, Cyrus SASL and pure-sasl clients: the directives in any order
    /// and case, quoted or not; realm equal to ours or absent (then hashed as empty, per the
    /// RFC); qop `auth` or absent; charset `utf-8` or absent; any digest-uri `zookeeper/<host>`.
    /// ZooKeeper's Java and C clients and kazoo send `zookeeper/zk-sasl-md5`, but older kazoo
    /// releases sent the host they connected to, which Java's server refuses and this one
    /// accepts: the digest-uri is still covered by the hash, and the nonce already binds the
    /// response to this exchange. An authzid must equal the username.
    ///
    /// Usernames, realms and passwords are hashed as ISO 8859-1 when every character fits and
    /// as UTF-8 otherwise (RFC 2831 §2.1.2.1, and what Java does), whether or not the client
    /// echoed `charset=utf-8`, as in Java. Clients that hash UTF-8 regardless (pure-sasl) thus
    /// fail for passwords with non-ASCII Latin-1 characters such as `é`, against ZooKeeper too.
    pub fn respond(
        &mut self,
        response: &[u8],
        password_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Success, DigestError> {
        match self.state {
            State::Fresh => return Err(DigestError::NotChallenged),
            State::Finished => return Err(DigestError::AlreadyUsed),
            State::Challenged => self.state = State::Finished,
        }
        if response.len() > MAX_RESPONSE_LEN {
            return Err(DigestError::TooLong {
                len: response.len(),
                max: MAX_RESPONSE_LEN,
            });
        }
        let fields = parse_directives(response)?;
        let get = |name: &'static str| fields.get(name).map(Vec::as_slice);
        let require = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(DigestError::Missing(name))
        };
        let text = |name: &'static str, bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| DigestError::NotUtf8(name))
        };

        if get("charset").is_some_and(|c| !c.eq_ignore_ascii_case(b"utf-8")) {
            return Err(DigestError::UnsupportedCharset);
        }
        let username = text("username", require("username")?)?;
        let realm = match get("realm") {
            None => "",
            Some(r) if r == self.realm.as_bytes() => self.realm.as_str(),
            Some(_) => return Err(DigestError::RealmMismatch),
        };
        if require("nonce")? != self.nonce.as_bytes() {
            return Err(DigestError::NonceMismatch);
        }
        let cnonce = require("cnonce")?;
        if require("nc")? != NONCE_COUNT {
            return Err(DigestError::BadNonceCount);
        }
        if get("qop").is_some_and(|q| q != QOP_AUTH) {
            return Err(DigestError::UnsupportedQop);
        }
        let digest_uri = require("digest-uri")?;
        if !uri_names_service(digest_uri, self.serv_type) {
            return Err(DigestError::BadDigestUri);
        }
        let client_value = require("response")?;
        let authzid = get("authzid");
        let authzid_text = authzid.map(|a| text("authzid", a)).transpose()?;

        let password =
            password_of(&username).ok_or_else(|| DigestError::UnknownUser(username.clone()))?;
        let session = SessionKey::new(
            &username,
            realm,
            &password,
            self.nonce.as_bytes(),
            cnonce,
            authzid,
        );
        let expected = session.response_value(b"AUTHENTICATE", digest_uri, cnonce);
        if !constant_time_eq(&expected, client_value) {
            return Err(DigestError::BadResponse(username));
        }
        // Authorization after authentication, as in Java: a refusal here means the password
        // was right.
        let authorization_id = match authzid_text {
            Some(authzid) if authzid != username => {
                return Err(DigestError::NotAuthorized { username, authzid })
            }
            _ => username.clone(),
        };
        let mut token = b"rspauth=".to_vec();
        token.extend_from_slice(&session.response_value(b"", digest_uri, cnonce));
        Ok(Success {
            token,
            username,
            authorization_id,
        })
    }
}

/// H(A1) of RFC 2831 §2.1.2.1 for one exchange, in hex, with the nonce it was made with.
struct SessionKey<'a> {
    hex_a1: [u8; 32],
    nonce: &'a [u8],
}

impl<'a> SessionKey<'a> {
    /// A1 = { H({username ":" realm ":" password}), ":" nonce ":" cnonce [":" authzid] }, the
    /// inner hash as 16 raw bytes; username, realm and password each in ISO 8859-1 if they
    /// fit.
    fn new(
        username: &str,
        realm: &str,
        password: &str,
        nonce: &'a [u8],
        cnonce: &[u8],
        authzid: Option<&[u8]>,
    ) -> Self {
        let secret = Md5::new()
            .chain_update(latin1_if_possible(username))
            .chain_update(b":")
            .chain_update(latin1_if_possible(realm))
            .chain_update(b":")
            .chain_update(latin1_if_possible(password))
            .finalize();
        let mut a1 = Md5::new()
            .chain_update(secret)
            .chain_update(b":")
            .chain_update(nonce)
            .chain_update(b":")
            .chain_update(cnonce);
        if let Some(authzid) = authzid {
            a1 = a1.chain_update(b":").chain_update(authzid);
        }
        Self {
            hex_a1: hex(&a1.finalize().into()),
            nonce,
        }
    }

    /// HEX(KD(HEX(H(A1)), nonce ":" nc ":" cnonce ":" qop ":" HEX(H(A2)))) with
    /// A2 = method ":" digest-uri: method `AUTHENTICATE` for the client's response, empty for
    /// the server's rspauth.
    fn response_value(&self, method: &[u8], digest_uri: &[u8], cnonce: &[u8]) -> [u8; 32] {
        let a2 = Md5::new()
            .chain_update(method)
            .chain_update(b":")
            .chain_update(digest_uri)
            .finalize();
        let kd = Md5::new()
            .chain_update(self.hex_a1)
            .chain_update(b":")
            .chain_update(self.nonce)
            .chain_update(b":")
            .chain_update(NONCE_COUNT)
            .chain_update(b":")
            .chain_update(cnonce)
            .chain_update(b":")
            .chain_update(QOP_AUTH)
            .chain_update(b":")
            .chain_update(hex(&a2.into()))
            .finalize();
        hex(&kd.into())
    }
}

/// The string as ISO 8859-1 bytes if every character is in it, else as UTF-8 (RFC 2831
/// §2.1.2.1 with charset=utf-8; Java's `stringToByte_8859_1`).
fn latin1_if_possible(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        return Cow::Borrowed(s.as_bytes());
    }
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map_or(Cow::Borrowed(s.as_bytes()), Cow::Owned)
}

/// Lower-case hex, as RFC 2831's HEX().
fn hex(bytes: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

/// Compares without stopping at the first difference, so the time taken does not tell a
/// client how much of its guess was right. Lengths are not secret (a response is 32 digits).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `serv-type "/" host [ "/" serv-name ]` with the expected serv-type (case-insensitive, as
/// Java compares URIs) and a non-empty host.
fn uri_names_service(uri: &[u8], serv_type: &str) -> bool {
    let mut parts = uri.splitn(2, |&b| b == b'/');
    let service = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    service.eq_ignore_ascii_case(serv_type.as_bytes()) && !rest.is_empty() && rest[0] != b'/'
}

/// Appends `value` as the inside of a quoted-string, escaping `"` and `\`.
fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 2616 token characters: visible ASCII but the separators.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// A bare (unquoted) value runs to the next comma, quote or white space. This is looser than a
/// token so that a client writing e.g. an unquoted digest-uri is still understood.
fn is_bare_value_char(b: u8) -> bool {
    b > b' ' && b != 0x7f && b != b',' && b != b'"'
}

/// Parses RFC 2831's `1#( name "=" ( token | quoted-string ) )`: directives separated by commas
/// with optional white space, empty list elements allowed, names case-insensitive, `\` escaping
/// any byte inside quotes. Known directives are returned by their canonical name; a repeated one
/// is an error, an unknown one is skipped.
fn parse_directives(input: &[u8]) -> Result<BTreeMap<&'static str, Vec<u8>>, DigestError> {
    let malformed = |offset, reason| DigestError::Malformed { offset, reason };
    let skip = |mut i: usize, pred: fn(u8) -> bool| {
        while input.get(i).copied().is_some_and(pred) {
            i += 1;
        }
        i
    };
    let mut fields = BTreeMap::new();
    let mut i = 0;
    loop {
        i = skip(i, |b| b == b',' || is_lws(b));
        if i == input.len() {
            return Ok(fields);
        }
        let name_start = i;
        i = skip(i, is_token_char);
        if i == name_start {
            return Err(malformed(i, "expected a directive name"));
        }
        let name = &input[name_start..i];
        i = skip(i, is_lws);
        if input.get(i) != Some(&b'=') {
            return Err(malformed(i, "expected `=` after a directive name"));
        }
        i = skip(i + 1, is_lws);
        let value = if input.get(i) == Some(&b'"') {
            i += 1;
            let mut value = Vec::new();
            loop {
                match input.get(i) {
                    None => return Err(malformed(i, "unterminated quoted string")),
                    Some(b'"') => break,
                    Some(b'\\') => match input.get(i + 1) {
                        None => return Err(malformed(i, "unterminated quoted string")),
                        Some(&escaped) => {
                            value.push(escaped);
                            i += 1;
                        }
                    },
                    Some(&b) => value.push(b),
                }
                i += 1;
            }
            i += 1;
            value
        } else {
            let start = i;
            i = skip(i, is_bare_value_char);
            if i == start {
                return Err(malformed(i, "expected a value after `=`"));
            }
            input[start..i].to_vec()
        };
        i = skip(i, is_lws);
        if i < input.len() && input[i] != b',' {
            return Err(malformed(i, "expected `,` between directives"));
        }
        if let Some(known) = KNOWN_DIRECTIVES
            .iter()
            .find(|known| name.eq_ignore_ascii_case(known.as_bytes()))
        {
            if fields.insert(*known, value).is_some() {
                return Err(DigestError::Duplicate(known));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server past its challenge, with its challenge bytes.
    fn server(realm: &str, nonce: &str) -> (DigestMd5Server, Vec<u8>) {
        let mut server = DigestMd5Server::new(realm, nonce.to_owned());
        let challenge = server.challenge();
        (server, challenge)
    }

    fn passwords<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |user| {
            pairs
                .iter()
                .find(|(u, _)| *u == user)
                .map(|(_, p)| p.to_string())
        }
    }

    /// RFC 2831 §4, the IMAP example: the response and rspauth values printed in the RFC.
    #[test]
    fn rfc2831_example() {
        let mut server = DigestMd5Server {
            serv_type: "imap",
            ..DigestMd5Server::new("elwood.innosoft.com", "OA6MG9tEQGm2hh".into())
        };
        server.challenge();
        let response = br#"charset=utf-8,username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth"#;
        let ok = server
            .respond(response, passwords(&[("chris", "secret")]))
            .expect("the RFC's example authenticates");
        assert_eq!(ok.token, b"rspauth=ea40f60335c427b5527b84dbabcdfffd");
        assert_eq!(ok.username, "chris");
        assert_eq!(ok.authorization_id, "chris");
    }

    /// An exchange recorded from Java's own `DigestMD5Client` and `DigestMD5Server`
    /// (javax.security.sasl, OpenJDK 17), both created as ZooKeeper creates them: protocol
    /// `zookeeper`, server name `zk-sasl-md5`, and on the client authorizationId = username, as
    /// ZooKeeper's `SecurityUtils.createSaslClient` does.
    struct JavaVector {
        user: &'static str,
        password: &'static str,
        challenge: &'static str,
        response: &'static str,
        rspauth: &'static str,
    }

    const JAVA_VECTORS: [JavaVector; 4] = [
        // authzid = username, as ZooKeeper's Java client sends.
        JavaVector {
            user: "bob",
            password: "bobsecret",
            challenge: r#"realm="zk-sasl-md5",nonce="94xvMG3ze8tVy+PuQEiWAAwESy6ntq6AQPXmcJ3n",charset=utf-8,algorithm=md5-sess"#,
            response: r#"charset=utf-8,username="bob",realm="zk-sasl-md5",nonce="94xvMG3ze8tVy+PuQEiWAAwESy6ntq6AQPXmcJ3n",nc=00000001,cnonce="uW27Lf7qu3/NUMsj/VvQDTo+er6ReaUdXbWzi8Hs",digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=4639d21aef90670f89bed96a4eb2d730,qop=auth,authzid="bob""#,
            rspauth: "rspauth=3f2518e96da1b0bef1986b619f69dfbd",
        },
        // No authzid.
        JavaVector {
            user: "bob",
            password: "bobsecret",
            challenge: r#"realm="zk-sasl-md5",nonce="CRBLYPXB+A/hmTTsbStJKDyv40NttNfUaCKES8Oh",charset=utf-8,algorithm=md5-sess"#,
            response: r#"charset=utf-8,username="bob",realm="zk-sasl-md5",nonce="CRBLYPXB+A/hmTTsbStJKDyv40NttNfUaCKES8Oh",nc=00000001,cnonce="RRLU6UOYyXVTl+Baxmlivhd0tDFHxGNjhRhWNycl",digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=52ed60096373a9fca21b5dbfb895d284,qop=auth"#,
            rspauth: "rspauth=ebc81787bcc9f0d973a9c8a144187064",
        },
        // A Latin-1 password: hashed as ISO 8859-1.
        JavaVector {
            user: "bob",
            password: "sécret",
            challenge: r#"realm="zk-sasl-md5",nonce="jzlU2HkOtwu5VCh70jFXEjXp7lI021AjXz1IA4L+",charset=utf-8,algorithm=md5-sess"#,
            response: r#"charset=utf-8,username="bob",realm="zk-sasl-md5",nonce="jzlU2HkOtwu5VCh70jFXEjXp7lI021AjXz1IA4L+",nc=00000001,cnonce="EpOmQhqy1jLvBlMkqU//1ifb8b863d/cFcn5O23n",digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=2c94fdadc72f96c0a50e2557152f5bca,qop=auth,authzid="bob""#,
            rspauth: "rspauth=ecec75f7952198fae529623bcdb2dba3",
        },
        // A Latin-1 username (sent as UTF-8, hashed as ISO 8859-1; the authzid as sent) and a
        // password outside Latin-1 (hashed as UTF-8).
        JavaVector {
            user: "jürgen",
            password: "密码pass",
            challenge: r#"realm="zk-sasl-md5",nonce="djc2ld1ehomo6RX3CLdCi6dblnUkFyY3x+/fO85a",charset=utf-8,algorithm=md5-sess"#,
            response: r#"charset=utf-8,username="jürgen",realm="zk-sasl-md5",nonce="djc2ld1ehomo6RX3CLdCi6dblnUkFyY3x+/fO85a",nc=00000001,cnonce="iJuMM1Ya2C2fLtx1WSl4pnttdZOPbf9c78lGX9qb",digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=11dba27cd9eab990bfaa8866a3b648b9,qop=auth,authzid="jürgen""#,
            rspauth: "rspauth=223bdbdc50a892a61e6d279fa09c3d31",
        },
    ];

    /// Java's nonce from its challenge.
    fn nonce_of(challenge: &str) -> &str {
        let start = challenge.find("nonce=\"").map_or(0, |i| i + 7);
        let len = challenge[start..].find('"').unwrap_or(0);
        &challenge[start..start + len]
    }

    #[test]
    fn java_client_and_server_vectors() {
        for v in &JAVA_VECTORS {
            let (mut server, challenge) = server(ZOOKEEPER_REALM, nonce_of(v.challenge));
            assert_eq!(
                String::from_utf8_lossy(&challenge),
                v.challenge,
                "our challenge is Java's, byte for byte"
            );
            let ok = server
                .respond(v.response.as_bytes(), passwords(&[(v.user, v.password)]))
                .unwrap_or_else(|e| panic!("{}: {e}", v.user));
            assert_eq!(String::from_utf8_lossy(&ok.token), v.rspauth, "{}", v.user);
            assert_eq!(ok.username, v.user);
            assert_eq!(ok.authorization_id, v.user);
        }
    }

    /// Made with pure-sasl 0.6.2 (what kazoo uses), `random.seed(2831)` for its cnonce, answering
    /// our challenge with nonce [`PURESASL_NONCE`]; the rspauth is what pure-sasl's own
    /// `gen_hash(b':' + digest_uri)` expects, which it accepted. pure-sasl sends no charset.
    const PURESASL_NONCE: &str = "OTdkNGU3ZjItZmFrZS1ub25jZS1mb3ItdGVzdHM=";
    const PURESASL_VECTORS: [(&str, &str, &str, &str); 2] = [
        // As kazoo sends it: SASLClient(host="zk-sasl-md5", service="zookeeper").
        (
            "bob",
            "bobsecret",
            r#"qop=auth,realm="zk-sasl-md5",username="bob",nonce="OTdkNGU3ZjItZmFrZS1ub25jZS1mb3ItdGVzdHM=",cnonce="49881307058702684",nc=00000001,digest-uri="zookeeper/zk-sasl-md5",response=ea295f36bcb7ea8921e0b182c6ba2c14"#,
            "rspauth=fd9d3529749cf5edb0b6f8f210f86cf3",
        ),
        // As older kazoo sent it, with the connected host in the digest-uri.
        (
            "super",
            "adminsecret",
            r#"qop=auth,realm="zk-sasl-md5",username="super",nonce="OTdkNGU3ZjItZmFrZS1ub25jZS1mb3ItdGVzdHM=",cnonce="49881307058702684",nc=00000001,digest-uri="zookeeper/127.0.0.1",response=7e5200bade43979e480daf9238599f56"#,
            "rspauth=edfa3cf6160dfa36654dd157ebb212f9",
        ),
    ];

    #[test]
    fn puresasl_vectors() {
        for (user, password, response, rspauth) in PURESASL_VECTORS {
            let (mut server, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            let ok = server
                .respond(response.as_bytes(), passwords(&[(user, password)]))
                .unwrap_or_else(|e| panic!("{user}: {e}"));
            assert_eq!(String::from_utf8_lossy(&ok.token), rspauth);
            assert_eq!(ok.authorization_id, user);
        }
    }

    const KAZOO: &str = PURESASL_VECTORS[0].2;

    fn respond_to_kazoo_vector(response: &str) -> Result<Success, DigestError> {
        let (mut server, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
        server.respond(response.as_bytes(), passwords(&[("bob", "bobsecret")]))
    }

    #[test]
    fn wrong_password_and_unknown_user() {
        let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
        let err = s
            .respond(KAZOO.as_bytes(), passwords(&[("bob", "wrong")]))
            .expect_err("wrong password");
        assert_eq!(err, DigestError::BadResponse("bob".into()));
        let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
        let err = s
            .respond(KAZOO.as_bytes(), passwords(&[]))
            .expect_err("unknown user");
        assert_eq!(err, DigestError::UnknownUser("bob".into()));
        // A tampered cnonce or digest-uri breaks the hash too.
        for (from, to) in [
            ("49881307058702684", "49881307058702685"),
            ("zookeeper/zk-sasl-md5", "zookeeper/other"),
            ("ea295f36", "EA295F36"),
        ] {
            assert_eq!(
                respond_to_kazoo_vector(&KAZOO.replace(from, to)),
                Err(DigestError::BadResponse("bob".into())),
                "{to}"
            );
        }
    }

    #[test]
    fn refused_directives() {
        use DigestError::*;
        let cases: &[(&str, &str, DigestError)] = &[
            (
                "OTdkNGU3ZjItZmFrZS1ub25jZS1mb3ItdGVzdHM=",
                "other",
                NonceMismatch,
            ),
            ("nc=00000001", "nc=00000002", BadNonceCount),
            ("nc=00000001", "nc=1", BadNonceCount),
            ("qop=auth", "qop=auth-int", UnsupportedQop),
            ("qop=auth", "qop=auth-conf", UnsupportedQop),
            ("realm=\"zk-sasl-md5\"", "realm=\"other\"", RealmMismatch),
            ("zookeeper/zk-sasl-md5", "imap/zk-sasl-md5", BadDigestUri),
            ("zookeeper/zk-sasl-md5", "zookeeper/", BadDigestUri),
            ("zookeeper/zk-sasl-md5", "zookeeper//x", BadDigestUri),
            ("zookeeper/zk-sasl-md5", "zookeeper", BadDigestUri),
            (
                "qop=auth",
                "qop=auth,charset=iso-8859-1",
                UnsupportedCharset,
            ),
            ("username=\"bob\",", "", Missing("username")),
            ("username=\"bob\"", "username=\"\"", Missing("username")),
            (
                ",nonce=\"OTdkNGU3ZjItZmFrZS1ub25jZS1mb3ItdGVzdHM=\"",
                "",
                Missing("nonce"),
            ),
            (",cnonce=\"49881307058702684\"", "", Missing("cnonce")),
            (",nc=00000001", "", Missing("nc")),
            (
                ",digest-uri=\"zookeeper/zk-sasl-md5\"",
                "",
                Missing("digest-uri"),
            ),
            (
                ",response=ea295f36bcb7ea8921e0b182c6ba2c14",
                "",
                Missing("response"),
            ),
            ("qop=auth", "qop=auth,qop=auth", Duplicate("qop")),
            ("qop=auth", "qop=auth,NONCE=\"x\"", Duplicate("nonce")),
            (
                "qop=auth",
                "qop=auth,authzid=\"a\",authzid=\"a\"",
                Duplicate("authzid"),
            ),
        ];
        for (from, to, want) in cases {
            let response = KAZOO.replacen(from, to, 1);
            assert_ne!(response, KAZOO, "{from} is in the vector");
            assert_eq!(
                respond_to_kazoo_vector(&response).as_ref(),
                Err(want),
                "{to:?}"
            );
        }
    }

    #[test]
    fn tolerated_variations() {
        // Names in any case, white space and empty elements, an unknown directive, charset
        // echoed, an escaped character in a quoted value, a bare digest-uri.
        let variations = [
            KAZOO.replace("qop=auth,", "QOP = auth , , x-unknown=\"1\",x-unknown=2,"),
            KAZOO.replace("username=\"bob\"", "username=\"b\\ob\",charset=UTF-8"),
            KAZOO.replace("\"zookeeper/zk-sasl-md5\"", "zookeeper/zk-sasl-md5"),
            KAZOO.replace("qop=auth,", "") + ",\r\n",
        ];
        for response in &variations {
            assert!(respond_to_kazoo_vector(response).is_ok(), "{response}");
        }
    }

    /// Builds a response the way a client would (with this module's hashing, which the vector
    /// tests pin), to vary what the vectors do not: an absent realm, an authzid.
    fn client_response(realm: Option<&str>, authzid: Option<&str>, password: &str) -> String {
        let (nonce, cnonce, uri) = ("n0nce", "cn0nce", "zookeeper/zk-sasl-md5");
        let key = SessionKey::new(
            "bob",
            realm.unwrap_or(""),
            password,
            nonce.as_bytes(),
            cnonce.as_bytes(),
            authzid.map(str::as_bytes),
        );
        let value = key.response_value(b"AUTHENTICATE", uri.as_bytes(), cnonce.as_bytes());
        let mut out = format!(
            "username=\"bob\",nonce=\"{nonce}\",cnonce=\"{cnonce}\",nc=00000001,digest-uri=\"{uri}\",response={}",
            String::from_utf8_lossy(&value)
        );
        if let Some(realm) = realm {
            out += &format!(",realm=\"{realm}\"");
        }
        if let Some(authzid) = authzid {
            out += &format!(",authzid=\"{authzid}\"");
        }
        out
    }

    #[test]
    fn absent_realm_is_hashed_as_empty() {
        let (mut s, _) = server(ZOOKEEPER_REALM, "n0nce");
        let ok = s
            .respond(
                client_response(None, None, "bobsecret").as_bytes(),
                passwords(&[("bob", "bobsecret")]),
            )
            .expect("no realm");
        assert_eq!(ok.authorization_id, "bob");
    }

    #[test]
    fn authzid_must_be_the_user() {
        let (mut s, _) = server(ZOOKEEPER_REALM, "n0nce");
        let err = s
            .respond(
                client_response(Some(ZOOKEEPER_REALM), Some("super"), "bobsecret").as_bytes(),
                passwords(&[("bob", "bobsecret")]),
            )
            .expect_err("bob may not be super");
        assert_eq!(
            err,
            DigestError::NotAuthorized {
                username: "bob".into(),
                authzid: "super".into()
            }
        );
        // With the wrong password, the password is what is reported.
        let (mut s, _) = server(ZOOKEEPER_REALM, "n0nce");
        let err = s
            .respond(
                client_response(Some(ZOOKEEPER_REALM), Some("super"), "guess").as_bytes(),
                passwords(&[("bob", "bobsecret")]),
            )
            .expect_err("wrong password");
        assert_eq!(err, DigestError::BadResponse("bob".into()));
    }

    #[test]
    fn single_use_and_ordering() {
        let mut s = DigestMd5Server::new(ZOOKEEPER_REALM, PURESASL_NONCE.into());
        let lookup = passwords(&[("bob", "bobsecret")]);
        assert_eq!(
            s.respond(KAZOO.as_bytes(), &lookup),
            Err(DigestError::NotChallenged)
        );
        let challenge = s.challenge();
        assert_eq!(s.challenge(), challenge, "the challenge is stable");
        assert!(s.respond(KAZOO.as_bytes(), &lookup).is_ok());
        assert_eq!(
            s.respond(KAZOO.as_bytes(), &lookup),
            Err(DigestError::AlreadyUsed),
            "replay"
        );
        // A failed attempt uses the exchange up too: no second guess on one nonce.
        let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
        assert!(s
            .respond(KAZOO.as_bytes(), passwords(&[("bob", "x")]))
            .is_err());
        assert_eq!(
            s.respond(KAZOO.as_bytes(), &lookup),
            Err(DigestError::AlreadyUsed)
        );
        // A replay against a new exchange fails on the nonce.
        let (mut s, _) = server(ZOOKEEPER_REALM, "a-new-nonce");
        assert_eq!(
            s.respond(KAZOO.as_bytes(), &lookup),
            Err(DigestError::NonceMismatch)
        );
    }

    #[test]
    fn malformed_input() {
        let huge = format!("{KAZOO},x=\"{}\"", "a".repeat(MAX_RESPONSE_LEN));
        assert!(matches!(
            respond_to_kazoo_vector(&huge),
            Err(DigestError::TooLong { .. })
        ));
        let cases: &[&[u8]] = &[
            b"",
            b"username",
            b"username=",
            b"username=\"bob",
            b"username=\"bob\\",
            b"username=\"bob\" realm=\"x\"",
            b"=bob",
            b"user name=bob",
            b"username=b\"ob\"",
            b"\xff\xfe=1",
            b"username=\"\xff\"",
            b",,,",
        ];
        for input in cases {
            let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            let result = s.respond(input, passwords(&[("bob", "bobsecret")]));
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(input));
        }
        // Non-UTF-8 in a text directive, otherwise a valid response.
        let mut bytes = KAZOO.as_bytes().to_vec();
        let at = KAZOO.find("\"bob\"").map_or(0, |i| i + 2);
        bytes[at] = 0xff;
        let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
        assert_eq!(
            s.respond(&bytes, passwords(&[("bob", "bobsecret")])),
            Err(DigestError::NotUtf8("username"))
        );
        assert!(matches!(
            parse_directives(b"username=\"bob"),
            Err(DigestError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_reveal_no_secret() {
        let lookup = passwords(&[("bob", "bobsecret")]);
        let response_value = "ea295f36bcb7ea8921e0b182c6ba2c14";
        for tamper in ["49881307058702684", "bob\"", "nc=00000001", "auth"] {
            let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            let (mut wrong, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            let errors = [
                s.respond(KAZOO.replacen(tamper, "X", 1).as_bytes(), &lookup),
                wrong.respond(KAZOO.as_bytes(), passwords(&[("bob", "hunter2")])),
            ];
            for err in errors.iter().filter_map(|r| r.as_ref().err()) {
                for shown in [err.to_string(), format!("{err:?}")] {
                    for secret in ["bobsecret", "hunter2", response_value] {
                        assert!(!shown.contains(secret), "{shown}");
                    }
                }
            }
        }
    }

    #[test]
    fn latin1_conversion() {
        assert_eq!(&*latin1_if_possible("abc"), b"abc");
        assert_eq!(&*latin1_if_possible("sécret"), b"s\xe9cret");
        assert_eq!(&*latin1_if_possible("\u{ff}"), b"\xff");
        assert_eq!(&*latin1_if_possible("€uro é"), "€uro é".as_bytes());
    }

    #[test]
    fn nonces_are_base64_like_javas() {
        let mut rng = rand::thread_rng();
        let (a, b) = (generate_nonce(&mut rng), generate_nonce(&mut rng));
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
    }

    #[test]
    fn challenge_escapes_quotes() {
        let mut s = DigestMd5Server::new("r\"e\\alm", "n\"once".into());
        let challenge = s.challenge();
        assert_eq!(
            challenge,
            br#"realm="r\"e\\alm",nonce="n\"once",charset=utf-8,algorithm=md5-sess"#
        );
        let parsed = parse_directives(&challenge).expect("parses");
        assert_eq!(parsed["realm"], b"r\"e\\alm");
        assert_eq!(parsed["nonce"], b"n\"once");
    }

    proptest::proptest! {
        /// Whatever the bytes, the parser and the exchange return (mostly errors), never panic,
        /// and never authenticate.
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_directives(&input);
            let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            proptest::prop_assert!(s.respond(&input, passwords(&[("bob", "bobsecret")])).is_err());
        }

        /// Text built from the grammar's own characters, to reach deeper than random bytes.
        #[test]
        fn grammar_soup_never_panics(input in "[a-z=,\"\\\\ \t-]{0,300}") {
            let _ = parse_directives(input.as_bytes());
            let (mut s, _) = server(ZOOKEEPER_REALM, PURESASL_NONCE);
            let _ = s.respond(input.as_bytes(), passwords(&[("bob", "bobsecret")]));
        }

        /// Any values, quoted with `push_quoted`, parse back to themselves.
        #[test]
        fn quoted_values_round_trip(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), KNOWN_DIRECTIVES.len())
        ) {
            let mut text = Vec::new();
            for (name, value) in KNOWN_DIRECTIVES.iter().zip(&values) {
                text.extend_from_slice(name.as_bytes());
                text.extend_from_slice(b"=\"");
                push_quoted(&mut text, value);
                text.extend_from_slice(b"\" , ");
            }
            let parsed = parse_directives(&text).expect("well-formed");
            for (name, value) in KNOWN_DIRECTIVES.iter().zip(&values) {
                proptest::prop_assert_eq!(&parsed[name], value);
            }
        }
    }
}
