//! Sorted runs on disk, merged: what a partitioned run writes per partition (its tables, its pool
//! changes) is read back side by side, a record per partition held, and merged by a key. A run
//! is CSV with a header, Snappy-framed (SPEC §8: spilled compressed; a month's spilled tables are
//! about a quarter of their CSV size).

use csv::StringRecord;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

/// A run's file name ends with this.
pub const EXTENSION: &str = "csv.sz";

/// A partition's (or shard's) pool changes, beside its tables.
pub const POOLS: &str = "pools.csv.sz";

/// A run being written.
pub type Writer = snap::write::FrameEncoder<std::io::BufWriter<std::fs::File>>;

/// A run written into `file`.
pub fn writer(file: std::fs::File) -> Writer {
    snap::write::FrameEncoder::new(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// Writes what is left of the run.
pub fn finish(w: Writer) -> std::io::Result<()> {
    w.into_inner()
        .map_err(|e| e.into_error())?
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok(())
}

/// One column of a merge key: compared as text, or as a number.
#[derive(Debug, Clone, Copy)]
pub enum KeyPart {
    Text(usize),
    Count(usize),
}

/// A record's key value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyValue {
    Text(String),
    Count(u64),
}

/// How runs are merged: by these columns, then by run (ties keep the run's own order).
pub type Order = &'static [KeyPart];

/// The key `order` gives a record.
pub fn key(order: Order, record: &StringRecord) -> Vec<KeyValue> {
    order
        .iter()
        .map(|part| match *part {
            KeyPart::Text(c) => KeyValue::Text(record.get(c).unwrap_or("").to_string()),
            KeyPart::Count(c) => {
                KeyValue::Count(record.get(c).and_then(|v| v.parse().ok()).unwrap_or(0))
            }
        })
        .collect()
}

/// Whether a record's key under `order` is `key` (without making it).
fn has_key(order: Order, record: &StringRecord, key: &[KeyValue]) -> bool {
    order
        .iter()
        .zip(key)
        .all(|(part, value)| match (*part, value) {
            (KeyPart::Text(c), KeyValue::Text(t)) => record.get(c).unwrap_or("") == t,
            (KeyPart::Count(c), KeyValue::Count(n)) => {
                record
                    .get(c)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    == *n
            }
            _ => false,
        })
}

/// One run, read a record at a time.
struct Run {
    reader: csv::Reader<snap::read::FrameDecoder<std::fs::File>>,
    path: PathBuf,
    record: StringRecord,
}

impl Run {
    /// The run at its first record; `None` when it has none.
    fn open(path: PathBuf) -> Result<Option<Run>, String> {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(snap::read::FrameDecoder::new(file));
        let mut run = Run {
            reader,
            path,
            record: StringRecord::new(),
        };
        Ok(run.advance()?.then_some(run))
    }

    fn advance(&mut self) -> Result<bool, String> {
        self.reader
            .read_record(&mut self.record)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Runs (CSV files with a header, each sorted by `order`) merged: each record in turn.
pub struct Merge {
    runs: Vec<Option<Run>>,
    heap: BinaryHeap<Reverse<(Vec<KeyValue>, usize)>>,
    order: Order,
    /// The run whose record was last handed out (advanced before the next pick), and its key.
    taken: Option<(usize, Vec<KeyValue>)>,
}

impl Merge {
    /// Every file must exist (a run with no records is a header alone).
    pub fn open(paths: Vec<PathBuf>, order: Order) -> Result<Merge, String> {
        let mut runs = Vec::with_capacity(paths.len());
        let mut heap = BinaryHeap::new();
        for (k, path) in paths.into_iter().enumerate() {
            let run = Run::open(path)?;
            if let Some(r) = &run {
                heap.push(Reverse((key(order, &r.record), k)));
            }
            runs.push(run);
        }
        Ok(Merge {
            runs,
            heap,
            order,
            taken: None,
        })
    }

    /// The next record in `order` (smallest key, then lowest run).
    pub fn next_record(&mut self) -> Result<Option<&StringRecord>, String> {
        if let Some((k, last)) = self.taken.take()
            && let Some(run) = self.runs[k].as_mut()
        {
            if !run.advance()? {
                self.runs[k] = None;
            } else if has_key(self.order, &run.record, &last) {
                // The same key again from the same run: no other run's record of that key
                // comes before it (a lower run's would have been taken first).
                self.taken = Some((k, last));
                return Ok(self.runs[k].as_ref().map(|r| &r.record));
            } else {
                self.heap.push(Reverse((key(self.order, &run.record), k)));
            }
        }
        let Some(Reverse((last, k))) = self.heap.pop() else {
            return Ok(None);
        };
        self.taken = Some((k, last));
        Ok(self.runs[k].as_ref().map(|r| &r.record))
    }
}

/// Records spilled by the hash (FNV-1a) of a key into `n` bucket files in a folder, each
/// bucket's bytes held until `limit` of them are appended to its file at once.
pub struct BucketFiles {
    folder: PathBuf,
    pending: Vec<Vec<u8>>,
    written: Vec<bool>,
    limit: usize,
}

impl BucketFiles {
    pub fn new(folder: PathBuf, n: usize, limit: usize) -> std::io::Result<BucketFiles> {
        std::fs::create_dir_all(&folder)?;
        Ok(BucketFiles {
            folder,
            pending: vec![Vec::new(); n.max(1)],
            written: vec![false; n.max(1)],
            limit,
        })
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn folder(&self) -> &std::path::Path {
        &self.folder
    }

    /// The bucket of a key.
    pub fn bucket_of(&self, key: &str) -> usize {
        (crate::fnv::fnv1a(key.as_bytes()) % self.pending.len() as u64) as usize
    }

    /// Appends a record's bytes, given in parts, to bucket `b`.
    pub fn append(&mut self, b: usize, parts: &[&[u8]]) -> std::io::Result<()> {
        for part in parts {
            self.pending[b].extend_from_slice(part);
        }
        if self.pending[b].len() >= self.limit {
            self.flush(b)?;
        }
        Ok(())
    }

    pub fn flush(&mut self, b: usize) -> std::io::Result<()> {
        use std::io::Write;
        if self.pending[b].is_empty() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(b))?;
        file.write_all(&self.pending[b])?;
        self.pending[b].clear();
        self.written[b] = true;
        Ok(())
    }

    pub fn flush_all(&mut self) -> std::io::Result<()> {
        (0..self.len()).try_for_each(|b| self.flush(b))
    }

    /// Bucket `b`'s file, if anything was appended to it.
    pub fn file(&self, b: usize) -> Option<PathBuf> {
        debug_assert!(
            self.pending[b].is_empty(),
            "bucket {b} read before it was flushed"
        );
        self.written[b].then(|| self.path(b))
    }

    /// Bucket `b`'s bytes not yet in its file, taken.
    pub fn take_pending(&mut self, b: usize) -> Vec<u8> {
        std::mem::take(&mut self.pending[b])
    }

    fn path(&self, b: usize) -> PathBuf {
        self.folder.join(format!("{b:04}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn runs_merge_by_text_then_number_and_ties_keep_the_run_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            let mut w = writer(std::fs::File::create(&p).unwrap());
            w.write_all(format!("id,row\n{body}").as_bytes()).unwrap();
            finish(w).unwrap();
            p
        };
        // Row numbers compare as numbers: 9 before 10 (as text "10" < "9").
        let a = write("a.csv", "L1,10\nL3,1\n");
        let b = write("b.csv", "L1,9\nL2,5\n");
        let c = write("c.csv", "");
        const ORDER: Order = &[KeyPart::Text(0), KeyPart::Count(1)];
        let mut m = Merge::open(vec![a, b, c], ORDER).unwrap();
        let mut got = Vec::new();
        while let Some(r) = m.next_record().unwrap() {
            got.push(format!("{}:{}", &r[0], &r[1]));
        }
        assert_eq!(got, ["L1:9", "L1:10", "L2:5", "L3:1"]);

        // By the first column only: a key's rows of one run stay together and in order, a
        // lower run's first.
        let a = write("d.csv", "P1,x\nP1,y\nP3,z\n");
        let b = write("e.csv", "P1,w\nP2,v\n");
        const FIRST: Order = &[KeyPart::Text(0)];
        let mut m = Merge::open(vec![b.clone(), a.clone()], FIRST).unwrap();
        let mut got = Vec::new();
        while let Some(r) = m.next_record().unwrap() {
            got.push(format!("{}:{}", &r[0], &r[1]));
        }
        assert_eq!(got, ["P1:w", "P1:x", "P1:y", "P2:v", "P3:z"]);
        let mut m = Merge::open(vec![a, b], FIRST).unwrap();
        let mut got = Vec::new();
        while let Some(r) = m.next_record().unwrap() {
            got.push(format!("{}:{}", &r[0], &r[1]));
        }
        assert_eq!(got, ["P1:x", "P1:y", "P1:w", "P2:v", "P3:z"]);
    }
}
