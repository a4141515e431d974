//! An output file that asks the kernel to start writing its bytes to the device while the run
//! is still producing the rest.
//!
//! Outputs are fsynced before the state commit (SPEC §4: the commit point). Left alone, the kernel
//! starts writing back only once a tenth of memory is dirty, so a month's outputs (0.9 GB of
//! Parquet, 4.4 GB of CSV at 10M lines) mostly reached the disk inside that final fsync, with the
//! cores idle. `sync_file_range(SYNC_FILE_RANGE_WRITE)` starts the writeback of each block as soon
//! as it is written and returns at once; the final fsync then waits only for the last blocks.
//! It changes when bytes reach the device, never what they are.

use std::fs::File;
use std::io::{self, Write};

/// Bytes written between two writeback requests.
const WRITEBACK_BLOCK: u64 = 16 << 20;

/// A file whose written bytes are handed to the device block by block.
pub struct WritebackFile {
    file: File,
    written: u64,
    requested: u64,
}

impl WritebackFile {
    pub fn new(file: File) -> WritebackFile {
        WritebackFile {
            file,
            written: 0,
            requested: 0,
        }
    }

    /// Starts the writeback of what was written since the last request, once a block has
    /// gathered. Advisory: a failure here is not an error (the final fsync reports real ones).
    fn request_writeback(&mut self) {
        if self.written - self.requested < WRITEBACK_BLOCK {
            return;
        }
        start_writeback(&self.file, self.requested, self.written - self.requested);
        self.requested = self.written;
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` lives; the call reads no memory of
    // ours and only schedules I/O on that descriptor's pages.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.request_writeback();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bytes_are_written_as_given_across_writeback_blocks() {
        // Three and a half blocks in uneven writes: the file holds exactly those bytes, and
        // writeback was requested up to the last whole block gathered (3 × 16 MiB).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let mut w = WritebackFile::new(File::create(&path).unwrap());
        let total = (WRITEBACK_BLOCK * 7 / 2) as usize;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(3_000_001) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.written, total as u64);
        assert!(w.requested >= 3 * WRITEBACK_BLOCK && w.requested <= w.written);
        drop(w);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == data);
    }
}
