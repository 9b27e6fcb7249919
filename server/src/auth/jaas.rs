//! A parser for JAAS login configuration files, as ZooKeeper users write them to give the
//! server its DIGEST-MD5 users (the `Server` section) and the client its credentials (the
//! `Client` section):
//!
//! ```text
//! Server {
//!        org.apache.zookeeper.server.auth.DigestLoginModule required
//!        user_super="adminsecret"
//!        user_bob="bobsecret";
//! };
//! ```
//!
//! The grammar is the one Java's `ConfigFile` accepts: sections `Name { modules };`, each module
//! `ClassName flag name=value ... ;`, values quoted (`"..."` or `'...'`, with Java's
//! `StreamTokenizer` backslash escapes) or bare words, and `//` and `/* */` comments. Java's
//! `${property}` expansion is not performed: quote such a value to keep it literally (bare, its
//! `{` is a syntax error).
//!
//! Option values are usually passwords, so they appear neither in error messages nor in the
//! `Debug` output of [`LoginModule`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::str::Chars;

/// The largest JAAS file accepted. Real ones are a few hundred bytes; the bound keeps a wrong
/// path (a log file, a device) from being read into memory whole.
pub const MAX_FILE_LEN: usize = 1024 * 1024;

/// The login module whose `user_<name>="password"` options define ZooKeeper's DIGEST-MD5 users.
pub const DIGEST_LOGIN_MODULE: &str = "org.apache.zookeeper.server.auth.DigestLoginModule";

/// The prefix that marks a DIGEST-MD5 user among a login module's options.
const USER_PREFIX: &str = "user_";

/// Why a JAAS file was rejected. Messages carry line numbers and option *names*, never values.
#[derive(Debug, thiserror::Error)]
pub enum JaasError {
    /// The file is over [`MAX_FILE_LEN`].
    #[error("JAAS file is over the {max}-byte limit")]
    TooLarge {
        /// The limit, [`MAX_FILE_LEN`].
        max: usize,
    },
    /// The file could not be read.
    #[error("reading JAAS file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("JAAS file {path} is not UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A quoted value has no closing quote before the end of its line.
    #[error("line {line}: quoted string is not closed before the end of the line")]
    UnterminatedQuote {
        /// The line the quote opened on.
        line: usize,
    },
    /// A `/*` comment has no `*/`.
    #[error("line {line}: /* comment is never closed")]
    UnterminatedComment {
        /// The line the comment opened on.
        line: usize,
    },
    /// The file does not follow the grammar.
    #[error("line {line}: expected {expected}, found {found}")]
    Syntax {
        /// The line of the offending token (or the last line, at the end of the file).
        line: usize,
        /// What the grammar wanted there.
        expected: &'static str,
        /// What kind of token was there (never its text, which may be a password).
        found: &'static str,
    },
    /// A control flag other than required, requisite, sufficient or optional.
    #[error(
        "line {line}: unknown control flag (expected required, requisite, sufficient or optional)"
    )]
    BadFlag {
        /// The flag's line.
        line: usize,
    },
    /// Two sections with one name: Java refuses these too, and silently picking one would hide
    /// users.
    #[error("line {line}: section {name:?} is defined twice")]
    DuplicateSection {
        /// The second definition's line.
        line: usize,
        /// The section.
        name: String,
    },
    /// One option twice in one login module: Java keeps the last one silently, which hides a
    /// copy-and-paste mistake in a password list, so it is an error here.
    #[error("line {line}: option {name:?} is given twice in one login module")]
    DuplicateOption {
        /// The second occurrence's line.
        line: usize,
        /// The option's name.
        name: String,
    },
}

/// A login module's control flag (how its result combines with the others'; kept for
/// completeness, ZooKeeper's DIGEST-MD5 users do not depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFlag {
    /// `required`
    Required,
    /// `requisite`
    Requisite,
    /// `sufficient`
    Sufficient,
    /// `optional`
    Optional,
}

impl ControlFlag {
    /// Java compares flags case-insensitively.
    fn parse(word: &str) -> Option<Self> {
        [
            ("required", Self::Required),
            ("requisite", Self::Requisite),
            ("sufficient", Self::Sufficient),
            ("optional", Self::Optional),
        ]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|(_, flag)| flag)
    }
}

