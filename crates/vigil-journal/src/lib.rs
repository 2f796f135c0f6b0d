//! Reads systemd journal files natively: no `journalctl`, no libsystemd, no `unsafe`.
//!
//! - [`format`]: the on-disk layout (header, objects, compression flags) and payload
//!   decompression (ZSTD, which Debian 12's journald writes; LZ4 and XZ from older ones).
//! - [`file`]: one file, read with bounds-checked `pread`s: objects, the data hash table,
//!   entry lists.
//! - [`follow`]: what a `kind = "log"` check with `journal_unit` calls: a [`Follower`] per
//!   check hands over the unit's entries written since its previous run; its [`Position`]
//!   carries that to a later process as one line of text.
//!
//! Nothing here panics on a malformed or half-written file: every offset, size and count is
//! checked and the problem is reported as an error (tests/garbage.rs feeds random and
//! truncated files through every path).

#![forbid(unsafe_code)]

pub mod file;
pub mod follow;
pub mod format;
mod hash;

pub use file::JournalFile;
pub use follow::{
    Cursor, Entry, Follower, Limits, Poll, PollError, Position, PositionError, Roots,
};
pub use format::{Error, Header, State};
pub use hash::{jenkins64, siphash24};

/// Every entry of a file in the order written, with all its fields decoded: for tests,
/// tools and diagnosis, not for following (which reads only one unit's entries).
pub fn read_all_entries(path: &std::path::Path) -> Result<Vec<OwnedEntry>, Error> {
    let mut jf = JournalFile::open(path)?;
    let list = jf.global_list();
    let mut out = Vec::new();
    let mut hint = None;
    let (mut buf, mut payload, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..list.len {
        let offset = jf.list_item(&list, i, &mut hint)?;
        let head = jf.entry(offset, &mut buf)?;
        let items: Vec<u64> = format::entry_items(&buf, jf.header()).collect();
        let mut fields = Vec::with_capacity(items.len());
        for item in items {
            jf.data_payload(item, &mut payload, &mut scratch)?;
            fields.push(payload.clone());
        }
        let h = jf.header();
        out.push(OwnedEntry {
            offset,
            cursor: Cursor {
                seqnum_id: h.seqnum_id,
                seqnum: head.seqnum,
                boot_id: head.boot_id,
                monotonic: head.monotonic,
                realtime: head.realtime,
                xor_hash: head.xor_hash,
            },
            fields,
        });
    }
    Ok(out)
}

/// An entry with its fields (`FIELD=value` each), as [`read_all_entries`] returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    pub offset: u64,
    pub cursor: Cursor,
    pub fields: Vec<Vec<u8>>,
}

impl OwnedEntry {
    /// The first value of `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find_map(|f| {
            f.strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    }
}
