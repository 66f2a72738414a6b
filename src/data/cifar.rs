//! CIFAR-10 binary version: each record is one label byte then 3072 image bytes (32x32 red
//! plane, green plane, blue plane), which is already NCHW planar.

use super::{find, gunzip_if_needed, read_maybe_gz, Dataset, Splits};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const SUBFOLDER: &str = "cifar-10-batches-bin";
const TRAIN: [&str; 5] = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
const TEST: &str = "test_batch.bin";
const IMAGE: usize = 3 * 32 * 32;
const RECORD: usize = 1 + IMAGE;
/// The most a batch file may inflate to: the whole training set (50000 records) in one file,
/// five times a real batch. Only bounds gzip inflation (see `gunzip_if_needed`).
const MAX_BATCH_BYTES: u64 = 50_000 * RECORD as u64;
const MAX_BATCH_WHY: &str = "50000 records, the whole CIFAR-10 training set";

/// `dir` itself when it holds the batches, else its `cifar-10-batches-bin/` subfolder.
fn resolve(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(SUBFOLDER)].into_iter().find(|d| find(d, TRAIN[0]).is_ok())
}

pub(super) fn present(dir: &Path) -> bool {
    resolve(dir).is_some()
}

/// Loads `data_batch_1..5.bin` and `test_batch.bin` from `dir` or `dir/cifar-10-batches-bin/`.
pub fn load_cifar10_dir(dir: &Path) -> Result<Splits> {
    let Some(root) = resolve(dir) else {
        return Err(Error::data(
            dir,
            format!("missing {}: looked for {0} and {0}.gz here and in {SUBFOLDER}/", TRAIN[0]),
        ));
    };
    let train = load(&root, &TRAIN)?;
    let test = load(&root, &[TEST])?;
    Ok(Splits { train, test, name: "cifar10".into() })
}

fn load(root: &Path, names: &[&str]) -> Result<Dataset> {
    let mut ds = empty();
    for name in names {
        let path = find(root, name)?;
        let bytes = read_maybe_gz(&path, MAX_BATCH_BYTES, MAX_BATCH_WHY)?;
        append_batch(&mut ds, &path, &bytes)?;
    }
    Ok(ds)
}

fn empty() -> Dataset {
    Dataset { images: Vec::new(), labels: Vec::new(), n: 0, c: 3, h: 32, w: 32, classes: 10 }
}

/// Parses one in-memory batch file, gzip or raw (the bytes of `data_batch_1.bin`, say); `name`
/// is for errors.
pub fn parse_cifar10_batch(name: &str, bytes: &[u8]) -> Result<Dataset> {
    let path = PathBuf::from(name);
    let bytes = gunzip_if_needed(&path, bytes.to_vec(), MAX_BATCH_BYTES, MAX_BATCH_WHY)?;
    let mut ds = empty();
    append_batch(&mut ds, &path, &bytes)?;
    Ok(ds)
}

/// Adds the (inflated) records of one batch file to `ds`.
fn append_batch(ds: &mut Dataset, path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::data(path, format!("empty file; expected {RECORD}-byte records (a full batch is {} bytes)", 10000 * RECORD)));
    }
    if bytes.len() % RECORD != 0 {
        let records = bytes.len().div_ceil(RECORD);
        return Err(Error::data(
            path,
            format!("truncated: expected {} bytes ({records} records of {RECORD}), found {}", records * RECORD, bytes.len()),
        ));
    }
    let start = ds.n;
    for rec in bytes.chunks_exact(RECORD) {
        ds.labels.push(rec[0]);
        ds.images.extend_from_slice(&rec[1..]);
        ds.n += 1;
    }
    // Validate per file so the error names the file that holds the bad label.
    if let Some((i, &l)) = ds.labels[start..].iter().enumerate().find(|(_, &l)| l >= 10) {
        return Err(Error::data(path, format!("label {l} in record {i} is not below the class count 10")));
    }
    Ok(())
}
