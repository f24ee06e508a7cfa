//! Announcement files on disk: a folder per room (`DIR/ROOM/NAME`), so that one room's chair
//! can neither list, play, replace nor delete another room's files.
//!
//! # Bounds (what an uploader can make the hub hold)
//! - **Memory**: an upload never sits in memory. Its body goes to a temporary file as it
//!   arrives ([`Upload::write`], hashed on the way), and is checked from there, reading as it
//!   decodes and holding no samples ([`crate::clip::inspect_reader`]).
//! - **In flight**: at most [`FileSettings::max_uploads`] uploads are admitted at once,
//!   counted from before their body is read ([`FileStore::admit`]); the next is refused with
//!   [`FileError::Busy`] (HTTP 503 with `Retry-After`). Each is at most its `limit` bytes
//!   ([`FileError::TooLarge`] as soon as it is passed).
//! - **Decoding**: one upload is checked at a time, and one file is decoded for playing at a
//!   time; a check waits at most [`FileSettings::wait`] for its turn. A decoded clip is
//!   bounded by [`crate::clip::MAX_SECONDS`].
//! - **Disk**: a room's files take at most [`FileSettings::quota_bytes`]; replacing a file
//!   counts only the difference. Uploads in flight add at most `max_uploads × limit` in
//!   temporary files, which go when their upload ends, stored or not. A refused upload
//!   leaves nothing.
//!
//! Files are renamed into place once checked, so a crash leaves the old file or the new one,
//! never half of one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::clip::{self, Clip, ClipError};
use crate::config::valid_id;

/// Where files live and how much of them a room may keep.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSettings {
    /// The folder holding one folder per room.
    pub dir: PathBuf,
    /// Most bytes of files one room may keep.
    pub quota_bytes: u64,
    /// Most uploads in flight (the one being checked and those waiting for their turn).
    pub max_uploads: usize,
    /// Longest an admitted upload waits for its turn to be checked.
    pub wait: Duration,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("announcements"),
            quota_bytes: 512 * 1024 * 1024,
            max_uploads: 3,
            // At most `max_uploads - 1` checks are ahead of one (an hour's file takes a few
            // seconds): this only guards against a check that never ends.
            wait: Duration::from_secs(300),
        }
    }
}

/// A stored file's identity, as the record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    /// `NAME.wav`, `NAME.opus` or `NAME.ogg`.
    pub name: String,
    /// Size on disk, bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// What the file decodes to.
    pub audio: clip::ClipInfo,
}

