//! Dataset loaders (every bad-input case is an error that names the file), the embedded subset,
//! splits and statistics, and GPU batch assembly against its CPU reference.

use cellnas::data::{self, device::reference, Augment, Dataset, DeviceData};
use cellnas::gpu::test_gpu;
use cellnas::tensor::upload_u32;
use cellnas::{Error, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellnas-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Image i has every pixel byte equal to (i * 31 + k) mod 256, so images are distinguishable.
fn pixels(n: usize, len: usize) -> Vec<u8> {
    (0..n * len).map(|j| ((j / len) * 31 + j % len) as u8).collect()
}

/// Writes a valid IDX dataset: `n_train` and `n_test` images of h x w, train raw, test gzip.
fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, h: usize, w: usize) {
    for (prefix, n, gzip) in [("train", n_train, false), ("t10k", n_test, true)] {
        let images = idx_bytes(0x803, &[n as u32, h as u32, w as u32], &pixels(n, h * w));
        let labels = idx_bytes(0x801, &[n as u32], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
        let (ext, images, labels) = if gzip { (".gz", gz(&images), gz(&labels)) } else { ("", images, labels) };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels).unwrap();
    }
}

/// The error message of a load that must fail with Error::Data.
fn data_error(r: cellnas::Result<data::Splits>) -> String {
    match r {
        Err(e @ Error::Data { .. }) => e.to_string(),
        Err(e) => panic!("expected a data error, got {e}"),
        Ok(_) => panic!("expected a data error, loading succeeded"),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks {p:?}: {msg}");
    }
}

#[test]
fn idx_loads_raw_and_gzip() {
    let dir = temp_dir("idx-ok");
    write_idx_dir(&dir, 7, 4, 3, 5);
    let s = data::load_idx_dir(&dir).unwrap();
    assert_eq!((s.train.n, s.train.c, s.train.h, s.train.w, s.train.classes), (7, 1, 3, 5, 10));
    assert_eq!(s.train.images, pixels(7, 15));
    assert_eq!(s.train.labels, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!((s.test.n, s.test.images.len()), (4, 60));
    assert_eq!(s.name, dir.file_name().unwrap().to_string_lossy());
    let again = data::load_dir(&dir).unwrap();
    assert_eq!((again.train, again.test), (s.train, s.test));
}

#[test]
fn idx_missing_file_lists_the_names_looked_for() {
    let dir = temp_dir("idx-missing");
    write_idx_dir(&dir, 3, 2, 2, 2);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let msg = data_error(data::load_idx_dir(&dir));
    assert_has(&msg, &["missing", "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"]);
}

#[test]
fn idx_truncated_says_expected_and_found_bytes() {
    let dir = temp_dir("idx-trunc");
    write_idx_dir(&dir, 3, 2, 2, 2);
    let p = dir.join("train-images-idx3-ubyte");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 5);
    std::fs::write(&p, &b).unwrap();
    let msg = data_error(data::load_idx_dir(&dir));
    // header 16 + 3*2*2 = 28 expected, 23 found
    assert_has(&msg, &["train-images-idx3-ubyte", "truncated", "expected 28 bytes", "found 23"]);
    std::fs::write(&p, &b[..2]).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["truncated", "2 bytes"]);
}

