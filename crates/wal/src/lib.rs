//! Append-only logs that survive `kill -9`: what the exchange's command
//! journal and the time-series store's write-ahead log are built on.
//!
//! A log is a directory of segment files `<prefix>-<first>.log`, `first`
//! being a number the owner chooses (a sequence number) when it starts a
//! segment. Records are framed as `length (u32 LE) | crc32 (u32 LE) |
//! payload`, the payload being the versioned binary codec of the record. A
//! crash can leave a torn last record; opening the log keeps every complete
//! record before it and cuts the rest, which was never acknowledged.
//!
//! Appends go through a buffer and reach the disk per [`FsyncPolicy`]; one
//! fsync covers a whole batch (group commit). Checkpoints (snapshots, files
//! flushed elsewhere) let the owner start a new segment and delete the old
//! ones.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tradestack_model::codec;

/// When appended records reach the disk. In TOML: `"always"`, `"never"`, or
/// an interval such as `"10ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// fsync every batch before acknowledging it (group commit): nothing
    /// acknowledged is lost, even on power loss.
    Always,
    /// fsync at most once per interval: an OS crash or power loss may lose
    /// the last interval; a process crash loses nothing (the data is in the
    /// page cache).
    Interval(Duration),
    /// Leave it to the OS.
    Never,
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| {
                    format!("expected \"always\", \"never\" or an interval like \"10ms\": {e}")
                }),
        }
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        match p {
            FsyncPolicy::Always => "always".into(),
            FsyncPolicy::Never => "never".into(),
            FsyncPolicy::Interval(d) => humantime::format_duration(d).to_string(),
        }
    }
}

/// Log errors.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record could not be encoded.
    #[error("log encoding: {0}")]
    Codec(#[from] codec::CodecError),
}

/// Maps an `io::Error` on `path` to a [`WalError`].
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const HEADER: usize = 8;
/// Largest record accepted when reading (a guard against a corrupt length).
const MAX_RECORD: u32 = 256 << 20;

/// What [`Log::open`] found.
#[derive(Debug)]
pub struct Opened<E> {
    /// Every intact record, oldest first, with the number of the segment it
    /// is in.
    pub records: Vec<(u64, E)>,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
}

/// The append side of a segmented log of records of type `E`.
pub struct Log<E> {
    dir: PathBuf,
    prefix: String,
    policy: FsyncPolicy,
    file: BufWriter<File>,
    path: PathBuf,
    last_sync: Instant,
    buf: Vec<u8>,
    _records: PhantomData<fn(E)>,
}

impl<E: Serialize + DeserializeOwned> Log<E> {
    /// Opens (creating) the log `<dir>/<prefix>-*.log`, reading back what is
    /// there and cutting a torn tail. A new log's first segment is numbered
    /// `first`.
    pub fn open(
        dir: &Path,
        prefix: &str,
        policy: FsyncPolicy,
        first: u64,
    ) -> Result<(Log<E>, Opened<E>), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut opened = Opened {
            records: Vec::new(),
            truncated_bytes: 0,
        };
        let segments = segments(dir, prefix)?;
        for (i, (number, path)) in segments.iter().enumerate() {
            let (records, good_len, file_len) = read_segment::<E>(path)?;
            opened
                .records
                .extend(records.into_iter().map(|r| (*number, r)));
            if good_len < file_len {
                if i + 1 != segments.len() {
                    tracing::error!(path = %path.display(), "corrupt record inside an older log segment; later segments are ignored");
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(good_len).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                opened.truncated_bytes += file_len - good_len;
                break;
            }
        }
        let path = match segments.last() {
            Some((_, p)) => p.clone(),
            None => segment_path(dir, prefix, first),
        };
        let file = open_append(&path)?;
        sync_dir(dir)?;
        Ok((
            Log {
                dir: dir.to_path_buf(),
                prefix: prefix.to_string(),
                policy,
                file: BufWriter::with_capacity(1 << 16, file),
                path,
                last_sync: Instant::now(),
                buf: Vec::with_capacity(4096),
                _records: PhantomData,
            },
            opened,
        ))
    }

