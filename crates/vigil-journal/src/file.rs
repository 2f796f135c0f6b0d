//! One journal file opened for reading: bounds-checked reads through a small block cache,
//! typed access to DATA/ENTRY/ENTRY_ARRAY objects, the data hash table lookup, and entry
//! lists (the file's global list, and each DATA object's list of the entries that use it).
//!
//! Reads use `pread` on a plain file descriptor (no mmap: safe Rust only). A file that
//! journald is writing is read as a snapshot: [`JournalFile::refresh`] re-reads the header
//! and the file size, and every count (`n_entries` of the header or of a DATA object) bounds
//! what is followed. journald writes an object before it links it and links it before it
//! bumps the count, so what a count covers is complete; anything else that does not parse
//! is reported as [`Error::Malformed`] and the caller retries later.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{
    self, DataHead, ENTRY_ARRAY_FIXED, EntryHead, Error, HEADER_READ, Header, OBJECT_HEADER,
    ObjectHeader, Result, le32, le64, obj_type,
};

/// Cache page size and count: 4 MiB per open file at most, dropped after each run. Pages
/// are read one at a time for scattered objects (a run that reads a few entries copies a few
/// pages, not blocks of 64 KiB), and in growing runs of up to [`READ_AHEAD`] pages when the
/// reads move forward through the file (a large batch of new entries).
const BLOCK: u64 = 4096;
const BLOCKS: usize = 1024;
const READ_AHEAD: u64 = 8;
/// Objects larger than this bypass the cache.
const DIRECT: u64 = 256 * 1024;
/// An ENTRY object larger than this is refused (journald caps an entry's fields far
/// lower in practice: this is only a memory bound).
const MAX_ENTRY: u64 = 4 * 1024 * 1024;

/// Where the item of one entry list lives: an ENTRY_ARRAY of the chain and the chain index
/// of its first item. Remembered between runs so that a follower does not walk the chain
/// again (entry arrays are immutable once written, except for items past the count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPos {
    pub array: u64,
    pub first: u64,
    cap: u64,
    next: u64,
}

/// An entry list: optionally one entry stored inline (DATA objects keep their first
/// entry in the object), then a chain of ENTRY_ARRAY objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    pub inline: Option<u64>,
    pub chain: u64,
    pub len: u64,
}

pub struct JournalFile {
    file: File,
    path: PathBuf,
    header: Header,
    /// The end of what may be read: the file size, capped at the header's arena end.
    limit: u64,
    cache: Cache,
    /// Reads go through the cache (see [`JournalFile::set_cached`]).
    cached: bool,
}

impl std::fmt::Debug for JournalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("limit", &self.limit)
            .finish()
    }
}

impl JournalFile {
    pub fn open(path: &Path) -> Result<JournalFile> {
        let file = File::open(path)?;
        JournalFile::from_file(file, path.to_owned())
    }

