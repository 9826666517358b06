//! Checks of `data.mdb` made with plain reads before LMDB maps it.
//!
//! LMDB trusts its file: a page past the end of a truncated file is read
//! through the memory map, and the kernel kills the process with `SIGBUS`.
//! So before the map exists, this reads both meta pages (as LMDB does), and
//! compares the newest one with the file:
//!
//! - a file too short for its two meta pages, or with no valid meta page,
//!   is [`Error::Corruption`];
//! - a tree root past the end of the file is [`Error::Corruption`];
//! - a file shorter than the meta page's last used page is walked: LMDB
//!   itself can leave never-written pages at the end (pages freed by the
//!   transaction that allocated them), so this is damage only if a page of
//!   some tree (or a value's overflow pages) lies past the end, or a page
//!   read is not the page it should be. (Zero-filling the missing pages
//!   would not do: LMDB aborts the process on an invalid page.)
//!
//! A file that is long enough is not walked: opening stays O(1).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use meta_store_api::{Error, Result};

use crate::ENGINE;

/// LMDB's stamp in every meta page.
const MAGIC: u32 = 0xBEEF_C0DE;
/// The file format version this build of LMDB reads.
const DATA_VERSION: u32 = 1;
/// The page flag of a meta page.
const P_META: u16 = 0x08;
/// "No page" (an empty tree's root).
const P_INVALID: u64 = u64::MAX;
/// Bytes read of each meta page: header and `MDB_meta`.
const META_BYTES: usize = 152;

/// The fields of a meta page this check uses.
struct Meta {
    page_size: u64,
    free_root: u64,
    main_root: u64,
    last_page: u64,
    txn_id: u64,
}

fn corrupt(file: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Corruption {
        engine: ENGINE,
        detail: format!("{}: {problem}", file.display()),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(b)
}

/// Parses the meta page at the start of `page` (the layout of LMDB's
/// `MDB_page` header and `MDB_meta` on a 64-bit build).
fn parse_meta(page: &[u8]) -> std::result::Result<Meta, &'static str> {
    if u16_at(page, 10) & P_META == 0 {
        return Err("not a meta page");
    }
    if u32_at(page, 16) != MAGIC {
        return Err("no LMDB magic number");
    }
    if u32_at(page, 20) != DATA_VERSION {
        return Err("an unknown LMDB file version");
    }
    let page_size = u64::from(u32_at(page, 40));
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err("an impossible page size");
    }
    Ok(Meta {
        page_size,
        free_root: u64_at(page, 80),
        main_root: u64_at(page, 128),
        last_page: u64_at(page, 136),
        txn_id: u64_at(page, 144),
    })
}

/// Checks `<dir>/data.mdb` against its newest meta page. See the module
/// docs.
pub(crate) fn check(dir: &Path) -> Result<()> {
    let path = dir.join("data.mdb");
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    if len == 0 {
        return Ok(());
    }
    if !cfg!(target_pointer_width = "64") {
        // The layout read here is the 64-bit one; LMDB checks the rest.
        return Ok(());
    }
    let mut first = [0u8; META_BYTES];
    file.read_exact(&mut first).map_err(|_| {
        corrupt(
            &path,
            format!("the file is {len} bytes, too short for an LMDB meta page"),
        )
    })?;
    let meta0 =
        parse_meta(&first).map_err(|p| corrupt(&path, format!("its first meta page has {p}")))?;
    let mut second = vec![0u8; meta0.page_size as usize + META_BYTES];
    let reread = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut second));
    let meta1 = match reread {
        Ok(()) => parse_meta(&second[meta0.page_size as usize..])
            .map_err(|p| corrupt(&path, format!("its second meta page has {p}")))?,
        Err(_) => {
            return Err(corrupt(
                &path,
                format!(
                    "the file is {len} bytes, too short for LMDB's two meta pages of {} bytes",
                    meta0.page_size
                ),
            ));
        }
    };
    let meta = if meta1.txn_id > meta0.txn_id {
        meta1
    } else {
        meta0
    };
    let pages = len / meta.page_size;
    for (tree, root) in [("main", meta.main_root), ("free-page", meta.free_root)] {
        if root != P_INVALID && root >= pages {
            return Err(corrupt(
                &path,
                format!(
                    "truncated: the root of its {tree} tree is page {root}, but the file is \
                     {len} bytes ({pages} pages of {})",
                    meta.page_size
                ),
            ));
        }
    }
    let needed = meta
        .last_page
        .saturating_add(1)
        .saturating_mul(meta.page_size);
    if len >= needed {
        return Ok(());
    }
    // Shorter than its last used page: harmless only if no page of any
    // tree lies past the end.
    if !cfg!(target_endian = "little") {
        return Err(corrupt(
            &path,
            format!("truncated: the file is {len} bytes, its last used page ends at byte {needed}"),
        ));
    }
    let mut walk = Walk {
        file: &file,
        page_size: meta.page_size,
        pages,
        seen: std::collections::HashSet::new(),
    };
    walk.trees(&[("main", meta.main_root), ("free-page", meta.free_root)])
        .map_err(|problem| {
            corrupt(
                &path,
                format!(
                    "truncated or damaged: the file is {len} bytes (its last used page ends at \
                     byte {needed}) and {problem}"
                ),
            )
        })?;
    Ok(())
}

