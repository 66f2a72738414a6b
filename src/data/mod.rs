//! Datasets: host loaders (IDX for MNIST / Fashion-MNIST / KMNIST, CIFAR-10 binary), the
//! embedded Fashion-MNIST subset, validation splits and channel statistics. Images stay bytes
//! (NCHW planar) until [`DeviceData`] puts them on the GPU, where [`assemble`] gathers,
//! normalises and augments a batch.

mod cifar;
pub mod device;
mod idx;
pub mod known;

pub use cifar::{load_cifar10_dir, parse_cifar10_batch};
pub use device::{assemble, augment_choices, Augment, AugmentChoice, DeviceData};
pub use idx::{load_idx_dir, load_idx_images, parse_idx_pair};
pub use known::{class_names, identify, Known};

use crate::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Images as bytes, N*C*H*W in NCHW planar order, with one label per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub classes: usize,
}

/// A dataset's training and test splits; `name` is for messages and run records.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
    pub name: String,
}

impl Dataset {
    /// Bytes of one image (C*H*W).
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Image `i` as C*H*W bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            n: indices.len(),
            ..*self
        }
    }

    /// Splits off a validation set of `val_count` images (clamped to `n`) chosen by a shuffle
    /// seeded with `seed`; returns (rest, validation). Both keep the original order of their
    /// images, so the same seed gives the same two datasets on every machine.
    pub fn split(&self, val_count: usize, seed: u64) -> (Dataset, Dataset) {
        let mut order: Vec<usize> = (0..self.n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (val, rest) = order.split_at_mut(val_count.min(self.n));
        val.sort_unstable();
        rest.sort_unstable();
        (self.subset(rest), self.subset(val))
    }

    /// Per-channel mean and (population) standard deviation of the pixels on the 0..1 scale,
    /// summed in f64. An empty dataset gives mean 0 and std 1, so normalising is the identity.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.h * self.w;
        let mut sum = vec![0f64; self.c];
        let mut sq = vec![0f64; self.c];
        for img in self.images.chunks_exact(self.image_len().max(1)) {
            for (ch, px) in img.chunks_exact(plane.max(1)).enumerate() {
                // Integer sums per plane are exact; f64 only accumulates across images.
                let (s, q) = px.iter().fold((0u64, 0u64), |(s, q), &v| (s + v as u64, q + (v as u64) * (v as u64)));
                sum[ch] += s as f64;
                sq[ch] += q as f64;
            }
        }
        let count = (self.n * plane) as f64;
        if count == 0.0 {
            return (vec![0.0; self.c], vec![1.0; self.c]);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count / 255.0).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| (q / count / (255.0 * 255.0) - m * m).max(0.0).sqrt() as f32).collect();
        (mean.iter().map(|&m| m as f32).collect(), std)
    }

    /// Checks the invariants the loaders guarantee (sizes agree, labels below `classes`);
    /// `path` names the source in the error.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.images.len() != self.n * self.image_len() {
            return Err(Error::data(
                path,
                format!("{} image bytes for {} images of {}x{}x{}, expected {}", self.images.len(), self.n, self.c, self.h, self.w, self.n * self.image_len()),
            ));
        }
        if self.labels.len() != self.n {
            return Err(Error::data(path, format!("{} labels for {} images", self.labels.len(), self.n)));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= self.classes) {
            return Err(Error::data(path, format!("label {l} at index {i} is not below the class count {}", self.classes)));
        }
        Ok(())
    }
}

/// Loads whichever format `dir` holds: IDX files (MNIST family) or CIFAR-10 binary batches
/// (directly or in a `cifar-10-batches-bin/` subfolder).
pub fn load_dir(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "not a directory (expected a folder of IDX or CIFAR-10 binary files)"));
    }
    // An unreadable folder would otherwise look empty ("no dataset found").
    std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if idx::present(dir) {
        load_idx_dir(dir)
    } else if cifar::present(dir) {
        load_cifar10_dir(dir)
    } else {
        Err(Error::data(
            dir,
            "no dataset found: looked for IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], \
             t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) and CIFAR-10 binary batches \
             (data_batch_1.bin .. data_batch_5.bin, test_batch.bin, here or in cifar-10-batches-bin/)",
        ))
    }
}

/// The default dataset compiled into the binary: 5000 training and 1000 test images of
/// Fashion-MNIST, balanced over the 10 classes (see assets/README.md).
pub fn embedded() -> Result<Splits> {
    macro_rules! asset {
        ($name:literal) => {
            (
                concat!("<embedded>/fashion-mnist-small/", $name),
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fashion-mnist-small/", $name)).as_slice(),
            )
        };
    }
    let train = idx::parse_idx_pair(asset!("train-images-idx3-ubyte.gz"), asset!("train-labels-idx1-ubyte.gz"))?;
    let test = idx::parse_idx_pair(asset!("t10k-images-idx3-ubyte.gz"), asset!("t10k-labels-idx1-ubyte.gz"))?;
    Ok(Splits { train, test, name: "fashion-mnist-small".into() })
}

/// Reads a file, inflating it to at most `limit` bytes when it is gzip (by its magic bytes,
/// whatever its name); `why` says where the limit comes from, for the error. A file larger than
/// the host's free memory is refused before it is read.
fn read_maybe_gz(path: &Path, limit: u64, why: &str) -> Result<Vec<u8>> {
    gunzip_if_needed(path, read_file(path)?, limit, why)
}

/// The file's bytes; a file larger than the host's free memory is refused before it is read.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if let Some(free) = crate::host_memory::available_bytes().filter(|&free| len > free) {
        return Err(Error::data(path, crate::host_memory::too_big(&format!("reading this {len}-byte file"), len, free)));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// `bytes` as they are, or inflated when they are gzip. Inflating stops past `limit` bytes with
/// an error, so a small file cannot make the loader hold gigabytes (a gzip bomb, or a damaged
/// stream); uncompressed data is never past its own length, so it has no limit.
fn gunzip_if_needed(path: &Path, bytes: Vec<u8>, limit: u64, why: &str) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return not_gzip(path, bytes);
    }
    use std::io::Read;
    // Also stop at what the machine can hold, whichever bound is smaller.
    let free = crate::host_memory::available_bytes();
    let cap = limit.min(free.unwrap_or(u64::MAX));
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::data(path, format!("corrupt gzip data: {e}")))?;
    if out.len() as u64 > cap {
        if let Some(f) = free.filter(|&f| f < limit) {
            return Err(Error::data(path, crate::host_memory::too_big("decompressing this file", out.len() as u64, f)));
        }
        return Err(Error::data(path, format!("gzip data inflates past {limit} bytes, the most this file may hold ({why})")));
    }
    Ok(out)
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Bytes without the gzip magic, as they are; but under a `.gz` name that is an error rather
/// than a confusing format error later.
fn not_gzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "gz") {
        let found = bytes.iter().take(2).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        return Err(Error::data(path, format!("corrupt gzip data: starts with [{found}], expected the gzip magic 1f 8b")));
    }
    Ok(bytes)
}

/// `dir/name` or `dir/name.gz`, whichever exists; the error lists both names.
fn find(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let gz = format!("{name}.gz");
    [name, gz.as_str()]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::data(dir, format!("missing {name}: looked for {name} and {gz}")))
}