    pub fn from_file(file: File, path: PathBuf) -> Result<JournalFile> {
        let (header, limit) = read_header(&file)?;
        Ok(JournalFile {
            file,
            path,
            header,
            limit,
            cache: Cache::default(),
            cached: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Re-reads the header and the file size and forgets cached blocks: what journald
    /// wrote since becomes visible.
    pub fn refresh(&mut self) -> Result<()> {
        self.cache.clear();
        let (header, limit) = read_header(&self.file)?;
        self.header = header;
        self.limit = limit;
        Ok(())
    }

    /// Drops cached blocks (a run reads its counts first, then the objects they cover).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Turns the page cache off (every read is its own `pread` of exactly its bytes) or on
    /// (empty). A follower reads its counts uncached and then turns the cache on: a page
    /// cached before a count was read could predate objects the count covers.
    pub fn set_cached(&mut self, on: bool) {
        self.cache.clear();
        self.cached = on;
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::malformed(offset, "offset overflows"))?;
        if end > self.limit {
            return Err(Error::malformed(
                offset,
                format!(
                    "read of {} bytes past the end of the file ({})",
                    buf.len(),
                    self.limit
                ),
            ));
        }
        if !self.cached || buf.len() as u64 > DIRECT {
            read_exact_at(&self.file, buf, offset)?;
            return Ok(());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / BLOCK;
            let block = self.cache.get(&self.file, index, self.limit)?;
            let inner = (at - index * BLOCK) as usize;
            let take = (buf.len() - done).min(block.len().saturating_sub(inner));
            if take == 0 {
                return Err(Error::malformed(at, "short read"));
            }
            buf[done..done + take].copy_from_slice(&block[inner..inner + take]);
            done += take;
        }
        Ok(())
    }

    /// Reads and checks an object header at `offset`: aligned, inside the arena, of
    /// `kind`, at least the fixed size of that kind and ending inside the readable file.
    pub fn object_header(&mut self, offset: u64, kind: u8) -> Result<ObjectHeader> {
        let mut b = [0u8; OBJECT_HEADER as usize];
        self.object_start(offset, kind, &mut b)
    }

    /// Reads the first `buf.len()` (at least 16) bytes of an object in one read and checks
    /// its header like [`JournalFile::object_header`]. `buf` must not be longer than the
    /// smallest object of `kind`.
    fn object_start(&mut self, offset: u64, kind: u8, buf: &mut [u8]) -> Result<ObjectHeader> {
        if !offset.is_multiple_of(8) || offset < self.header.header_size {
            return Err(Error::malformed(
                offset,
                "object offset not aligned or inside the header",
            ));
        }
        self.read(offset, buf)?;
        let o = ObjectHeader::parse(buf);
        if o.kind != kind {
            return Err(Error::malformed(
                offset,
                format!("object of type {} where type {kind} was expected", o.kind),
            ));
        }
        if o.size < format::min_size(kind, &self.header) {
            return Err(Error::malformed(
                offset,
                format!("object size {} too small", o.size),
            ));
        }
        if offset
            .checked_add(o.size)
            .is_none_or(|end| end > self.limit)
        {
            return Err(Error::malformed(
                offset,
                format!("object of {} bytes past the end of the file", o.size),
            ));
        }
        Ok(o)
    }

    /// The fixed fields of the DATA object at `offset`.
    pub fn data_head(&mut self, offset: u64) -> Result<DataHead> {
        let mut b = [0u8; format::DATA_FIXED as usize];
        self.object_start(offset, obj_type::DATA, &mut b)?;
        Ok(DataHead::parse(&b))
    }

    /// Up to `n` bytes of a DATA object's payload as stored (compressed or not).
    pub fn data_raw_prefix(
        &mut self,
        offset: u64,
        head: &DataHead,
        out: &mut Vec<u8>,
        n: usize,
    ) -> Result<()> {
        let start = self.header.data_fixed();
        let len = head.size.saturating_sub(start).min(n as u64) as usize;
        out.resize(len, 0);
        self.read(offset + start, out)
    }

    /// The whole payload of the DATA object at `offset` (`FIELD=value`), decompressed.
    pub fn data_payload(
        &mut self,
        offset: u64,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<DataHead> {
        let head = self.data_head(offset)?;
        let start = self.header.data_fixed();
        let len = head.size.saturating_sub(start);
        if len > format::MAX_PAYLOAD as u64 {
            return Err(Error::malformed(
                offset,
                format!("data payload of {len} bytes is too large"),
            ));
        }
        if head.compressed() {
            scratch.resize(len as usize, 0);
            self.read(offset + start, scratch)?;
            format::decode_payload(head.flags, scratch, offset, out)?;
        } else {
            out.resize(len as usize, 0);
            self.read(offset + start, out)?;
        }
        Ok(head)
    }

    /// The ENTRY object at `offset`, whole, into `buf`.
    pub fn entry(&mut self, offset: u64, buf: &mut Vec<u8>) -> Result<EntryHead> {
        let o = self.object_header(offset, obj_type::ENTRY)?;
        if o.size > MAX_ENTRY {
            return Err(Error::malformed(
                offset,
                format!("entry object of {} bytes", o.size),
            ));
        }
        buf.resize(o.size as usize, 0);
        self.read(offset, buf)?;
        Ok(EntryHead::parse(buf))
    }

    /// The DATA object whose payload is exactly `payload`, found through the data hash
    /// table. `None` when no entry of this file has that field value.
    pub fn find_data(
        &mut self,
        payload: &[u8],
        scratch: &mut Vec<u8>,
        scratch2: &mut Vec<u8>,
    ) -> Result<Option<u64>> {
        let h = &self.header;
        let table = h.data_hash_table_offset;
        let buckets = h.data_hash_table_size / 16;
        if buckets == 0 || table == 0 {
            return Ok(None);
        }
        if table
            .checked_add(h.data_hash_table_size)
            .is_none_or(|end| end > self.limit)
        {
            return Err(Error::malformed(
                table,
                "data hash table past the end of the file",
            ));
        }
        let hash = h.hash(payload);
        let mut b = [0u8; 8];
        self.read(table + (hash % buckets) * 16, &mut b)?;
        let mut offset = le64(&b, 0);
        while offset != 0 {
            let head = self.data_head(offset)?;
            if head.hash == hash {
                self.data_payload(offset, scratch, scratch2)?;
                if scratch.as_slice() == payload {
                    return Ok(Some(offset));
                }
            }
            // Objects are appended, so a chain only moves forward: no cycles.
            if head.next_hash_offset != 0 && head.next_hash_offset <= offset {
                return Err(Error::malformed(offset, "data hash chain goes backwards"));
            }
            offset = head.next_hash_offset;
        }
        Ok(None)
    }

    /// The file's list of all entries, in the order they were written.
    pub fn global_list(&self) -> List {
        List {
            inline: None,
            chain: self.header.entry_array_offset,
            len: self.header.n_entries,
        }
    }

    /// The list of the entries that use the DATA object at `offset`.
    pub fn data_list(&mut self, offset: u64) -> Result<List> {
        let head = self.data_head(offset)?;
        Ok(list_of(&head))
    }

    /// The offset of entry `index` of `list`. `hint` is a position in the list's chain
    /// from an earlier call (kept by the caller); it is moved to the array that holds
    /// `index` so that walking on costs nothing.
    pub fn list_item(
        &mut self,
        list: &List,
        index: u64,
        hint: &mut Option<ChainPos>,
    ) -> Result<u64> {
        if index >= list.len {
            return Err(Error::malformed(
                list.chain,
                format!("entry {index} of a list of {}", list.len),
            ));
        }
        let j = match list.inline {
            Some(first) if index == 0 => return Ok(first),
            Some(_) => index - 1,
            None => index,
        };
        let mut pos = match *hint {
            Some(p) if p.first <= j && p.array != 0 => p,
            _ => self.chain_array(list.chain, 0)?,
        };
        while j >= pos.first + pos.cap {
            if pos.next == 0 {
                // A remembered position may predate the next array: read the link again.
                pos = self.chain_array(pos.array, pos.first)?;
            }
            if pos.next == 0 {
                return Err(Error::malformed(
                    pos.array,
                    format!("entry array chain ends before item {j}"),
                ));
            }
            if pos.next <= pos.array {
                return Err(Error::malformed(
                    pos.array,
                    "entry array chain goes backwards",
                ));
            }
            pos = self.chain_array(pos.next, pos.first + pos.cap)?;
        }
        *hint = Some(pos);
        let size = self.header.array_item_size();
        let at = pos.array + ENTRY_ARRAY_FIXED + (j - pos.first) * size;
        let mut b = [0u8; 8];
        self.read(at, &mut b[..size as usize])?;
        let item = if size == 4 {
            u64::from(le32(&b, 0))
        } else {
            le64(&b, 0)
        };
        if item == 0 {
            return Err(Error::malformed(at, "entry array item not written (yet)"));
        }
        Ok(item)
    }

    fn chain_array(&mut self, offset: u64, first: u64) -> Result<ChainPos> {
        if offset == 0 {
            return Err(Error::malformed(0, "entry list without an entry array"));
        }
        let mut b = [0u8; ENTRY_ARRAY_FIXED as usize];
        let o = self.object_start(offset, obj_type::ENTRY_ARRAY, &mut b)?;
        let cap = (o.size - ENTRY_ARRAY_FIXED) / self.header.array_item_size();
        if cap == 0 {
            return Err(Error::malformed(offset, "entry array without items"));
        }
        Ok(ChainPos {
            array: offset,
            first,
            cap,
            next: le64(&b, 16),
        })
    }
}

pub fn list_of(head: &DataHead) -> List {
    List {
        inline: (head.n_entries > 0).then_some(head.entry_offset),
        chain: head.entry_array_offset,
        len: head.n_entries,
    }
}

/// The header and the readable limit (the arena's end: journald extends the file before it
/// grows the arena, so a shorter file is damaged, and reads past its end are errors).
fn read_header(file: &File) -> Result<(Header, u64)> {
    let mut buf = [0u8; HEADER_READ];
    let n = read_up_to(file, &mut buf, 0)?;
    let header = Header::parse(&buf[..n])?;
    let limit = header.arena_end();
    Ok((header, limit))
}

/// Reads at `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(done)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::malformed(offset, "file ends early")
        } else {
            Error::Io(e)
        }
    })
}