#[test]
fn idx_wrong_magic_and_wrong_dims() {
    let dir = temp_dir("idx-magic");
    write_idx_dir(&dir, 3, 2, 2, 2);
    let p = dir.join("train-images-idx3-ubyte");
    std::fs::write(&p, idx_bytes(0x1234_5678, &[3, 2, 2], &[0; 12])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-images-idx3-ubyte", "0x12345678", "0x00000803"]);
    // A label file where images belong: 1-D, not 3-D.
    std::fs::write(&p, idx_bytes(0x801, &[3], &[0; 3])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["0x00000801", "1-D", "expected 0x00000803", "3-D images"]);
    // Images where labels belong.
    std::fs::write(&p, idx_bytes(0x803, &[3, 2, 2], &[0; 12])).unwrap();
    let l = dir.join("train-labels-idx1-ubyte");
    std::fs::write(&l, idx_bytes(0x803, &[3, 1, 1], &[0; 3])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-labels-idx1-ubyte", "0x00000803", "expected 0x00000801"]);
    // Zero-sized images.
    std::fs::write(&l, idx_bytes(0x801, &[3], &[0; 3])).unwrap();
    std::fs::write(&p, idx_bytes(0x803, &[3, 0, 2], &[])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["0x2", "above zero"]);
}

#[test]
fn idx_count_mismatch_and_bad_label() {
    let dir = temp_dir("idx-count");
    write_idx_dir(&dir, 3, 2, 2, 2);
    let l = dir.join("train-labels-idx1-ubyte");
    std::fs::write(&l, idx_bytes(0x801, &[2], &[0, 1])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-labels-idx1-ubyte", "2 labels", "3 images"]);
    std::fs::write(&l, idx_bytes(0x801, &[3], &[0, 10, 1])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-labels-idx1-ubyte", "label 10 at index 1", "class count 10"]);
    // Test and training images of different sizes.
    std::fs::write(&l, idx_bytes(0x801, &[3], &[0, 9, 1])).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_bytes(0x803, &[3, 1, 4], &[0; 12])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["1x4", "2x2"]);
}

#[test]
fn idx_corrupt_gzip() {
    let dir = temp_dir("idx-gz");
    write_idx_dir(&dir, 3, 2, 2, 2);
    let p = dir.join("t10k-images-idx3-ubyte.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["t10k-images-idx3-ubyte.gz", "corrupt gzip"]);
    std::fs::write(&p, b"not gzip at all").unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["t10k-images-idx3-ubyte.gz", "corrupt gzip", "1f 8b"]);
}

const RECORD: usize = 3073;

/// `records` CIFAR records; record r has label labels(r) and pixel k = (r * 7 + k) mod 256.
fn cifar_bytes(records: usize, first: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for r in first..first + records {
        v.push((r % 10) as u8);
        v.extend((0..3072).map(|k| ((r * 7 + k) % 256) as u8));
    }
    v
}

fn write_cifar_dir(dir: &Path) {
    for b in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), cifar_bytes(2, 2 * (b - 1))).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_bytes(3, 100)).unwrap();
}

#[test]
fn cifar10_loads_here_and_from_the_subfolder() {
    let dir = temp_dir("cifar-ok");
    let sub = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&sub).unwrap();
    write_cifar_dir(&sub);
    let s = data::load_dir(&dir).unwrap();
    assert_eq!(s.name, "cifar10");
    assert_eq!((s.train.n, s.train.c, s.train.h, s.train.w, s.train.classes), (10, 3, 32, 32, 10));
    assert_eq!(s.train.labels, (0..10).map(|r| r as u8).collect::<Vec<_>>());
    assert_eq!(s.test.labels, vec![0, 1, 2]);
    // Record 9 is the second record of batch 5; its image bytes follow its label.
    assert_eq!(s.train.image(9), &cifar_bytes(1, 9)[1..]);
    let direct = data::load_cifar10_dir(&sub).unwrap();
    assert_eq!(direct.train, s.train);
}

#[test]
fn cifar10_bad_inputs() {
    let dir = temp_dir("cifar-bad");
    write_cifar_dir(&dir);
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    assert_has(&data_error(data::load_cifar10_dir(&dir)), &["missing data_batch_3.bin", "data_batch_3.bin.gz"]);
    write_cifar_dir(&dir);
    let t = dir.join("test_batch.bin");
    std::fs::write(&t, &cifar_bytes(3, 0)[..3 * RECORD - 10]).unwrap();
    assert_has(&data_error(data::load_cifar10_dir(&dir)), &["test_batch.bin", "truncated", "expected 9219 bytes", "found 9209"]);
    let mut bad = cifar_bytes(3, 0);
    bad[RECORD] = 10;
    std::fs::write(&t, &bad).unwrap();
    assert_has(&data_error(data::load_cifar10_dir(&dir)), &["test_batch.bin", "label 10 in record 1"]);
    let empty = temp_dir("cifar-none");
    assert_has(&data_error(data::load_cifar10_dir(&empty)), &["missing data_batch_1.bin", "cifar-10-batches-bin"]);
    assert_has(&data_error(data::load_dir(&empty)), &["no dataset found", "train-images-idx3-ubyte", "data_batch_1.bin"]);
    assert_has(&data_error(data::load_dir(&empty.join("nope"))), &["not a directory"]);
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let ds = Dataset { images: pixels(50, 4), labels: (0..50).map(|i| (i % 10) as u8).collect(), n: 50, c: 1, h: 2, w: 2, classes: 10 };
    let (train, val) = ds.split(12, 7);
    assert_eq!((train.n, val.n, train.images.len(), val.labels.len()), (38, 12, 152, 12));
    assert_eq!(ds.split(12, 7), (train.clone(), val.clone()), "same seed, same split");
    assert_ne!(ds.split(12, 8).1, val, "another seed, another split");
    // Every image lands in exactly one part, with its own label.
    let mut seen: Vec<(Vec<u8>, u8)> = Vec::new();
    for part in [&train, &val] {
        for i in 0..part.n {
            seen.push((part.image(i).to_vec(), part.labels[i]));
        }
    }
    seen.sort();
    let mut all: Vec<(Vec<u8>, u8)> = (0..50).map(|i| (ds.image(i).to_vec(), ds.labels[i])).collect();
    all.sort();
    assert_eq!(seen, all);
    assert_ne!(val.images, ds.images[..48].to_vec(), "validation set is not just the first images");
    let (rest, all_val) = ds.split(99, 1);
    assert_eq!((rest.n, all_val.n), (0, 50));
}