/// Why a file operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The name is not `NAME.wav`, `NAME.opus` or `NAME.ogg` with NAME of letters, digits,
    /// `-` and `_`; rename it.
    #[error("name the file NAME.wav, NAME.opus or NAME.ogg (letters, digits, '-', '_')")]
    Name,
    /// Too many uploads at once; retry after this many seconds.
    #[error("the hub is checking other uploads; try again in {retry_after_secs} s")]
    Busy {
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// The room's files would exceed its quota; delete some first.
    #[error("the room's files would take {need} bytes, over its quota of {quota} bytes (in use: {used})")]
    Quota {
        /// Bytes the room's files take now.
        used: u64,
        /// The room's quota, bytes.
        quota: u64,
        /// Bytes they would take with this upload.
        need: u64,
    },
    /// The room has no file of that name; upload it first.
    #[error("there is no file '{0}'; upload it first")]
    NotFound(String),
    /// The audio cannot be played; the message says why.
    #[error(transparent)]
    Audio(#[from] ClipError),
    /// Larger than the upload's limit, bytes; send a shorter file.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The disk refused; the message is the OS's.
    #[error("cannot store the file: {0}")]
    Io(String),
}

/// Counters for tests and `/metrics`.
#[derive(Debug, Default)]
pub struct FileStats {
    /// Uploads being checked right now (0 or 1).
    pub checking: AtomicUsize,
    /// The most uploads ever checked at the same moment.
    pub checking_peak: AtomicUsize,
    /// Uploads refused as busy.
    pub busy: AtomicU64,
}

/// The announcement files of every room.
#[derive(Debug)]
pub struct FileStore {
    settings: FileSettings,
    admitted: Arc<AtomicUsize>,
    uploads: AtomicU64,
    check: Semaphore,
    decode: Semaphore,
    stats: FileStats,
}

/// An upload's place among those in flight; it is released when dropped.
#[derive(Debug)]
pub struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `name` is a file name the store accepts.
pub fn valid_name(name: &str) -> bool {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    valid_id(stem) && matches!(ext, "wav" | "opus" | "ogg")
}

fn io(e: std::io::Error) -> FileError {
    FileError::Io(e.to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    hex(d.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileStore {
    /// A store over `settings.dir` (created on first write).
    pub fn new(settings: FileSettings) -> Self {
        Self {
            settings,
            admitted: Arc::new(AtomicUsize::new(0)),
            uploads: AtomicU64::new(0),
            check: Semaphore::new(1),
            decode: Semaphore::new(1),
            stats: FileStats::default(),
        }
    }

    /// Counters, for tests and `/metrics`.
    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    /// Uploads admitted and not yet done.
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Where the files are kept, each room's quota, and how many uploads may wait, how long.
    pub fn settings(&self) -> &FileSettings {
        &self.settings
    }

    fn room_dir(&self, room: &str) -> Result<PathBuf, FileError> {
        if !valid_id(room) {
            return Err(FileError::NotFound(room.to_owned()));
        }
        Ok(self.settings.dir.join(room))
    }

    fn path(&self, room: &str, name: &str) -> Result<PathBuf, FileError> {
        if !valid_name(name) {
            return Err(FileError::Name);
        }
        Ok(self.room_dir(room)?.join(name))
    }

    /// Take a place among the uploads in flight, before reading the body; refused when
    /// [`FileSettings::max_uploads`] are in flight.
    pub fn admit(&self) -> Result<Admission, FileError> {
        let max = self.settings.max_uploads.max(1);
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Admission(self.admitted.clone())),
            Err(_) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                Err(self.busy())
            }
        }
    }

    fn busy(&self) -> FileError {
        FileError::Busy {
            retry_after_secs: 5,
        }
    }

    /// Begin receiving `room`'s `name`, at most `limit` bytes, into a temporary file.
    pub async fn begin(
        &self,
        _admitted: &Admission,
        room: &str,
        name: &str,
        limit: u64,
    ) -> Result<Upload, FileError> {
        let path = self.path(room, name)?;
        let dir = self.room_dir(room)?;
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{n}.part"));
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        Ok(Upload {
            room: room.to_owned(),
            name: name.to_owned(),
            path,
            tmp: Some(tmp),
            file: tokio::io::BufWriter::new(file),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
            limit,
        })
    }

    /// Check a received upload (it must decode, within the bounds) and store it, replacing a
    /// file of that name. Nothing is left when it is refused.
    pub async fn finish(&self, mut up: Upload) -> Result<FileInfo, FileError> {
        use tokio::io::AsyncWriteExt;
        up.file.flush().await.map_err(io)?;
        up.file.get_ref().sync_all().await.map_err(io)?;
        let Ok(Ok(_turn)) = tokio::time::timeout(self.settings.wait, self.check.acquire()).await
        else {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(self.busy());
        };
        // Under the check's turn: no other upload of any room is between its quota check and
        // its rename.
        let used = self.used(&up.room).await;
        let replaced = tokio::fs::metadata(&up.path).await.map_or(0, |m| m.len());
        let need = used - replaced.min(used) + up.len;
        if need > self.settings.quota_bytes {
            return Err(FileError::Quota {
                used,
                quota: self.settings.quota_bytes,
                need,
            });
        }
        let checking = self.stats.checking.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats
            .checking_peak
            .fetch_max(checking, Ordering::AcqRel);
        let tmp = up
            .tmp
            .clone()
            .expect("an upload has its file until it is done");
        let checked = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&tmp).map_err(io)?;
            clip::inspect_reader(std::io::BufReader::new(f)).map_err(FileError::Audio)
        })
        .await;
        self.stats.checking.fetch_sub(1, Ordering::AcqRel);
        let audio = checked.map_err(|e| FileError::Io(e.to_string()))??;
        let tmp = up.tmp.take().expect("taken once");
        if let Err(e) = tokio::fs::rename(&tmp, &up.path).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        let digest = std::mem::replace(
            &mut up.hash,
            ring::digest::Context::new(&ring::digest::SHA256),
        )
        .finish();
        Ok(FileInfo {
            name: up.name.clone(),
            bytes: up.len,
            sha256: hex(digest.as_ref()),
            audio,
        })
    }

    /// Check bytes already in memory and store them as `room`'s `name`: [`FileStore::begin`],
    /// [`Upload::write`] and [`FileStore::finish`] at once.
    pub async fn store(
        &self,
        admitted: &Admission,
        room: &str,
        name: &str,
        bytes: Bytes,
    ) -> Result<FileInfo, FileError> {
        let mut up = self.begin(admitted, room, name, bytes.len() as u64).await?;
        up.write(&bytes).await?;
        self.finish(up).await
    }

    /// Move a file from elsewhere on this disk (the flat folder of earlier versions) into
    /// `room`'s folder under its own name, checked as an upload is but outside the quota (it
    /// is on the disk already). A file of that name already in the room is kept.
    pub async fn adopt(&self, room: &str, from: &Path) -> Result<FileInfo, FileError> {
        let name = from
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or(FileError::Name)?
            .to_owned();
        let path = self.path(room, &name)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Err(FileError::Io(format!("{name} is already in room {room}")));
        }
        let _turn = self.check.acquire().await.map_err(|_| self.busy())?;
        let bytes = tokio::fs::read(from).await.map_err(io)?;
        let len = bytes.len() as u64;
        let (audio, sha256) = tokio::task::spawn_blocking(move || {
            clip::inspect(&bytes).map(|a| (a, sha256_hex(&bytes)))
        })
        .await
        .map_err(|e| FileError::Io(e.to_string()))??;
        tokio::fs::create_dir_all(self.room_dir(room)?)
            .await
            .map_err(io)?;
        tokio::fs::rename(from, &path).await.map_err(io)?;
        Ok(FileInfo {
            name,
            bytes: len,
            sha256,
            audio,
        })
    }

    /// Read and decode `room`'s `name` for playing, one file at a time.
    pub async fn load(&self, room: &str, name: &str) -> Result<Clip, FileError> {
        let path = self.path(room, name)?;
        let _turn = self.decode.acquire().await.map_err(|_| self.busy())?;
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FileError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io(e)),
        };
        tokio::task::spawn_blocking(move || Clip::decode(&data))
            .await
            .map_err(|e| FileError::Io(e.to_string()))?
            .map_err(FileError::Audio)
    }

    /// Delete `room`'s `name`.
    pub async fn remove(&self, room: &str, name: &str) -> Result<(), FileError> {
        let path = self.path(room, name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(FileError::NotFound(name.to_owned()))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// `room`'s files and their sizes, by name.
    pub async fn list(&self, room: &str) -> Vec<(String, u64)> {
        let Ok(dir) = self.room_dir(room) else {
            return Vec::new();
        };
        list_dir(&dir).await
    }

    /// Bytes `room`'s files take.
    pub async fn used(&self, room: &str) -> u64 {
        self.list(room).await.iter().map(|(_, n)| n).sum()
    }
}

/// An upload being received: its temporary file, deleted unless [`FileStore::finish`] stored
/// it.
pub struct Upload {
    room: String,
    name: String,
    path: PathBuf,
    tmp: Option<PathBuf>,
    file: tokio::io::BufWriter<tokio::fs::File>,
    hash: ring::digest::Context,
    len: u64,
    limit: u64,
}

crate::debug_fields!(Upload: name, len);

impl Upload {
    /// The next piece of the body; refused (and the upload over) past its limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        use tokio::io::AsyncWriteExt;
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(FileError::TooLarge(self.limit));
        }
        self.hash.update(chunk);
        self.file.write_all(chunk).await.map_err(io)
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            // A quick unlink; the file may still be open, which Unix allows.
            let _ = std::fs::remove_file(tmp);
        }
    }
}

