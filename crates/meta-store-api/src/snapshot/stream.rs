//! Producing a snapshot stream from an engine's point-in-time view on a
//! background thread, with bounded memory.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{SnapshotOptions, SnapshotWriter};
use crate::error::{Error, Result};

/// Chunks of encoded bytes in flight between the producer and the reader.
const CHANNEL_CHUNKS: usize = 4;
/// Size at which the producer hands a chunk over.
const CHUNK_SIZE: usize = 64 * 1024;

/// The bytes of a snapshot, as returned by
/// [`MetadataStore::snapshot`](crate::MetadataStore::snapshot). Read it to
/// the end to get the whole stream; errors of the producing engine surface
/// as `io::Error`s of `read`. Dropping it stops the producer and releases
/// the engine's view.
pub struct SnapshotStream {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl std::fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStream").finish_non_exhaustive()
    }
}

impl Read for SnapshotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The producer finished and hung up.
                Err(_) => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What an engine's producer closure writes records into.
pub struct SnapshotSink {
    writer: SnapshotWriter<ChunkWriter>,
    opened: Option<SyncSender<()>>,
}

impl SnapshotSink {
    /// Tells the caller of [`spawn_snapshot`] that the point-in-time view is
    /// pinned, so it can return while the records are still being read.
    pub fn view_opened(&mut self) {
        if let Some(tx) = self.opened.take() {
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(());
        }
    }

    /// Appends one record (keys in strictly ascending order).
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writer.push(key, value).map_err(stream_error)
    }
}

/// Runs `produce` on a background thread, encoding what it pushes into the
/// portable format, and returns the stream of encoded bytes.
///
/// `produce` must pin its point-in-time view first and then call
/// [`SnapshotSink::view_opened`]: `spawn_snapshot` returns only then (or
/// when `produce` fails early), so the snapshot reflects the moment of the
/// call, and writers are free while the stream is read. At most a few
/// 64 KiB chunks are in flight: a slow reader slows the producer, not the
/// memory.
pub fn spawn_snapshot<F>(
    prefix: &[u8],
    options: &SnapshotOptions,
    produce: F,
) -> Result<SnapshotStream>
where
    F: FnOnce(&mut SnapshotSink) -> Result<()> + Send + 'static,
{
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let (opened_tx, opened_rx) = sync_channel(1);
    let chunks = ChunkWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK_SIZE),
    };
    let writer = SnapshotWriter::new(chunks, prefix, options)?;
    let mut sink = SnapshotSink {
        writer,
        opened: Some(opened_tx),
    };
    std::thread::Builder::new()
        .name("meta-snapshot".into())
        .spawn(move || {
            let result = produce(&mut sink)
                .and_then(|()| sink.writer.finish().map(|_| ()).map_err(stream_error));
            if let Err(e) = result {
                // A closed channel means the reader went away: nobody to tell.
                let _ = tx.send(Err(io::Error::other(e)));
            }
        })
        .map_err(|e| Error::io("spawning the snapshot thread", e))?;
    // Either `view_opened` was called, or the producer ended (its sender is
    // dropped) and its error, if any, is waiting in the stream.
    let _ = opened_rx.recv();
    let mut stream = SnapshotStream {
        rx,
        chunk: Vec::new(),
        pos: 0,
        done: false,
    };
    match stream.rx.try_recv() {
        Ok(Err(e)) => return Err(into_store_error(e)),
        Ok(Ok(chunk)) => stream.chunk = chunk,
        Err(_) => {}
    }
    Ok(stream)
}

fn stream_error(e: super::SnapshotError) -> Error {
    Error::Snapshot(e)
}

fn into_store_error(e: io::Error) -> Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(store) => *store,
            Err(other) => Error::io("producing a snapshot", io::Error::other(other)),
        },
        None => Error::io("producing a snapshot", io::Error::other("unknown error")),
    }
}

/// Buffers encoded bytes and hands them to the reader in chunks.
struct ChunkWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "snapshot reader dropped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