#[test]
fn channel_stats_on_known_values() {
    // Two images, 2 channels of 1x2: channel 0 = {0, 255, 255, 255}, channel 1 = {51} * 4.
    let ds = Dataset { images: vec![0, 255, 51, 51, 255, 255, 51, 51], labels: vec![0, 1], n: 2, c: 2, h: 1, w: 2, classes: 2 };
    let (mean, std) = ds.channel_stats();
    assert!((mean[0] - 0.75).abs() < 1e-6 && (std[0] - 0.75f32.sqrt() * 0.5).abs() < 1e-6, "{mean:?} {std:?}");
    assert!((mean[1] - 0.2).abs() < 1e-6 && std[1].abs() < 1e-6, "{mean:?} {std:?}");
}

#[test]
fn embedded_set_is_balanced_fashion_mnist() {
    let s = data::embedded().unwrap();
    assert_eq!(s.name, "fashion-mnist-small");
    assert_eq!((s.train.n, s.test.n, s.train.c, s.train.h, s.train.w), (5000, 1000, 1, 28, 28));
    assert_eq!(s.train.class_counts(), vec![500; 10]);
    assert_eq!(s.test.class_counts(), vec![100; 10]);
    let (mean, std) = s.train.channel_stats();
    // Fashion-MNIST's well-known statistics are about 0.286 and 0.353.
    assert!((mean[0] - 0.286).abs() < 0.02 && (std[0] - 0.353).abs() < 0.02, "{mean:?} {std:?}");
}

#[test]
fn full_fashion_mnist_loads_when_present() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/fashion-mnist"));
    if !dir.is_dir() {
        eprintln!("skipping: {} is absent", dir.display());
        return;
    }
    let s = data::load_dir(dir).unwrap();
    assert_eq!((s.train.n, s.test.n, s.train.h, s.train.w, s.train.classes), (59947, 10000, 28, 28, 10));
    assert_eq!(s.test.class_counts(), vec![1000; 10]);
}

// ---- GPU batch assembly ----

/// Random bytes for n images of c x h x w; c*h*w = 105 is not a multiple of 4, so the packed
/// images carry padding words.
fn random_dataset(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Dataset {
        images: (0..n * c * h * w).map(|_| rng.random()).collect(),
        labels: (0..n).map(|_| rng.random_range(0..10)).collect(),
        n,
        c,
        h,
        w,
        classes: 10,
    }
}

const MEAN: [f32; 3] = [0.49, 0.48, 0.45];
const STD: [f32; 3] = [0.25, 0.24, 0.26];

