//! TensorBoard's event file format, written here so that every write error reaches the run
//! as an error value (tensorboard-rs writes from a thread of its own and panics on any I/O
//! error, e.g. a full disk). A file is a sequence of records: the payload length as u64 LE,
//! the masked CRC32C of those 8 bytes, the payload (a serialised `Event`), the payload's
//! masked CRC32C; the first event names the format version.
//!
//! Writes are buffered and synchronous. The first error is kept and every later write is
//! skipped: a caller that logs many scalars checks once, at `flush` or `close`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use protobuf::Message;
use tensorboard_proto::event::Event;

use super::fault;

/// The CRC-32C (Castagnoli) table, reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// TFRecord's masked CRC: rotated right by 15 and offset, so that a CRC of data that itself
/// holds CRCs stays well distributed.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, payload, the payload's masked CRC.
fn write_record(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let len = (payload.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(payload)?;
    out.write_all(&masked_crc32c(payload).to_le_bytes())
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An event file being written.
pub struct EventFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// The first write error; once set, nothing more is written.
    error: Option<std::io::Error>,
}

impl EventFile {
    /// Start `events.out.tfevents.<time>.<host>.<pid>` in `dir` (created), the name
    /// TensorBoard globs for. An error is kept for `flush`/`close` to report.
    pub fn create(dir: &Path) -> EventFile {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!(
            "events.out.tfevents.{secs:010}.{}.{}",
            super::host_name(),
            std::process::id()
        ));
        let opened = std::fs::create_dir_all(dir).and_then(|_| File::create(&path));
        let mut file = EventFile {
            path,
            out: None,
            error: None,
        };
        match opened {
            Ok(f) => file.out = Some(BufWriter::new(f)),
            Err(e) => file.error = Some(e),
        }
        let mut version = Event::new();
        version.set_file_version("brain.Event:2".into());
        version.set_wall_time(now_secs());
        file.append(&version);
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `event` (its wall time set now, its step given).
    pub fn add(&mut self, mut event: Event, step: usize) {
        event.set_wall_time(now_secs());
        event.set_step(step as i64);
        self.append(&event);
    }

    fn append(&mut self, event: &Event) {
        if self.error.is_some() {
            return;
        }
        let written = (|| {
            fault::write_point("write an event record")?;
            let payload = event.write_to_bytes().map_err(std::io::Error::other)?;
            let out = self.out.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
            write_record(out, &payload)
        })();
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    /// Push what is buffered to the file; the first error of any write so far.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.error.is_none() {
            if let Some(out) = &mut self.out {
                if let Err(e) = out.flush() {
                    self.error = Some(e);
                }
            }
        }
        match &self.error {
            // io::Error is not Clone: the kept one is described again, its OS code kept.
            Some(e) => Err(match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(e.kind(), e.to_string()),
            }),
            None => Ok(()),
        }
    }

    /// Flush and close; the first error of any write.
    pub fn close(mut self) -> std::io::Result<()> {
        self.flush()?;
        if let Some(out) = self.out.take() {
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC-32C ("123456789" → 0xE3069283, RFC 3720 B.4) and the record
    /// framing TensorBoard's reader checks (tensorflow's record_writer: length, masked CRC
    /// of the length, payload, masked CRC of the payload).
    #[test]
    fn records_carry_tfrecord_crcs() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA); // RFC 3720 B.4, 32 bytes of zeros
        let mut out = Vec::new();
        write_record(&mut out, b"abc").unwrap();
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        let masked = |c: u32| c.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(out[8..12], masked(crc32c(&out[..8])).to_le_bytes());
        assert_eq!(out[15..], masked(crc32c(b"abc")).to_le_bytes());
    }

    /// A write that fails (a full disk, /dev/full) is an error at flush and at close, and
    /// nothing panics; writing on after the error is harmless.
    #[test]
    fn a_write_error_is_returned_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = EventFile::create(dir.path());
        file.flush().unwrap();
        if Path::new("/dev/full").exists() {
            file.out = Some(BufWriter::with_capacity(
                1,
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            ));
            file.add(Event::new(), 1);
            file.add(Event::new(), 2);
            let e = file.flush().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
            assert!(file.close().is_err());
        }
        // A directory that cannot be created: the error waits for flush.
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, b"").unwrap();
        let mut file = EventFile::create(&blocked.join("sub"));
        file.add(Event::new(), 0);
        assert!(file.flush().is_err());
    }
}