/// One `ClassName flag options... ;` entry of a section.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginModule {
    /// The module's Java class name, e.g. [`DIGEST_LOGIN_MODULE`].
    pub class: String,
    /// Its control flag.
    pub flag: ControlFlag,
    /// Its `name=value` options (values are often passwords: see the `Debug` impl).
    pub options: BTreeMap<String, String>,
}

/// Prints option names only: a `LoginModule` logged with `{:?}` must not leak passwords.
impl fmt::Debug for LoginModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.keys().map(|k| (k, format_args!("<redacted>"))))
                    .finish()
            }
        }
        f.debug_struct("LoginModule")
            .field("class", &self.class)
            .field("flag", &self.flag)
            .field("options", &Redacted(&self.options))
            .finish()
    }
}

/// A parsed JAAS file: its sections by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jaas {
    sections: BTreeMap<String, Vec<LoginModule>>,
}

impl Jaas {
    /// The login modules of section `name` (names are case-sensitive, as in Java).
    pub fn section(&self, name: &str) -> Option<&[LoginModule]> {
        self.sections.get(name).map(Vec::as_slice)
    }

    /// The names of all sections.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// The DIGEST-MD5 users of `section` (ZooKeeper's is `Server`): every `user_<name>=password`
    /// option of its [`DIGEST_LOGIN_MODULE`] entries, by name. A later entry overrides an earlier
    /// one for the same user, as in ZooKeeper's `SaslServerCallbackHandler`; `user_` with an
    /// empty name is skipped. An absent section gives no users.
    pub fn digest_users(&self, section: &str) -> BTreeMap<String, String> {
        self.section(section)
            .unwrap_or_default()
            .iter()
            .filter(|m| m.class == DIGEST_LOGIN_MODULE)
            .flat_map(|m| &m.options)
            .filter_map(|(key, password)| {
                let user = key.strip_prefix(USER_PREFIX)?;
                (!user.is_empty()).then(|| (user.to_owned(), password.clone()))
            })
            .collect()
    }
}

/// Reads and parses the JAAS file at `path`, refusing files over [`MAX_FILE_LEN`].
pub fn read_file(path: &Path) -> Result<Jaas, JaasError> {
    let io = |source| JaasError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so that an oversized file is detected without reading it all.
    file.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_FILE_LEN {
        return Err(JaasError::TooLarge { max: MAX_FILE_LEN });
    }
    let text = String::from_utf8(bytes).map_err(|_| JaasError::NotUtf8 {
        path: path.to_owned(),
    })?;
    parse(&text)
}

/// Parses the text of a JAAS file.
pub fn parse(text: &str) -> Result<Jaas, JaasError> {
    if text.len() > MAX_FILE_LEN {
        return Err(JaasError::TooLarge { max: MAX_FILE_LEN });
    }
    let mut parser = Parser {
        lexer: Lexer {
            chars: text.chars().peekable(),
            line: 1,
        },
        last_line: 1,
    };
    let mut jaas = Jaas::default();
    while let Some((token, line)) = parser.next()? {
        let name = match token {
            Token::Word(name) | Token::Quoted(name) => name,
            other => return Err(syntax(line, "a section name", &other)),
        };
        parser.expect(Token::LBrace, "`{`")?;
        let mut modules = Vec::new();
        loop {
            match parser.next_or_eof("a login module class name or `}`")? {
                (Token::RBrace, _) => break,
                (Token::Word(class), _) => modules.push(parser.module(class)?),
                (other, line) => {
                    return Err(syntax(line, "a login module class name or `}`", &other))
                }
            }
        }
        parser.expect(Token::Semi, "`;` after `}`")?;
        if jaas.sections.contains_key(&name) {
            return Err(JaasError::DuplicateSection { line, name });
        }
        jaas.sections.insert(name, modules);
    }
    Ok(jaas)
}