/// Assembles on the GPU into poisoned outputs and returns (x, labels).
fn run_assemble(data: &DeviceData, indices: &[u32], aug: &Augment, seed: u32) -> (Vec<f32>, Vec<u32>) {
    let gpu = test_gpu();
    let [c, h, w] = data.image_shape();
    let b = indices.len();
    let idx = upload_u32(&gpu, indices).unwrap();
    let x = Tensor::empty(&gpu, &[b, c, h, w]);
    x.poison(&gpu).unwrap();
    let labels = upload_u32(&gpu, &vec![0xdead_beef; b]).unwrap();
    let mut step = gpu.step();
    data::assemble(&mut step, data, &idx, b, aug, seed, &x, &labels).unwrap();
    let hx = step.read(&x.buf, 0, 4 * x.numel() as u64);
    let hl = step.read(&labels, 0, 4 * b as u64);
    let out = step.submit().unwrap();
    (out.f32s(hx), out.u32s(hl))
}

fn assert_close(gpu: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(gpu.len(), cpu.len());
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!((g - c).abs() <= 1e-5 + 1e-5 * c.abs(), "{what}: element {i}: gpu {g} vs reference {c}");
    }
}

const AUGMENTS: [Augment; 6] = [
    Augment { crop_padding: 0, flip: false, cutout: 0 },
    Augment { crop_padding: 2, flip: false, cutout: 0 },
    Augment { crop_padding: 0, flip: true, cutout: 0 },
    Augment { crop_padding: 0, flip: false, cutout: 3 },
    Augment { crop_padding: 0, flip: false, cutout: 4 },
    Augment { crop_padding: 3, flip: true, cutout: 4 },
];

#[test]
fn assemble_matches_reference_with_and_without_chunks() {
    let gpu = test_gpu();
    let ds = random_dataset(13, 3, 5, 7, 1);
    let whole = DeviceData::upload(&gpu, &ds, &MEAN, &STD).unwrap();
    assert_eq!((whole.chunks(), whole.images_per_chunk() >= 13), (1, true));
    // 105 bytes pad to 108 per image: 3 images per 330-byte chunk, 5 chunks.
    let chunked = DeviceData::upload_with_chunk_limit(&gpu, &ds, &MEAN, &STD, 330).unwrap();
    assert_eq!((chunked.chunks(), chunked.images_per_chunk()), (5, 3));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for batch in [1usize, 5, 17] {
        let indices: Vec<u32> = (0..batch).map(|_| rng.random_range(0..13)).collect();
        for (a, aug) in AUGMENTS.iter().enumerate() {
            let seed = 1000 + a as u32;
            let (want_x, want_l) = reference::assemble(&ds, &MEAN, &STD, &indices, aug, seed);
            for (name, data) in [("one chunk", &whole), ("five chunks", &chunked)] {
                let (x, l) = run_assemble(data, &indices, aug, seed);
                let what = format!("batch {batch} {aug:?} {name}");
                assert_eq!(l, want_l, "{what}: labels");
                assert_close(&x, &want_x, &what);
            }
        }
    }
}

#[test]
fn choices_match_reference_exactly_and_vary() {
    let gpu = test_gpu();
    let aug = Augment { crop_padding: 4, flip: true, cutout: 16 };
    let batch = 301;
    let mut per_seed = Vec::new();
    for seed in [0u32, 1, 0x9e37_79b9] {
        let out = gpu.alloc(20 * batch as u64);
        let mut step = gpu.step();
        data::augment_choices(&mut step, &aug, seed, batch, 32, 30, &out).unwrap();
        let h = step.read(&out, 0, 20 * batch as u64);
        let got = step.submit().unwrap().u32s(h);
        let want: Vec<u32> = (0..batch as u32)
            .flat_map(|b| {
                let c = reference::choice(&aug, seed, b, 32, 30);
                [c.flip as u32, c.crop_x, c.crop_y, c.cutout_x, c.cutout_y]
            })
            .collect();
        assert_eq!(got, want, "seed {seed}");
        let column = |k: usize| got.iter().skip(k).step_by(5).copied().collect::<Vec<_>>();
        let flips = column(0).iter().filter(|&&f| f == 1).count();
        assert!((100..=200).contains(&flips), "seed {seed}: {flips} of {batch} flipped");
        for k in [1, 2] {
            let mut values = column(k);
            values.sort();
            values.dedup();
            assert_eq!(values, (0..=8).collect::<Vec<_>>(), "seed {seed}: every crop offset occurs");
        }
        assert!(column(3).iter().all(|&v| v < 30) && column(4).iter().all(|&v| v < 32));
        assert!(column(3).iter().collect::<std::collections::BTreeSet<_>>().len() > 20);
        per_seed.push(got);
    }
    assert_ne!(per_seed[0], per_seed[1]);
    assert_ne!(per_seed[1], per_seed[2]);
}