async fn list_dir(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_name(&n) {
                continue;
            }
            if let Ok(m) = e.metadata().await {
                if m.is_file() {
                    out.push((n, m.len()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(secs: f32) -> Bytes {
        let mut cur = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for n in 0..(8000.0 * secs) as usize {
            w.write_sample(((n as f32 * 0.3).sin() * 9000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        cur.into_inner().into()
    }

    /// How many files, finished or temporary, are in `room`'s folder.
    fn files_in(s: &FileStore, room: &str) -> usize {
        std::fs::read_dir(s.settings().dir.join(room))
            .unwrap()
            .count()
    }

    fn store(quota: u64) -> FileStore {
        let dir = std::env::temp_dir().join(format!(
            "dinh-files-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        FileStore::new(FileSettings {
            dir,
            quota_bytes: quota,
            ..Default::default()
        })
    }

    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        h.finish()
    }

    #[tokio::test]
    async fn files_are_kept_per_room() {
        let s = store(10_000_000);
        let a = s.admit().unwrap();
        let info = s.store(&a, "xom-1", "ban-tin.wav", wav(1.0)).await.unwrap();
        assert_eq!(info.bytes, 16_044);
        assert_eq!(info.sha256.len(), 64);
        assert!((info.audio.seconds() - 1.0).abs() < 0.03);
        assert_eq!(s.list("xom-1").await, [("ban-tin.wav".to_owned(), 16_044)]);
        assert_eq!(s.list("xom-2").await, []);
        assert!(matches!(
            s.load("xom-2", "ban-tin.wav").await,
            Err(FileError::NotFound(_))
        ));
        assert!(s.load("xom-1", "ban-tin.wav").await.is_ok());
        assert!(matches!(
            s.remove("xom-2", "ban-tin.wav").await,
            Err(FileError::NotFound(_))
        ));
        s.remove("xom-1", "ban-tin.wav").await.unwrap();
        assert_eq!(s.list("xom-1").await, []);
    }

    #[tokio::test]
    async fn a_room_over_its_quota_is_refused_and_nothing_is_written() {
        // Room for two 1-second files, not three.
        let s = store(40_000);
        let a = s.admit().unwrap();
        s.store(&a, "xom-1", "a.wav", wav(1.0)).await.unwrap();
        s.store(&a, "xom-1", "b.wav", wav(1.0)).await.unwrap();
        match s.store(&a, "xom-1", "c.wav", wav(1.0)).await {
            Err(FileError::Quota { used, quota, need }) => {
                assert_eq!((used, quota, need), (32_088, 40_000, 48_132));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.list("xom-1").await.len(), 2);
        // Replacing a file counts only the difference.
        s.store(&a, "xom-1", "b.wav", wav(1.2)).await.unwrap();
        // Another room has its own quota.
        s.store(&a, "xom-2", "c.wav", wav(1.0)).await.unwrap();
    }

    #[tokio::test]
    async fn uploads_past_the_limit_in_flight_are_told_to_come_back() {
        let s = store(10_000_000);
        let held: Vec<Admission> = (0..3).map(|_| s.admit().unwrap()).collect();
        assert!(matches!(
            s.admit(),
            Err(FileError::Busy {
                retry_after_secs: 5
            })
        ));
        drop(held);
        assert!(s.admit().is_ok());
        assert_eq!(s.stats().busy.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_are_checked_one_at_a_time() {
        let s = Arc::new(store(100_000_000));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let a = s.admit().unwrap();
                s.store(&a, "xom-1", &format!("f{i}.wav"), wav(30.0)).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(s.stats().checking_peak.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn bad_names_and_bad_audio_write_nothing() {
        let s = store(10_000_000);
        let a = s.admit().unwrap();
        for name in ["../x.wav", "x.mp3", ".wav", "a b.wav"] {
            assert!(
                matches!(
                    s.store(&a, "xom-1", name, wav(0.1)).await,
                    Err(FileError::Name)
                ),
                "{name}"
            );
        }
        let r = s
            .store(&a, "xom-1", "x.wav", Bytes::from_static(b"ID3 mp3"))
            .await;
        assert!(
            matches!(r, Err(FileError::Audio(ClipError::Format))),
            "{r:?}"
        );
        // Not even its temporary file is left.
        assert_eq!(files_in(&s, "xom-1"), 0);
    }

    #[tokio::test]
    async fn a_body_past_its_limit_is_refused_as_it_arrives_and_leaves_nothing() {
        let s = store(10_000_000);
        let a = s.admit().unwrap();
        let mut up = s.begin(&a, "xom-1", "a.wav", 1000).await.unwrap();
        up.write(&[0u8; 600]).await.unwrap();
        assert!(matches!(
            up.write(&[0u8; 600]).await,
            Err(FileError::TooLarge(1000))
        ));
        drop(up);
        assert_eq!(files_in(&s, "xom-1"), 0);
    }

    #[tokio::test]
    async fn a_file_written_piece_by_piece_has_the_identity_of_its_bytes() {
        let s = store(10_000_000);
        let a = s.admit().unwrap();
        let bytes = wav(1.0);
        let mut up = s.begin(&a, "xom-1", "a.wav", 1_000_000).await.unwrap();
        for c in bytes.chunks(777) {
            up.write(c).await.unwrap();
        }
        let info = s.finish(up).await.unwrap();
        assert_eq!(info.sha256, sha256_hex(&bytes));
        assert_eq!(info.bytes, bytes.len() as u64);
        let on_disk = std::fs::read(s.settings().dir.join("xom-1/a.wav")).unwrap();
        assert_eq!(on_disk, bytes);
    }
}