    /// Appends a batch and makes it durable per the policy. Returns the time
    /// spent in fsync, if one ran.
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a E>,
    ) -> Result<Option<Duration>, WalError>
    where
        E: 'a,
    {
        for r in records {
            self.buf.clear();
            codec::encode_into(r, &mut self.buf)?;
            write_frame(&mut self.file, &self.buf).map_err(io_err(&self.path))?;
        }
        self.file.flush().map_err(io_err(&self.path))?;
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if !due {
            return Ok(None);
        }
        self.sync().map(Some)
    }

    /// Forces everything appended to the disk; the time it took.
    pub fn sync(&mut self) -> Result<Duration, WalError> {
        let started = Instant::now();
        self.file.flush().map_err(io_err(&self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.path))?;
        self.last_sync = Instant::now();
        Ok(started.elapsed())
    }

    /// Makes what was appended durable and starts segment `number` for what
    /// follows (a no-op if that segment is the current one).
    pub fn rotate(&mut self, number: u64) -> Result<(), WalError> {
        self.sync()?;
        let next = segment_path(&self.dir, &self.prefix, number);
        if next != self.path {
            self.file = BufWriter::with_capacity(1 << 16, open_append(&next)?);
            self.path = next;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes the segments numbered below `number`, except the current one.
    pub fn remove_before(&mut self, number: u64) -> Result<(), WalError> {
        for (first, p) in segments(&self.dir, &self.prefix)? {
            if first < number && p != self.path {
                let _ = fs::remove_file(&p);
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, WalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

fn segment_path(dir: &Path, prefix: &str, first: u64) -> PathBuf {
    dir.join(format!("{prefix}-{first:020}.log"))
}

fn segments(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>, WalError> {
    numbered(dir, &format!("{prefix}-"), ".log")
}

/// Files named `<prefix><number><suffix>` in `dir`, sorted by number.
pub fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
        {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// One framed record at the start of `bytes`: its payload and total length.
fn frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len as usize)?;
    (crc32fast::hash(payload) == crc).then_some((payload, HEADER + len as usize))
}

/// Every intact record of a segment, the length they span, and the file length.
fn read_segment<E: DeserializeOwned>(path: &Path) -> Result<(Vec<E>, u64, u64), WalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some((payload, used)) = frame(&bytes[at..]) {
        match codec::decode::<E>(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), offset = at, error = %e, "undecodable log record; cutting here");
                break;
            }
        }
        at += used;
    }
    Ok((records, at as u64, bytes.len() as u64))
}

/// Writes `value` to `path` as one framed record, atomically (temporary
/// file, fsync, rename, directory fsync): for snapshots and manifests.
pub fn write_file<T: Serialize>(path: &Path, value: &T) -> Result<(), WalError> {
    let bytes = codec::encode(value)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        write_frame(&mut f, &bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a file written by [`write_file`]; `None` when it is torn or does
/// not decode (logged).
pub fn read_file<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, WalError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    match frame(&bytes) {
        Some((payload, _)) => match codec::decode::<T>(payload) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "undecodable file skipped");
                Ok(None)
            }
        },
        None => {
            tracing::warn!(path = %path.display(), "torn file skipped");
            Ok(None)
        }
    }
}

/// fsyncs a directory, so that created and renamed entries are durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, opened) =
            Log::<(u64, String)>::open(dir.path(), "wal", FsyncPolicy::Always, 1).unwrap();
        assert!(opened.records.is_empty());
        let batch = [(1, "a".to_string()), (2, "b".to_string())];
        log.append(&batch).unwrap();
        drop(log);
        // A torn record: a header promising more bytes than follow.
        let seg = segments(dir.path(), "wal").unwrap()[0].1.clone();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9]).unwrap();
        drop(f);
        let (mut log, opened) =
            Log::<(u64, String)>::open(dir.path(), "wal", FsyncPolicy::Always, 1).unwrap();
        assert_eq!(opened.truncated_bytes, 9);
        let got: Vec<_> = opened.records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, batch);
        log.append(&[(3, "c".to_string())]).unwrap();
        let (_, opened) =
            Log::<(u64, String)>::open(dir.path(), "wal", FsyncPolicy::Always, 1).unwrap();
        assert_eq!(opened.records.len(), 3);
    }

    #[test]
    fn rotation_and_removal_keep_the_newer_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::<u64>::open(dir.path(), "j", FsyncPolicy::Never, 1).unwrap();
        log.append(&[1, 2]).unwrap();
        log.rotate(3).unwrap();
        log.append(&[3]).unwrap();
        log.rotate(4).unwrap();
        log.append(&[4]).unwrap();
        log.remove_before(4).unwrap();
        let (_, opened) = Log::<u64>::open(dir.path(), "j", FsyncPolicy::Never, 1).unwrap();
        assert_eq!(opened.records, vec![(4, 4)]);
    }

    #[test]
    fn files_are_written_atomically_and_torn_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.bin");
        write_file(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_file::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(read_file::<Vec<u32>>(&path).unwrap(), None);
    }

    #[test]
    fn fsync_policy_round_trips_through_text() {
        for s in ["always", "never", "10ms"] {
            let p = FsyncPolicy::try_from(s.to_string()).unwrap();
            assert_eq!(String::from(p), s);
        }
        assert!(FsyncPolicy::try_from("sometimes".to_string()).is_err());
    }
}