#[test]
fn augmentation_varies_across_positions_and_seeds_and_repeats_exactly() {
    let gpu = test_gpu();
    let ds = random_dataset(2, 3, 5, 7, 3);
    let data = DeviceData::upload(&gpu, &ds, &MEAN, &STD).unwrap();
    let aug = Augment { crop_padding: 2, flip: true, cutout: 0 };
    let indices = vec![1u32; 16];
    let (x1, _) = run_assemble(&data, &indices, &aug, 5);
    let image = 105;
    let mut distinct: Vec<&[f32]> = x1.chunks(image).collect();
    distinct.sort_by(|a, b| a.partial_cmp(b).unwrap());
    distinct.dedup();
    assert!(distinct.len() >= 8, "only {} distinct augmentations of one image in 16 positions", distinct.len());
    let (x2, _) = run_assemble(&data, &indices, &aug, 6);
    assert_ne!(x1, x2, "another seed, other augmentations");
    let (x3, _) = run_assemble(&data, &indices, &aug, 5);
    assert_eq!(x1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), x3.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    // Without augmentation every copy is the same normalised image.
    let (plain, _) = run_assemble(&data, &indices, &Augment::default(), 5);
    assert!(plain.chunks(image).all(|c| c == &plain[..image]));
}

#[test]
fn padded_pixels_are_normalised_zeros_and_cutout_is_zero() {
    let gpu = test_gpu();
    // All-white images: any value other than 1 came from padding or cutout.
    let ds = Dataset { images: vec![255; 2 * 3 * 5 * 7], labels: vec![3, 4], n: 2, c: 3, h: 5, w: 7, classes: 10 };
    let data = DeviceData::upload(&gpu, &ds, &MEAN, &STD).unwrap();
    let aug = Augment { crop_padding: 2, flip: false, cutout: 0 };
    let batch = 40;
    let (x, labels) = run_assemble(&data, &vec![0; batch], &aug, 11);
    assert!(labels.iter().all(|&l| l == 3));
    let corner = (0..batch as u32).find(|&b| {
        let c = reference::choice(&aug, 11, b, 5, 7);
        c.crop_x == 0 && c.crop_y == 0
    });
    let b = corner.expect("some position crops at the top-left corner") as usize;
    for c in 0..3 {
        let at = |y: usize, xx: usize| x[((b * 3 + c) * 5 + y) * 7 + xx];
        assert!((at(0, 0) - (0.0 - MEAN[c]) / STD[c]).abs() < 1e-6, "padding is zero before normalisation");
        assert!((at(2, 2) - (1.0 - MEAN[c]) / STD[c]).abs() < 1e-6, "the image starts after two rows and columns");
    }
    let cut = Augment { crop_padding: 0, flip: false, cutout: 2 };
    let (x, _) = run_assemble(&data, &[1], &cut, 3);
    let ch = reference::choice(&cut, 3, 0, 5, 7);
    let zeros = x.iter().filter(|&&v| v == 0.0).count();
    let side = |centre: u32, size: i64| ((centre as i64 + 1).min(size) - (centre as i64 - 1).max(0)) as usize;
    assert_eq!(zeros, 3 * side(ch.cutout_y, 5) * side(ch.cutout_x, 7), "{ch:?}");
}

#[test]
fn out_of_range_indices_give_zeros_and_no_label() {
    let gpu = test_gpu();
    let ds = random_dataset(7, 3, 5, 7, 4);
    let chunked = DeviceData::upload_with_chunk_limit(&gpu, &ds, &MEAN, &STD, 216).unwrap();
    assert_eq!(chunked.chunks(), 4);
    let indices = [6, 7, 0, u32::MAX, 3];
    let aug = Augment { crop_padding: 1, flip: true, cutout: 2 };
    let (x, l) = run_assemble(&chunked, &indices, &aug, 9);
    let (want_x, want_l) = reference::assemble(&ds, &MEAN, &STD, &indices, &aug, 9);
    assert_eq!(l, want_l);
    assert_eq!(l[1], data::device::NO_LABEL);
    assert!(x[105..210].iter().all(|&v| v == 0.0));
    assert_close(&x, &want_x, "out of range");
}

