//! The on-disk layout of a journal file (systemd's `journal-def.h`, documented in
//! JOURNAL_FILE_FORMAT): the header, the object header, and the DATA, ENTRY and
//! ENTRY_ARRAY objects this reader follows, plus payload decompression.
//!
//! Everything here parses byte slices that were read from a file that another process may
//! be writing: every offset, size and count is checked, and a malformed value is an
//! [`Error`], never a panic or an out-of-bounds slice. All integers are little-endian.

use std::fmt;
use std::io::{self, Read, Write};

/// The first 8 bytes of every journal file.
pub const SIGNATURE: &[u8; 8] = b"LPKSHHRH";

/// `incompatible_flags` bits.
pub mod incompat {
    pub const COMPRESSED_XZ: u32 = 1 << 0;
    pub const COMPRESSED_LZ4: u32 = 1 << 1;
    pub const KEYED_HASH: u32 = 1 << 2;
    pub const COMPRESSED_ZSTD: u32 = 1 << 3;
    /// 32-bit offsets in entry items and entry arrays, and two more fields in DATA objects
    /// (systemd 252 writes compact files by default).
    pub const COMPACT: u32 = 1 << 4;
    /// Every flag this reader understands; a file with any other is refused.
    pub const SUPPORTED: u32 =
        COMPRESSED_XZ | COMPRESSED_LZ4 | KEYED_HASH | COMPRESSED_ZSTD | COMPACT;
}

/// Object `flags` bits: how a DATA object's payload is compressed.
pub mod obj_flags {
    pub const COMPRESSED_XZ: u8 = 1 << 0;
    pub const COMPRESSED_LZ4: u8 = 1 << 1;
    pub const COMPRESSED_ZSTD: u8 = 1 << 2;
    pub const COMPRESSED_MASK: u8 = COMPRESSED_XZ | COMPRESSED_LZ4 | COMPRESSED_ZSTD;
}

/// Object types.
pub mod obj_type {
    pub const DATA: u8 = 1;
    pub const FIELD: u8 = 2;
    pub const ENTRY: u8 = 3;
    pub const DATA_HASH_TABLE: u8 = 4;
    pub const FIELD_HASH_TABLE: u8 = 5;
    pub const ENTRY_ARRAY: u8 = 6;
    pub const TAG: u8 = 7;
}

/// The header fields up to `n_data` are in every file; later systemd versions appended more.
pub const HEADER_SIZE_MIN: u64 = 208;
/// Bytes of the header this reader looks at (through `tail_entry_array_n_entries`, systemd 252).
pub const HEADER_READ: usize = 272;
/// Every object starts with this header: type, flags, 6 reserved bytes, size.
pub const OBJECT_HEADER: u64 = 16;
/// DATA object fields before the payload (regular files; compact files add 8 bytes).
pub const DATA_FIXED: u64 = 64;
pub const DATA_FIXED_COMPACT: u64 = 72;
/// ENTRY object fields before the items.
pub const ENTRY_FIXED: u64 = 64;
/// ENTRY_ARRAY object fields before the items.
pub const ENTRY_ARRAY_FIXED: u64 = 24;
/// A decompressed payload larger than this is an error (journald's own limit on a field
/// is far larger, but a check has no use for more, and memory must stay bounded).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// `state` in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Offline,
    Online,
    Archived,
    Other(u8),
}

/// Why a file or an object could not be read. Carries the offset where it applies.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The bytes are not what the format allows (or not written completely yet).
    Malformed {
        offset: u64,
        what: String,
    },
    /// A valid file that uses something this reader does not implement.
    Unsupported(String),
}

