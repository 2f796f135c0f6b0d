//! The envelope of a log check's saved position ([`super::position`], [`super::resume`]):
//!
//! ```text
//! vigil-log/1 <file|journal> k=<check key> <body> sum=<checksum>
//! ```
//!
//! `k` is a hash of what the check reads and its pattern (the in-memory cursors' key), so
//! a token saved for another path, unit, directory or pattern is refused; `sum` is a hash
//! of everything before it, so a cut or altered token is refused. Both are SipHash-2-4
//! with fixed keys, as 16 hex digits: they name and guard, they are not secrets.

use std::os::unix::ffi::OsStrExt;

use crate::model::{LogCheck, LogSource};

const PREFIX: &str = "vigil-log/";
/// The version this code writes and reads.
pub(super) const VERSION: u32 = 1;
/// A token is never longer than this: the journal position's bound plus the envelope.
pub(super) const MAX_LEN: usize = vigil_journal::follow::position::MAX_LEN + 256;

const KEY_KEY: &[u8; 16] = b"vigil-log-key-k1";
const SUM_KEY: &[u8; 16] = b"vigil-log-sum-k1";

/// What the token's body describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Journal,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Journal => "journal",
        }
    }

    fn of(check: &LogCheck) -> Kind {
        match check.source {
            LogSource::File(_) => Kind::File,
            LogSource::Journal(_) => Kind::Journal,
        }
    }
}

/// The check's identity: its source and pattern.
fn key(check: &LogCheck) -> u64 {
    let mut data = Vec::new();
    let mut part = |bytes: &[u8]| {
        data.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        data.extend_from_slice(bytes);
    };
    match &check.source {
        LogSource::File(path) => {
            part(b"file");
            part(path.as_os_str().as_bytes());
        }
        LogSource::Journal(j) => {
            part(b"journal");
            part(j.unit.as_bytes());
            match &j.directory {
                Some(dir) => part(dir.as_os_str().as_bytes()),
                None => part(b"\0default"),
            }
        }
    }
    part(check.pattern.as_str().as_bytes());
    vigil_journal::siphash24(&data, KEY_KEY)
}

/// The token for `check` with this body (one line: `body` has no newline).
pub(super) fn seal(check: &LogCheck, body: &str) -> String {
    let text = format!(
        "{PREFIX}{VERSION} {} k={:016x} {body}",
        Kind::of(check).word(),
        key(check)
    );
    let sum = vigil_journal::siphash24(text.as_bytes(), SUM_KEY);
    format!("{text} sum={sum:016x}")
}

/// The body of a token saved for `check`, or why it cannot be used.
pub(super) fn open<'a>(check: &LogCheck, token: &'a str) -> Result<&'a str, String> {
    if token.len() > MAX_LEN {
        return Err(format!(
            "{} bytes, longer than a log position can be ({MAX_LEN})",
            token.len()
        ));
    }
    let Some(rest) = token.strip_prefix(PREFIX) else {
        let start: String = token.chars().take(16).collect();
        return Err(format!(
            "not a log position (it starts {start:?}, not {PREFIX:?})"
        ));
    };
    let version = rest.split(' ').next().unwrap_or_default();
    if version != VERSION.to_string() {
        let shown: String = version.chars().take(16).collect();
        return Err(format!(
            "a log position of version {shown:?}; this Vigil reads version {VERSION}"
        ));
    }
    let Some((text, sum)) = token.rsplit_once(" sum=") else {
        return Err("corrupt: no checksum (cut short?)".to_owned());
    };
    let expected = format!(
        "{:016x}",
        vigil_journal::siphash24(text.as_bytes(), SUM_KEY)
    );
    if sum != expected {
        return Err("corrupt: the checksum does not match (cut short or altered)".to_owned());
    }
    let mut words = text.splitn(4, ' ');
    let (_, kind, k, body) = (words.next(), words.next(), words.next(), words.next());
    let want = Kind::of(check);
    if kind != Some(want.word()) {
        let saved = kind.unwrap_or_default();
        return Err(format!(
            "a position of a {saved} source, but this check reads a {}",
            want.word()
        ));
    }
    if k != Some(format!("k={:016x}", key(check)).as_str()) {
        return Err(
            "saved for another path, journal unit or directory, or pattern than this check's"
                .to_owned(),
        );
    }
    body.ok_or_else(|| "corrupt: no position".to_owned())
}

/// A number: 1 to 16 lowercase hex digits (no sign, no prefix).
pub(super) fn hex(s: &str, what: &str) -> Result<u64, String> {
    let bad = || format!("corrupt: {what} {s:?} is not a hex number");
    if s.is_empty()
        || s.len() > 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    u64::from_str_radix(s, 16).map_err(|_| bad())
}