#[test]
fn bad_uploads_and_batches_are_errors() {
    let gpu = test_gpu();
    let ds = random_dataset(4, 3, 5, 7, 5);
    let invalid = |r: cellnas::Result<DeviceData>| match r {
        Err(Error::Invalid(m)) => m,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(_) => panic!("expected an error"),
    };
    assert!(invalid(DeviceData::upload(&gpu, &ds, &MEAN[..1], &STD)).contains("3 channels"));
    assert!(invalid(DeviceData::upload(&gpu, &ds, &MEAN, &[0.2, 0.0, 0.2])).contains("std 0"));
    assert!(invalid(DeviceData::upload_with_chunk_limit(&gpu, &ds, &MEAN, &STD, 100)).contains("108 bytes"));
    let empty = Dataset { images: vec![], labels: vec![], n: 0, ..ds.clone() };
    assert!(invalid(DeviceData::upload(&gpu, &empty, &MEAN, &STD)).contains("empty"));
    let broken = Dataset { labels: vec![0; 3], ..ds.clone() };
    assert!(DeviceData::upload(&gpu, &broken, &MEAN, &STD).is_err());

    let data = DeviceData::upload(&gpu, &ds, &MEAN, &STD).unwrap();
    let idx = upload_u32(&gpu, &[0, 1, 2]).unwrap();
    let labels = gpu.alloc(12);
    let aug = Augment::default();
    let mut step = gpu.step();
    let x = Tensor::empty(&gpu, &[3, 3, 7, 5]);
    let e = data::assemble(&mut step, &data, &idx, 3, &aug, 0, &x, &labels).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "assemble", .. }), "{e}");
    let x = Tensor::empty(&gpu, &[4, 3, 5, 7]);
    let e = data::assemble(&mut step, &data, &idx, 4, &aug, 0, &x, &gpu.alloc(16)).unwrap_err();
    assert!(e.to_string().contains("indices buffer holds 12 bytes"), "{e}");
    assert!(data::assemble(&mut step, &data, &idx, 0, &aug, 0, &Tensor::empty(&gpu, &[0, 3, 5, 7]), &labels).is_err());
    assert_eq!(step.dispatches(), 0);
}

#[test]
fn embedded_batch_on_the_gpu_matches_reference() {
    let gpu = test_gpu();
    let s = data::embedded().unwrap();
    let (mean, std) = s.train.channel_stats();
    let data = DeviceData::upload(&gpu, &s.train, &mean, &std).unwrap();
    let indices: Vec<u32> = (0..64).map(|i| i * 77 + 3).collect();
    let aug = Augment { crop_padding: 4, flip: true, cutout: 8 };
    let (x, l) = run_assemble(&data, &indices, &aug, 42);
    let (want_x, want_l) = reference::assemble(&s.train, &mean, &std, &indices, &aug, 42);
    assert_eq!(l, want_l);
    assert_close(&x, &want_x, "embedded");
}

#[test]
fn idx_dimensions_that_multiply_past_u64_are_refused() {
    // Dimensions whose product passes 2^64 (wrapping it to a small number); the file is 16 bytes.
    let dir = temp_dir("idx-huge");
    write_idx_dir(&dir, 3, 2, 2, 2);
    let p = dir.join("train-images-idx3-ubyte");
    std::fs::write(&p, idx_bytes(0x0803, &[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-images-idx3-ubyte", "multiply past"]);
    std::fs::write(&p, idx_bytes(0x0803, &[0x40_0000, 0x40_0000, 0x40_0000], &[])).unwrap();
    assert_has(&data_error(data::load_idx_dir(&dir)), &["train-images-idx3-ubyte", "multiply past"]);
}

#[test]
fn blank_images_are_refused_naming_the_folder_and_channel() {
    let dir = temp_dir("blank");
    write_idx_dir(&dir, 40, 10, 4, 4);
    let n = 40u32;
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_bytes(0x803, &[n, 4, 4], &vec![0u8; 40 * 16])).unwrap();
    let out = std::env::temp_dir().join(format!("cellnas-data-{}-blank-run", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cellnas"))
        .args(["search", "--data", dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--val", "8", "--batch-size", "8", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_has(&err, &[dir.to_str().unwrap(), "channel 0", "is 0 (of 255)", "blank images"]);
}