/// Node flag: the value is on overflow pages.
const F_BIGDATA: u16 = 0x01;
/// Node flag: the value is a named database.
const F_SUBDATA: u16 = 0x02;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_LEAF2: u16 = 0x20;
/// Bytes of a page header, and of a node header.
const PAGE_HEADER: usize = 16;
const NODE_HEADER: usize = 8;

/// A walk over every page the trees reach, with plain reads (the layout of
/// a 64-bit little-endian LMDB file).
struct Walk<'f> {
    file: &'f File,
    page_size: u64,
    pages: u64,
    seen: std::collections::HashSet<u64>,
}

impl Walk<'_> {
    fn page(&mut self, pgno: u64, tree: &str) -> std::result::Result<Vec<u8>, String> {
        if pgno >= self.pages {
            return Err(format!("page {pgno} of the {tree} tree is past its end"));
        }
        if !self.seen.insert(pgno) {
            return Err(format!("page {pgno} of the {tree} tree is reached twice"));
        }
        let mut page = vec![0u8; self.page_size as usize];
        let mut file = self.file;
        file.seek(SeekFrom::Start(pgno * self.page_size))
            .and_then(|_| file.read_exact(&mut page))
            .map_err(|e| format!("reading page {pgno} failed: {e}"))?;
        if u64_at(&page, 0) != pgno {
            return Err(format!(
                "page {pgno} of the {tree} tree does not hold that page"
            ));
        }
        Ok(page)
    }

    fn trees(&mut self, roots: &[(&str, u64)]) -> std::result::Result<(), String> {
        let mut stack: Vec<(std::rc::Rc<str>, u64)> = roots
            .iter()
            .map(|(t, r)| (std::rc::Rc::from(*t), *r))
            .collect();
        while let Some((tree, pgno)) = stack.pop() {
            if pgno == P_INVALID {
                continue;
            }
            let page = self.page(pgno, &tree)?;
            let flags = u16_at(&page, 10);
            if flags & P_LEAF2 != 0 {
                continue;
            }
            let bad = || format!("page {pgno} of the {tree} tree is malformed");
            let lower = usize::from(u16_at(&page, 12));
            if lower > page.len() {
                return Err(bad());
            }
            let count = lower.checked_sub(PAGE_HEADER).ok_or_else(bad)? / 2;
            for i in 0..count {
                let at = usize::from(u16_at(&page, PAGE_HEADER + 2 * i));
                let node = page.get(at..at + NODE_HEADER).ok_or_else(bad)?;
                let (lo, hi) = (u64::from(u16_at(node, 0)), u64::from(u16_at(node, 2)));
                let (node_flags, key_len) = (u16_at(node, 4), usize::from(u16_at(node, 6)));
                if flags & P_BRANCH != 0 {
                    stack.push((tree.clone(), lo | hi << 16 | u64::from(node_flags) << 32));
                    continue;
                }
                if flags & P_LEAF == 0 {
                    return Err(format!(
                        "page {pgno} of the {tree} tree is neither a branch nor a leaf"
                    ));
                }
                let data = at + NODE_HEADER + key_len;
                if node_flags & F_BIGDATA != 0 {
                    let first = u64_at(page.get(data..data + 8).ok_or_else(bad)?, 0);
                    self.overflow(first, &tree)?;
                } else if node_flags & F_SUBDATA != 0 {
                    let db = page.get(data..data + 48).ok_or_else(bad)?;
                    let name = String::from_utf8_lossy(&page[at + NODE_HEADER..data]);
                    stack.push((format!("`{name}`").into(), u64_at(db, 40)));
                }
            }
        }
        Ok(())
    }

    /// Checks a value's run of overflow pages lies inside the file.
    fn overflow(&mut self, first: u64, tree: &str) -> std::result::Result<(), String> {
        let page = self.page(first, tree)?;
        if u16_at(&page, 10) & P_OVERFLOW == 0 {
            return Err(format!(
                "page {first} of the {tree} tree is not the overflow page a value names"
            ));
        }
        let count = u64::from(u32_at(&page, 12));
        if first.saturating_add(count) > self.pages {
            return Err(format!(
                "a value of the {tree} tree on pages {first}..{} is past its end",
                first.saturating_add(count)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meta_page_of_another_kind_is_named() {
        let mut page = [0u8; META_BYTES];
        assert_eq!(parse_meta(&page).err(), Some("not a meta page"));
        page[10..12].copy_from_slice(&P_META.to_ne_bytes());
        assert_eq!(parse_meta(&page).err(), Some("no LMDB magic number"));
        page[16..20].copy_from_slice(&MAGIC.to_ne_bytes());
        assert_eq!(
            parse_meta(&page).err(),
            Some("an unknown LMDB file version")
        );
        page[20..24].copy_from_slice(&DATA_VERSION.to_ne_bytes());
        page[40..44].copy_from_slice(&3000u32.to_ne_bytes());
        assert_eq!(parse_meta(&page).err(), Some("an impossible page size"));
        page[40..44].copy_from_slice(&4096u32.to_ne_bytes());
        assert!(parse_meta(&page).is_ok());
    }
}