impl Error {
    pub(crate) fn malformed(offset: u64, what: impl Into<String>) -> Self {
        Error::Malformed {
            offset,
            what: what.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Malformed { offset, what } => write!(f, "{what} at offset {offset}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn id128(b: &[u8], at: usize) -> [u8; 16] {
    let mut w = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        w.copy_from_slice(s);
    }
    w
}

/// A 128-bit ID (file, machine, boot, seqnum ID) as journalctl prints it: 32 hex digits.
pub fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header fields this reader uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub compatible_flags: u32,
    pub incompatible_flags: u32,
    pub state: State,
    pub file_id: [u8; 16],
    pub machine_id: [u8; 16],
    pub seqnum_id: [u8; 16],
    pub header_size: u64,
    pub arena_size: u64,
    pub data_hash_table_offset: u64,
    pub data_hash_table_size: u64,
    pub tail_object_offset: u64,
    pub n_objects: u64,
    pub n_entries: u64,
    pub tail_entry_seqnum: u64,
    pub head_entry_seqnum: u64,
    pub entry_array_offset: u64,
    pub head_entry_realtime: u64,
    pub tail_entry_realtime: u64,
}

impl Header {
    /// Parses the first bytes of a file. `bytes` may be shorter than [`HEADER_READ`] when
    /// the file is (`header_size` says how much of it counts).
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER_SIZE_MIN as usize {
            return Err(Error::malformed(0, "file shorter than a journal header"));
        }
        if &bytes[..8] != SIGNATURE {
            return Err(Error::malformed(0, "not a journal file (bad signature)"));
        }
        let incompatible_flags = le32(bytes, 12);
        let unknown = incompatible_flags & !incompat::SUPPORTED;
        if unknown != 0 {
            return Err(Error::Unsupported(format!(
                "incompatible header flags {unknown:#x}"
            )));
        }
        let state = match bytes[16] {
            0 => State::Offline,
            1 => State::Online,
            2 => State::Archived,
            n => State::Other(n),
        };
        let h = Header {
            compatible_flags: le32(bytes, 8),
            incompatible_flags,
            state,
            file_id: id128(bytes, 24),
            machine_id: id128(bytes, 40),
            seqnum_id: id128(bytes, 72),
            header_size: le64(bytes, 88),
            arena_size: le64(bytes, 96),
            data_hash_table_offset: le64(bytes, 104),
            data_hash_table_size: le64(bytes, 112),
            tail_object_offset: le64(bytes, 136),
            n_objects: le64(bytes, 144),
            n_entries: le64(bytes, 152),
            tail_entry_seqnum: le64(bytes, 160),
            head_entry_seqnum: le64(bytes, 168),
            entry_array_offset: le64(bytes, 176),
            head_entry_realtime: le64(bytes, 184),
            tail_entry_realtime: le64(bytes, 192),
        };
        if h.header_size < HEADER_SIZE_MIN || !h.header_size.is_multiple_of(8) {
            return Err(Error::malformed(
                88,
                format!("header size {}", h.header_size),
            ));
        }
        if h.header_size.checked_add(h.arena_size).is_none() {
            return Err(Error::malformed(96, "arena size overflows"));
        }
        Ok(h)
    }

    pub fn compact(&self) -> bool {
        self.incompatible_flags & incompat::COMPACT != 0
    }

    pub fn keyed_hash(&self) -> bool {
        self.incompatible_flags & incompat::KEYED_HASH != 0
    }

    /// The end of the space objects may occupy.
    pub fn arena_end(&self) -> u64 {
        self.header_size.saturating_add(self.arena_size)
    }

    /// The hash of a DATA payload as this file computes it.
    pub fn hash(&self, payload: &[u8]) -> u64 {
        if self.keyed_hash() {
            crate::hash::siphash24(payload, &self.file_id)
        } else {
            crate::hash::jenkins64(payload)
        }
    }

    /// Bytes per entry item in an ENTRY object.
    pub fn entry_item_size(&self) -> u64 {
        if self.compact() { 4 } else { 16 }
    }

    /// Bytes per item in an ENTRY_ARRAY object.
    pub fn array_item_size(&self) -> u64 {
        if self.compact() { 4 } else { 8 }
    }

