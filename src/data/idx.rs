//! IDX files (MNIST, Fashion-MNIST, KMNIST): a big-endian header (magic 0x0000_08_NN for
//! unsigned bytes in NN dimensions, then NN u32 sizes) followed by the bytes.

use super::{find, is_gzip, not_gzip, read_file, Dataset, Splits};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const TRAIN: (&str, &str) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
const TEST: (&str, &str) = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
/// Every dataset of the MNIST family has ten classes.
const CLASSES: usize = 10;

pub(super) fn present(dir: &Path) -> bool {
    find(dir, TRAIN.0).is_ok()
}

/// Loads `train-*` and `t10k-*` IDX files from `dir`, each raw or gzip-compressed (`.gz`).
pub fn load_idx_dir(dir: &Path) -> Result<Splits> {
    let load = |(images, labels): (&str, &str)| -> Result<Dataset> {
        let ip = find(dir, images)?;
        let lp = find(dir, labels)?;
        let ib = inflate(&ip, read_file(&ip)?, 3, "images")?;
        let lb = inflate(&lp, read_file(&lp)?, 1, "labels")?;
        parse(&ip, &ib, &lp, &lb)
    };
    let train = load(TRAIN)?;
    let test = load(TEST)?;
    if (train.h, train.w) != (test.h, test.w) {
        return Err(Error::data(
            dir,
            format!("training images are {}x{} but test images are {}x{}", train.h, train.w, test.h, test.w),
        ));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "idx".into());
    Ok(Splits { train, test, name })
}

/// Parses an (images, labels) pair of in-memory IDX files, each gzip or raw, as
/// `(name, bytes)`; the names are for errors.
pub fn parse_idx_pair(images: (&str, &[u8]), labels: (&str, &[u8])) -> Result<Dataset> {
    let (ip, lp) = (PathBuf::from(images.0), PathBuf::from(labels.0));
    let ib = inflate(&ip, images.1.to_vec(), 3, "images")?;
    let lb = inflate(&lp, labels.1.to_vec(), 1, "labels")?;
    parse(&ip, &ib, &lp, &lb)
}

/// One IDX images file (raw or gzip), with its labels when the matching labels file sits beside
/// it (`*-images-idx3-ubyte*` -> `*-labels-idx1-ubyte*`); the bool says whether labels were found
/// (without them every label is 0).
pub fn load_idx_images(path: &Path) -> Result<(Dataset, bool)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let labels = name.contains("images-idx3").then(|| path.with_file_name(name.replace("images-idx3", "labels-idx1"))).filter(|p| p.is_file());
    let ib = inflate(path, read_file(path)?, 3, "images")?;
    if let Some(lp) = labels {
        let lb = inflate(&lp, read_file(&lp)?, 1, "labels")?;
        return Ok((parse(path, &ib, &lp, &lb)?, true));
    }
    let (dims, images) = header(path, &ib, 3, "images")?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::data(path, format!("holds {n} images of {h}x{w}; expected at least one image with both sizes above zero")));
    }
    Ok((Dataset { images: images.to_vec(), labels: vec![0; n], n, c: 1, h, w, classes: CLASSES }, false))
}

fn parse(ip: &Path, ib: &[u8], lp: &Path, lb: &[u8]) -> Result<Dataset> {
    let (dims, images) = header(ip, ib, 3, "images")?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h == 0 || w == 0 {
        return Err(Error::data(ip, format!("images are {h}x{w}; expected both sizes above zero")));
    }
    let (ldims, labels) = header(lp, lb, 1, "labels")?;
    if ldims[0] != n {
        return Err(Error::data(lp, format!("{} labels but {} has {n} images; the counts must match", ldims[0], ip.display())));
    }
    let ds = Dataset { images: images.to_vec(), labels: labels.to_vec(), n, c: 1, h, w, classes: CLASSES };
    ds.validate(lp)?;
    Ok(ds)
}

/// The file's bytes, inflated when they are gzip, but never past the size the inflated header
/// gives (plus one byte, to tell trailing data): a small file that inflates to gigabytes, a
/// gzip bomb or a header whose sizes do not match the data, is rejected without first being
/// held in memory whole.
fn inflate(path: &Path, bytes: Vec<u8>, ndims: usize, what: &str) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return not_gzip(path, bytes);
    }
    let corrupt = |e: std::io::Error| Error::data(path, format!("corrupt gzip data: {e}"));
    let mut gz = flate2::read::MultiGzDecoder::new(bytes.as_slice());
    let mut out = Vec::new();
    (&mut gz).take(4 + 4 * ndims as u64).read_to_end(&mut out).map_err(corrupt)?;
    // A header `header` rejects on its own (short, wrong magic, sizes past 2^64) needs no body.
    let Ok((dims, expected)) = sizes(path, &out, ndims, what) else {
        return Ok(out);
    };
    if let Some(free) = crate::host_memory::available_bytes().filter(|&f| expected > f) {
        return Err(Error::data(path, crate::host_memory::too_big("decompressing this file", expected, free)));
    }
    let rest = expected - out.len() as u64;
    (&mut gz).take(rest + 1).read_to_end(&mut out).map_err(corrupt)?;
    if out.len() as u64 > expected {
        return Err(Error::data(
            path,
            format!("gzip data inflates past the {expected} bytes its header gives ({} {what}): trailing data", shape(&dims)),
        ));
    }
    Ok(out)
}

fn shape(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

/// Checks the magic of an IDX file holding unsigned bytes in `ndims` dimensions and returns the
/// sizes and the whole file's length they imply; `b` needs to hold only the header.
fn sizes(path: &Path, b: &[u8], ndims: usize, what: &str) -> Result<(Vec<usize>, u64)> {
    let expected_magic = 0x0800 + ndims as u32;
    if b.len() < 4 {
        return Err(Error::data(path, format!("truncated: {} bytes, an IDX header needs at least 4", b.len())));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != expected_magic {
        let found = if magic >> 8 == 0x08 {
            format!("{}-D unsigned-byte IDX data", magic & 0xff)
        } else {
            "not an unsigned-byte IDX file".to_string()
        };
        return Err(Error::data(
            path,
            format!("wrong IDX magic 0x{magic:08x} ({found}); expected 0x{expected_magic:08x} ({ndims}-D {what})"),
        ));
    }
    let head = 4 + 4 * ndims;
    if b.len() < head {
        return Err(Error::data(path, format!("truncated: expected a {head}-byte header, found {} bytes", b.len())));
    }
    let dims: Vec<usize> = (0..ndims).map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    // Checked: dimensions from a damaged header can multiply past u64 and wrap to a small size.
    let Some(expected) = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).and_then(|body| body.checked_add(head as u64)) else {
        return Err(Error::data(path, format!("header sizes {} multiply past 2^64 bytes: not a real IDX file", shape(&dims))));
    };
    Ok((dims, expected))
}

/// Checks the magic and size of an IDX file holding unsigned bytes in `ndims` dimensions and
/// returns the sizes and the data.
fn header<'a>(path: &Path, b: &'a [u8], ndims: usize, what: &str) -> Result<(Vec<usize>, &'a [u8])> {
    let (dims, expected) = sizes(path, b, ndims, what)?;
    let shape = shape(&dims);
    if (b.len() as u64) < expected {
        return Err(Error::data(path, format!("truncated: expected {expected} bytes ({shape} {what}), found {}", b.len())));
    }
    if (b.len() as u64) > expected {
        return Err(Error::data(path, format!("expected {expected} bytes ({shape} {what}), found {} (trailing data)", b.len())));
    }
    Ok((dims, &b[4 + 4 * ndims..]))
}