fn syntax(line: usize, expected: &'static str, found: &Token) -> JaasError {
    JaasError::Syntax {
        line,
        expected,
        found: found.kind(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    LBrace,
    RBrace,
    Semi,
    Eq,
}

impl Token {
    /// What an error message may say about a token: its kind, never its text.
    fn kind(&self) -> &'static str {
        match self {
            Token::Word(_) => "a word",
            Token::Quoted(_) => "a quoted string",
            Token::LBrace => "`{`",
            Token::RBrace => "`}`",
            Token::Semi => "`;`",
            Token::Eq => "`=`",
        }
    }
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    line: usize,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// The character after the next one, to tell `//` and `/*` from a `/` inside a word.
    fn peek2(&self) -> Option<char> {
        let mut ahead = self.chars.clone();
        ahead.next();
        ahead.next()
    }

    fn comment_ahead(&mut self) -> bool {
        self.chars.peek() == Some(&'/') && matches!(self.peek2(), Some('/' | '*'))
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), JaasError> {
        loop {
            match self.chars.peek().copied() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.peek2() == Some('/') => {
                    while self.bump().is_some_and(|c| c != '\n') {}
                }
                Some('/') if self.peek2() == Some('*') => {
                    let start = self.line;
                    self.bump();
                    self.bump();
                    let mut prev = '\0';
                    loop {
                        match self.bump() {
                            None => return Err(JaasError::UnterminatedComment { line: start }),
                            Some('/') if prev == '*' => break,
                            Some(c) => prev = c,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and the line it starts on.
    fn token(&mut self) -> Result<Option<(Token, usize)>, JaasError> {
        self.skip_trivia()?;
        let line = self.line;
        let Some(c) = self.bump() else {
            return Ok(None);
        };
        let token = match c {
            '{' => Token::LBrace,
            '}' => Token::RBrace,
            ';' => Token::Semi,
            '=' => Token::Eq,
            '"' | '\'' => Token::Quoted(self.quoted(c, line)?),
            first => {
                let mut word = String::from(first);
                while let Some(&c) = self.chars.peek() {
                    if c.is_whitespace() || "{};=\"'".contains(c) || self.comment_ahead() {
                        break;
                    }
                    word.push(c);
                    self.bump();
                }
                Token::Word(word)
            }
        };
        Ok(Some((token, line)))
    }

    /// The rest of a quoted string opened by `quote`, with `StreamTokenizer`'s escapes: `\n`,
    /// `\t`, `\r`, `\a`, `\b`, `\f`, `\v`, octal `\0`..`\377`, and `\x` for any other `x`.
    /// Like Java's tokenizer, a string cannot span lines (Java ends it silently; here it is an
    /// error, since it almost always means a missing quote).
    fn quoted(&mut self, quote: char, line: usize) -> Result<String, JaasError> {
        let mut value = String::new();
        loop {
            let c = match self.bump() {
                None | Some('\n') => return Err(JaasError::UnterminatedQuote { line }),
                Some(c) if c == quote => return Ok(value),
                Some('\\') => match self.bump() {
                    None | Some('\n') => return Err(JaasError::UnterminatedQuote { line }),
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('a') => '\u{7}',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('v') => '\u{b}',
                    Some(d @ '0'..='7') => self.octal(d),
                    Some(other) => other,
                },
                Some(c) => c,
            };
            value.push(c);
        }
    }

    /// An octal escape after its first digit: up to three digits if the first is 0-3, else two
    /// (so the value stays within 0o377).
    fn octal(&mut self, first: char) -> char {
        let mut value = first.to_digit(8).unwrap_or(0);
        let max_digits = if first <= '3' { 3 } else { 2 };
        for _ in 1..max_digits {
            match self.chars.peek().and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    value = value * 8 + d;
                    self.bump();
                }
                None => break,
            }
        }
        char::from_u32(value).unwrap_or('\0')
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The line of the last token read: where an unexpected end of file is reported, rather
    /// than on the empty line after the file's final newline.
    last_line: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Option<(Token, usize)>, JaasError> {
        let token = self.lexer.token()?;
        if let Some((_, line)) = &token {
            self.last_line = *line;
        }
        Ok(token)
    }

    fn next_or_eof(&mut self, expected: &'static str) -> Result<(Token, usize), JaasError> {
        self.next()?.ok_or(JaasError::Syntax {
            line: self.last_line,
            expected,
            found: "the end of the file",
        })
    }

    fn expect(&mut self, want: Token, expected: &'static str) -> Result<(), JaasError> {
        match self.next_or_eof(expected)? {
            (token, _) if token == want => Ok(()),
            (other, line) => Err(syntax(line, expected, &other)),
        }
    }

    /// A login module after its class name: the flag, the options and the closing `;`.
    fn module(&mut self, class: String) -> Result<LoginModule, JaasError> {
        let flag = match self.next_or_eof("a control flag")? {
            (Token::Word(word), line) => {
                ControlFlag::parse(&word).ok_or(JaasError::BadFlag { line })?
            }
            (other, line) => return Err(syntax(line, "a control flag", &other)),
        };
        let mut options = BTreeMap::new();
        loop {
            match self.next_or_eof("an option or `;`")? {
                (Token::Semi, _) => break,
                (Token::Word(name), line) => {
                    self.expect(Token::Eq, "`=` after an option name")?;
                    let value = match self.next_or_eof("an option value")? {
                        (Token::Word(v) | Token::Quoted(v), _) => v,
                        (other, line) => return Err(syntax(line, "an option value", &other)),
                    };
                    if options.contains_key(&name) {
                        return Err(JaasError::DuplicateOption { line, name });
                    }
                    options.insert(name, value);
                }
                (other, line) => return Err(syntax(line, "an option or `;`", &other)),
            }
        }
        Ok(LoginModule {
            class,
            flag,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZK_EXAMPLE: &str = r#"
Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"
       user_bob="bobsecret";
};
Client {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="bob"
       password="bobsecret";
};
"#;

    fn users(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn zookeeper_example() {
        let jaas = parse(ZK_EXAMPLE).expect("parses");
        assert_eq!(
            jaas.section_names().collect::<Vec<_>>(),
            ["Client", "Server"]
        );
        let server = jaas.section("Server").expect("Server section");
        assert_eq!(server.len(), 1);
        assert_eq!(server[0].class, DIGEST_LOGIN_MODULE);
        assert_eq!(server[0].flag, ControlFlag::Required);
        assert_eq!(
            jaas.digest_users("Server"),
            users(&[("super", "adminsecret"), ("bob", "bobsecret")])
        );
        let client = &jaas.section("Client").expect("Client section")[0];
        assert_eq!(client.options["username"], "bob");
        assert_eq!(client.options["password"], "bobsecret");
        // `username`/`password` are not `user_` options.
        assert!(jaas.digest_users("Client").is_empty());
        assert!(jaas.section("server").is_none(), "names are case-sensitive");
        assert!(jaas.digest_users("Missing").is_empty());
    }

    #[test]
    fn comments_modules_flags_and_values() {
        let text = r#"
// A line comment. { ; = " are ignored here.
/* A block comment
   over lines, with "an unclosed quote */
Server { // trailing comment
    com.example.OtherModule SUFFICIENT debug=true path=/etc/zk/x.conf;
    org.apache.zookeeper.server.auth.DigestLoginModule Required
        user_alice = "p\"w\\d\tx\101"   /* inline */ user_bob=plain-word_1.2
        user_='ignored' user_carol='single quoted';
    org.apache.zookeeper.server.auth.DigestLoginModule optional user_bob="later wins";
    com.example.OtherModule requisite user_mallory="not a digest module";
};
"Quoted.Name" { };
"#;
        let jaas = parse(text).expect("parses");
        let server = jaas.section("Server").expect("Server");
        assert_eq!(server.len(), 4);
        assert_eq!(server[0].flag, ControlFlag::Sufficient);
        assert_eq!(server[0].options["path"], "/etc/zk/x.conf");
        assert_eq!(server[1].flag, ControlFlag::Required);
        assert_eq!(server[2].flag, ControlFlag::Optional);
        assert_eq!(server[3].flag, ControlFlag::Requisite);
        assert_eq!(server[1].options["user_alice"], "p\"w\\d\txA");
        // 'it''s' is two adjacent quoted strings, not an escaped quote: the second one is not an
        // option name.
        assert!(parse("S { M required user_carol='it''s'; };").is_err());
        assert_eq!(
            jaas.digest_users("Server"),
            users(&[
                ("alice", "p\"w\\d\txA"),
                ("bob", "later wins"),
                ("carol", "single quoted"),
            ])
        );
        assert_eq!(jaas.section("Quoted.Name"), Some(&[][..]));
    }

    #[test]
    fn escapes_follow_java() {
        let jaas =
            parse(r#"S { M required a="\n\r\a\b\f\v\0\7\101\477\q\'" b='"'; };"#).expect("parses");
        let m = &jaas.section("S").expect("S")[0];
        assert_eq!(m.options["a"], "\n\r\u{7}\u{8}\u{c}\u{b}\0\u{7}A\u{27}7q'");
        assert_eq!(m.options["b"], "\"");
    }

    #[test]
    fn errors_carry_line_numbers() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "Server {\n  M required\n  user_bob=\"secret;\n};\n",
                3,
                "quoted",
            ),
            (
                "Server {\n  M required user_bob=\"x\"\n};\n",
                3,
                "expected an option",
            ),
            (
                "Server {\n  M mandatory user_bob=\"x\";\n};\n",
                2,
                "control flag",
            ),
            ("Server {\n  M required user_bob \"x\";\n};\n", 2, "`=`"),
            ("Server {\n  M required user_bob=;\n};\n", 2, "option value"),
            ("Server {\n  M required;\n}\n", 3, "`;` after `}`"),
            ("Server \n{\n  M required;\n", 3, "end of the file"),
            ("\n\n/* open\n comment", 3, "comment"),
            ("{ };", 1, "section name"),
            ("A { };\nA { };\n", 2, "defined twice"),
            ("A { M required\n x=1\n x=\"2\"; };\n", 3, "given twice"),
            ("A { \"M\" required; };", 1, "class name"),
        ];
        for (text, line, what) in cases {
            let err = parse(text).expect_err(text);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("line {line}:")),
                "{text:?}: {msg:?} should be on line {line}"
            );
            assert!(msg.contains(what), "{text:?}: {msg:?} should say {what:?}");
        }
    }

    #[test]
    fn errors_and_debug_never_show_values() {
        let secret = "hunter2-SECRET";
        let bad = [
            format!("S {{ M required user_a=\"{secret}\" }};"),
            format!("S {{ M required user_a=\"{secret}\" user_a=\"{secret}\"; }};"),
            format!("S {{ M required user_a={secret} {secret}; }};"),
            format!("S {{ M required user_a=\"{secret}"),
            format!("S {{ M required user_a = = {secret}; }};"),
        ];
        for text in &bad {
            let err = parse(text).expect_err(text);
            assert!(!err.to_string().contains(secret), "{err}");
            assert!(!format!("{err:?}").contains(secret), "{err:?}");
        }
        let jaas = parse(&format!("S {{ M required user_a=\"{secret}\"; }};")).expect("parses");
        let debug = format!("{jaas:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(
            debug.contains("user_a") && debug.contains("<redacted>"),
            "{debug}"
        );
    }

    #[test]
    fn size_bound() {
        let mut text = String::from("S { M required; };");
        text.push_str(&" ".repeat(MAX_FILE_LEN));
        assert!(matches!(parse(&text), Err(JaasError::TooLarge { .. })));
        assert!(parse(&text[..MAX_FILE_LEN]).is_ok());
    }

    #[test]
    fn read_file_bounds_and_utf8() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let good = dir.path().join("jaas.conf");
        std::fs::write(&good, ZK_EXAMPLE)?;
        assert_eq!(read_file(&good)?.digest_users("Server").len(), 2);
        let big = dir.path().join("big.conf");
        std::fs::write(&big, vec![b' '; MAX_FILE_LEN + 1])?;
        assert!(matches!(read_file(&big), Err(JaasError::TooLarge { .. })));
        let latin1 = dir.path().join("latin1.conf");
        std::fs::write(&latin1, b"S { M required user_a=\"\xe9\"; };")?;
        assert!(matches!(read_file(&latin1), Err(JaasError::NotUtf8 { .. })));
        let missing = dir.path().join("missing.conf");
        assert!(matches!(read_file(&missing), Err(JaasError::Io { .. })));
        Ok(())
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(parse("").expect("empty"), Jaas::default());
        assert_eq!(
            parse("// nothing\n/* */\n").expect("comments"),
            Jaas::default()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}|[{};=\"'/*\\\\ \na-z_]{0,200}") {
            let _ = parse(&text);
        }
    }
}