    pub fn data_fixed(&self) -> u64 {
        if self.compact() {
            DATA_FIXED_COMPACT
        } else {
            DATA_FIXED
        }
    }
}

/// The 16 bytes every object starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectHeader {
    pub kind: u8,
    pub flags: u8,
    pub size: u64,
}

impl ObjectHeader {
    pub fn parse(b: &[u8]) -> ObjectHeader {
        ObjectHeader {
            kind: b.first().copied().unwrap_or(0),
            flags: b.get(1).copied().unwrap_or(0),
            size: le64(b, 8),
        }
    }
}

/// The smallest valid size of an object of `kind` in a file of this mode.
pub fn min_size(kind: u8, h: &Header) -> u64 {
    match kind {
        obj_type::DATA => h.data_fixed(),
        obj_type::ENTRY => ENTRY_FIXED,
        obj_type::ENTRY_ARRAY => ENTRY_ARRAY_FIXED,
        _ => OBJECT_HEADER,
    }
}

/// The fixed fields of a DATA object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHead {
    pub flags: u8,
    pub size: u64,
    pub hash: u64,
    pub next_hash_offset: u64,
    pub entry_offset: u64,
    pub entry_array_offset: u64,
    pub n_entries: u64,
}

impl DataHead {
    pub fn parse(b: &[u8]) -> DataHead {
        DataHead {
            flags: b.get(1).copied().unwrap_or(0),
            size: le64(b, 8),
            hash: le64(b, 16),
            next_hash_offset: le64(b, 24),
            entry_offset: le64(b, 40),
            entry_array_offset: le64(b, 48),
            n_entries: le64(b, 56),
        }
    }

    pub fn compressed(&self) -> bool {
        self.flags & obj_flags::COMPRESSED_MASK != 0
    }
}

/// The fixed fields of an ENTRY object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHead {
    pub seqnum: u64,
    pub realtime: u64,
    pub monotonic: u64,
    pub boot_id: [u8; 16],
    pub xor_hash: u64,
}

impl EntryHead {
    pub fn parse(b: &[u8]) -> EntryHead {
        EntryHead {
            seqnum: le64(b, 16),
            realtime: le64(b, 24),
            monotonic: le64(b, 32),
            boot_id: id128(b, 40),
            xor_hash: le64(b, 56),
        }
    }
}

/// The DATA object offsets an ENTRY object's items point at, from its bytes (the whole
/// object). Regular items are (offset, hash) pairs; compact ones are 32-bit offsets.
pub fn entry_items<'a>(obj: &'a [u8], h: &Header) -> impl Iterator<Item = u64> + 'a {
    let step = h.entry_item_size() as usize;
    let compact = h.compact();
    obj.get(ENTRY_FIXED as usize..)
        .unwrap_or_default()
        .chunks_exact(step)
        .map(move |c| {
            if compact {
                u64::from(le32(c, 0))
            } else {
                le64(c, 0)
            }
        })
}

/// Decompresses (or copies) a DATA payload into `out`, which is cleared first. At most
/// [`MAX_PAYLOAD`] bytes are produced; more is an error.
pub fn decode_payload(flags: u8, raw: &[u8], offset: u64, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let bad = |what: String| Error::malformed(offset, what);
    match flags & obj_flags::COMPRESSED_MASK {
        0 => {
            out.extend_from_slice(raw);
            Ok(())
        }
        obj_flags::COMPRESSED_ZSTD => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(raw)
                .map_err(|e| bad(format!("zstd payload: {e}")))?;
            read_bounded(&mut decoder, out).map_err(|e| bad(format!("zstd payload: {e}")))
        }
        obj_flags::COMPRESSED_LZ4 => {
            // systemd prefixes the LZ4 block with the uncompressed size (64-bit LE).
            if raw.len() < 8 {
                return Err(bad("lz4 payload shorter than its size prefix".into()));
            }
            let size = le64(raw, 0);
            if size > MAX_PAYLOAD as u64 {
                return Err(bad(format!("lz4 payload of {size} bytes is too large")));
            }
            out.resize(size as usize, 0);
            let n = lz4_flex::block::decompress_into(&raw[8..], out)
                .map_err(|e| bad(format!("lz4 payload: {e}")))?;
            out.truncate(n);
            Ok(())
        }
        obj_flags::COMPRESSED_XZ => {
            let mut sink = Bounded { out };
            lzma_rs::xz_decompress(&mut io::BufReader::new(raw), &mut sink)
                .map_err(|e| bad(format!("xz payload: {e}")))
        }
        other => Err(bad(format!("several compression flags set ({other:#x})"))),
    }
}