/// Pages of one file, replaced first-in first-out.
#[derive(Default)]
struct Cache {
    blocks: HashMap<u64, Vec<u8>>,
    order: std::collections::VecDeque<u64>,
    /// The page after the last read run, and that run's length: a miss there is sequential.
    next_page: u64,
    run: u64,
    buf: Vec<u8>,
    /// Page buffers of earlier runs, reused: no allocation (and page faults) per run.
    free: Vec<Vec<u8>>,
}

impl Cache {
    fn clear(&mut self) {
        self.free.extend(self.blocks.drain().map(|(_, page)| page));
        self.order.clear();
        self.next_page = 0;
        self.run = 0;
    }

    fn get(&mut self, file: &File, index: u64, limit: u64) -> Result<&[u8]> {
        if !self.blocks.contains_key(&index) {
            let pages_in_file = limit.div_ceil(BLOCK);
            // Forward, within the last run's length of where it ended: the reads are moving
            // through the file (a unit's entries among others' are a few KiB apart), so read
            // more at once; anywhere else, one page.
            let forward = index == self.next_page;
            self.run = if forward && self.run > 0 {
                (self.run * 2).min(READ_AHEAD)
            } else {
                1
            };
            // Never past the end, never over pages already cached.
            let mut count = self.run.min(pages_in_file.saturating_sub(index)).max(1);
            for k in 1..count {
                if self.blocks.contains_key(&(index + k)) {
                    count = k;
                    break;
                }
            }
            let start = index * BLOCK;
            let len = (count * BLOCK).min(limit.saturating_sub(start)) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            buf.resize(len, 0);
            let got = read_up_to(file, &mut buf, start)?;
            // A file shorter than its arena (damaged, or cut): the pages end where it does.
            buf.truncate(got);
            if buf.is_empty() {
                self.buf = buf;
                return Err(Error::malformed(start, "file ends early"));
            }
            for (k, chunk) in buf.chunks(BLOCK as usize).enumerate() {
                let mut page = if self.order.len() >= BLOCKS {
                    let old = self.order.pop_front().unwrap_or_default();
                    self.blocks.remove(&old).unwrap_or_default()
                } else {
                    self.free
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(BLOCK as usize))
                };
                page.clear();
                page.extend_from_slice(chunk);
                let at = index + k as u64;
                self.blocks.insert(at, page);
                self.order.push_back(at);
            }
            self.buf = buf;
            self.next_page = index + count;
        }
        Ok(self
            .blocks
            .get(&index)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }
}