fn read_bounded(r: &mut impl Read, out: &mut Vec<u8>) -> io::Result<()> {
    let n = r.take(MAX_PAYLOAD as u64 + 1).read_to_end(out)?;
    if n > MAX_PAYLOAD {
        return Err(io::Error::other(
            "decompresses to more than the payload limit",
        ));
    }
    Ok(())
}

/// A writer that refuses to grow past [`MAX_PAYLOAD`].
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > MAX_PAYLOAD {
            return Err(io::Error::other(
                "decompresses to more than the payload limit",
            ));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_bad_headers_are_errors() {
        assert!(Header::parse(b"").is_err());
        assert!(Header::parse(&[0u8; 300]).is_err());
        let mut h = vec![0u8; 272];
        h[..8].copy_from_slice(SIGNATURE);
        h[88..96].copy_from_slice(&272u64.to_le_bytes());
        assert!(Header::parse(&h).is_ok());
        h[12] = 0x40; // an incompatible flag from the future
        assert!(matches!(Header::parse(&h), Err(Error::Unsupported(_))));
        h[12] = 0;
        h[88..96].copy_from_slice(&13u64.to_le_bytes());
        assert!(Header::parse(&h).is_err());
    }

    #[test]
    fn lz4_payloads_with_the_size_prefix() {
        let text = b"MESSAGE="
            .iter()
            .chain([b'x'; 5000].iter())
            .copied()
            .collect::<Vec<u8>>();
        let mut raw = (text.len() as u64).to_le_bytes().to_vec();
        raw.extend(lz4_flex::block::compress(&text));
        let mut out = Vec::new();
        decode_payload(obj_flags::COMPRESSED_LZ4, &raw, 0, &mut out).unwrap();
        assert_eq!(out, text);
        // A lying size prefix or a cut block is an error, not a panic.
        raw[0..8].copy_from_slice(&(u64::MAX).to_le_bytes());
        assert!(decode_payload(obj_flags::COMPRESSED_LZ4, &raw, 0, &mut out).is_err());
        assert!(decode_payload(obj_flags::COMPRESSED_LZ4, &raw[..5], 0, &mut out).is_err());
    }

    #[test]
    fn xz_payloads() {
        let text = b"MESSAGE=hello xz hello xz hello xz".to_vec();
        let mut raw = Vec::new();
        lzma_rs::xz_compress(&mut io::Cursor::new(&text), &mut raw).unwrap();
        let mut out = Vec::new();
        decode_payload(obj_flags::COMPRESSED_XZ, &raw, 0, &mut out).unwrap();
        assert_eq!(out, text);
        assert!(
            decode_payload(obj_flags::COMPRESSED_XZ, &raw[..raw.len() / 2], 0, &mut out).is_err()
        );
    }

    #[test]
    fn garbage_zstd_is_an_error() {
        let mut out = Vec::new();
        assert!(
            decode_payload(
                obj_flags::COMPRESSED_ZSTD,
                b"\x28\xb5\x2f\xfdgarbage",
                0,
                &mut out
            )
            .is_err()
        );
        assert!(decode_payload(obj_flags::COMPRESSED_ZSTD, b"", 0, &mut out).is_err());
        assert!(decode_payload(obj_flags::COMPRESSED_MASK, b"x", 0, &mut out).is_err());
    }
}
