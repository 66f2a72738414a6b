//! Deterministic fuzzing of every file parser, as part of `cargo test`: each target's seed
//! corpus (valid files built here with the library's own writers) is mutated by a fixed-seed,
//! std-only mutator, and every input must give Ok or a clean Err: no panic, no huge
//! allocation, no hang. Failures print the (shortened) input in hex and save it whole under
//! the target's temp folder.
//!
//! Knobs: CELLNAS_FUZZ_ITERS (mutated inputs per target, default 20000: about a second in
//! release), CELLNAS_FUZZ_SEED, CELLNAS_FUZZ_CORPUS=DIR (write the seeds to DIR/<target>/ to
//! start cargo-fuzz from them).
//! The longer, coverage-guided run is cargo-fuzz on the same targets (fuzz/README.md).

#[path = "fuzz/targets.rs"]
mod targets;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/seeds.rs"]
mod seeds;

use cellnas::run::RunDir;
use cellnas::space::{Genotype, Spec};
use mutate::{mutate, Rng};
use seeds::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use targets::{join, target};

// ---------------------------------------------------------------------------------------------
// Allocation guard. A parser that trusts a size from a header allocates it before noticing the
// file is short; on a large claim that aborts the whole test binary with no hint of the input.
// No input here is over a few hundred KB, so any single allocation above the limit is such a
// bug: report the input being parsed, then abort (an allocator must not unwind).

const ALLOC_LIMIT: usize = 256 << 20;

struct Guard;

static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);

fn check_size(size: usize) {
    if size > ALLOC_LIMIT {
        let (ptr, len) = (INPUT_PTR.load(Ordering::SeqCst), INPUT_LEN.load(Ordering::SeqCst));
        // Formatted on the stack: allocating here would recurse into the guard.
        let mut buf = [0u8; 2400];
        let head = b"\nfuzz: a parser asked for a huge allocation; input (hex, first 1024 bytes):\n";
        buf[..head.len()].copy_from_slice(head);
        let mut at = head.len();
        if !ptr.is_null() {
            // SAFETY: ptr/len describe the input slice borrowed for the duration of the call.
            let input = unsafe { std::slice::from_raw_parts(ptr, len) };
            for &b in input.iter().take(1024) {
                buf[at] = b"0123456789abcdef"[(b >> 4) as usize];
                buf[at + 1] = b"0123456789abcdef"[(b & 15) as usize];
                at += 2;
            }
        }
        buf[at] = b'\n';
        let _ = std::io::stderr().write_all(&buf[..at + 1]);
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GUARD: Guard = Guard;

// ---------------------------------------------------------------------------------------------
// Running one input.

/// Generous: the slowest target takes well under a millisecond per input; a parser that loops
/// or goes quadratic on a small input shows up as seconds.
const SLOW: Duration = Duration::from_secs(3);

/// Runs target `name` on `input`; Err describes a panic or a hang, with the input.
fn run_one(name: &str, input: &[u8]) -> Result<(), String> {
    run_with(name, target(name).run, input)
}

fn run_with(name: &str, run: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    INPUT_PTR.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
    INPUT_LEN.store(input.len(), Ordering::SeqCst);
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| run(input)));
    let took = start.elapsed();
    INPUT_PTR.store(std::ptr::null_mut(), Ordering::SeqCst);
    INPUT_LEN.store(0, Ordering::SeqCst);
    let problem = match outcome {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            format!("panicked: {msg}")
        }
        Ok(()) if took > SLOW => format!("took {took:?} (a hang or quadratic blowup)"),
        Ok(()) => return Ok(()),
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{name}-{:016x}.bin", fnv(input)));
    let _ = std::fs::write(&file, input);
    Err(format!("target '{name}' {problem}\ninput ({} bytes, saved to {}):\n{}", input.len(), file.display(), hex_dump(input)))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Hex and ASCII, 32 bytes a line, the first 512 bytes.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(32).take(16).enumerate() {
        let hex: String = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        out.push_str(&format!("{:06x}  {hex:<64}  {text}\n", i * 32));
    }
    if bytes.len() > 512 {
        out.push_str(&format!("... {} more bytes\n", bytes.len() - 512));
    }
    out
}

/// Runs every seed as is (each must be accepted, or the corpus tests nothing), then `iters`
/// mutated inputs: each mutates a seed or, a third of the time, the previous input, so edits
/// accumulate.
fn fuzz(name: &str, seeds: &[Vec<u8>], dict: &[&[u8]], must_accept: fn(&[u8]) -> bool) {
    if let Some(dir) = std::env::var_os("CELLNAS_FUZZ_CORPUS") {
        let dir = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
    for (i, s) in seeds.iter().enumerate() {
        assert!(must_accept(s), "{name} seed {i} is not accepted:\n{}", hex_dump(s));
        run_one(name, s).unwrap_or_else(|e| panic!("{e}"));
    }
    let iters: usize = std::env::var("CELLNAS_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20000);
    let seed: u64 = std::env::var("CELLNAS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng(seed ^ fnv(name.as_bytes()));
    let mut input = seeds[0].clone();
    for i in 0..iters {
        if rng.below(3) != 0 {
            input = rng.pick(seeds).clone();
        }
        mutate(&mut rng, &mut input, seeds, dict);
        // Keep chained inputs small so a run stays fast; real formats are tested at size in
        // the loaders' own tests.
        input.truncate(256 << 10);
        if let Err(e) = run_one(name, &input) {
            panic!("iteration {i} (CELLNAS_FUZZ_SEED={seed}): {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runs. Each seed must be accepted by the real parser: checked by calling it directly.

fn accepts_idx(b: &[u8]) -> bool {
    let (i, l) = targets::split(b);
    cellnas::data::parse_idx_pair(("i", i.unwrap_or_default()), ("l", l)).is_ok()
}

fn accepts_cifar(b: &[u8]) -> bool {
    cellnas::data::parse_cifar10_batch("b", b).is_ok()
}

fn accepts_darts(b: &[u8]) -> bool {
    Genotype::from_darts(std::str::from_utf8(b).unwrap()).is_ok()
}

fn accepts_spec(b: &[u8]) -> bool {
    Spec::from_text(std::str::from_utf8(b).unwrap()).is_ok()
}

fn accepts_safetensors(b: &[u8]) -> bool {
    cellnas::run::decode_tensors(b).is_ok()
}

fn accepts_checkpoint(b: &[u8]) -> bool {
    let (s, w) = targets::split(b);
    cellnas::run::decode_checkpoint(&RunDir::open(std::path::Path::new("r")), s, w).is_ok()
}

const SAFETENSORS_DICT: &[&[u8]] = &[
    b"{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
    b"\"dtype\":",
    b"\"F16\"",
    b"\"BF16\"",
    b"\"F64\"",
    b"\"U8\"",
    b"\"BOOL\"",
    b"\"shape\":[",
    b"\"data_offsets\":[",
    b"\"__metadata__\":{",
    b"18446744073709551615",
    b"4294967296",
];

#[test]
fn fuzz_idx() {
    let dict: &[&[u8]] = &[&[0, 0, 8, 3], &[0, 0, 8, 1], &[0x1f, 0x8b, 8, 0], &[0xff; 4], &[0, 0, 0, 0]];
    fuzz("idx", &idx_seeds(), dict, accepts_idx);
}

#[test]
fn fuzz_cifar() {
    fuzz("cifar", &cifar_seeds(), &[&[0x1f, 0x8b, 8, 0], &[10], &[255]], accepts_cifar);
}

#[test]
fn fuzz_darts() {
    let dict: &[&[u8]] = &[
        b"Genotype(",
        b"normal=",
        b"reduce=",
        b"normal_concat=",
        b"reduce_concat=",
        b"('sep_conv_3x3', 0), ",
        b"(\"none\", 1)",
        b"range(",
        b"list(",
        b"[2, 3, 4, 5]",
        b", ",
        b"\n",
        b"'",
        "\u{e9}\u{1f600}\u{2028}".as_bytes(),
        b"\xff\xfe",
    ];
    fuzz("darts", &darts_seeds(), dict, accepts_darts);
}

#[test]
fn fuzz_spec() {
    let dict: &[&[u8]] = &[
        b"{\"version\":1,",
        b"\"genotype\":",
        b"\"spec\":",
        b"\"nodes\":[",
        b"\"concat\":[",
        b"{\"op\":\"skip_connect\",\"input\":0}",
        b"\"name\":null,",
        b"null",
        b"\"\\ud800\"",
        b"\"\\u0000\"",
        b"[],",
        b"{}",
    ];
    fuzz("spec", &spec_seeds(), dict, accepts_spec);
}

#[test]
fn fuzz_safetensors() {
    fuzz("safetensors", &safetensors_seeds(), SAFETENSORS_DICT, accepts_safetensors);
}

#[test]
fn fuzz_checkpoint() {
    let mut dict = SAFETENSORS_DICT.to_vec();
    dict.extend_from_slice(&[
        b"\"format\":\"cellnas-checkpoint-1\",".as_slice(),
        b"\"weights_bytes\":",
        b"\"weights_fnv1a64\":\"",
        b"\"state\":{\"epoch\":1}",
        b"cellnas.supersedes",
        b"cellnas.state",
        &[0xff, 0xff, 0xff, 0xff],
    ]);
    fuzz("checkpoint", &checkpoint_seeds(), &dict, accepts_checkpoint);
}

fn accepts_manifest(b: &[u8]) -> bool {
    cellnas::run::Manifest::parse(std::path::Path::new("m"), b).is_ok()
}

#[test]
fn fuzz_manifest() {
    let dict: &[&[u8]] = &[b"\"run_id\":", b"\"files\":{", b"\"bytes\":18446744073709551615", b"\"fnv1a64\":\"", b"cellnas-run-1", b"\"adopted\":true"];
    fuzz("manifest", &manifest_seeds(), dict, accepts_manifest);
}

/// The harness itself: a panicking parser is reported with its input, not swallowed.
#[test]
fn a_panic_is_reported_with_the_input() {
    let err = run_with("selftest", |b| assert!(b.len() < 3, "too long"), b"abcd").unwrap_err();
    assert!(err.contains("'selftest' panicked: too long") && err.contains("61626364"), "{err}");
    run_with("selftest", |b| assert!(b.len() < 3), b"ab").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs that once crashed a parser (found by the fuzzers), run through the same
// targets, plus the clean error each must now give.

/// (target, input). Each line says what the input used to do.
const REGRESSIONS: &[(&str, &[u8])] = &[];

#[test]
fn regressions_do_not_crash() {
    for (i, (name, input)) in REGRESSIONS.iter().enumerate() {
        run_one(name, input).unwrap_or_else(|e| panic!("regression {i}: {e}"));
    }
}

/// Found by review, not by the fuzzers (their inputs are too small to inflate far): a gzip IDX
/// file of a few hundred KB whose header says 1x1x1 but which inflates to 300 MB used to be
/// inflated whole before the size check, tripping the allocation guard (and, scaled up, the
/// machine's memory). Inflation now stops one byte past the size the header gives.
#[test]
fn gzip_bomb_idx_is_rejected_without_inflating_it() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&idx_file(0x803, &[1, 1, 1], &[0])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    let labels = idx_file(0x801, &[1], &[0]);
    run_one("idx", &join(Some(&bomb), &labels)).unwrap();
    let err = cellnas::data::parse_idx_pair(("bomb-images.gz", &bomb), ("labels", &labels)).unwrap_err().to_string();
    assert!(err.contains("bomb-images.gz") && err.contains("inflates past the 17 bytes its header gives"), "{err}");
}

/// The same for a CIFAR-10 batch, which has no header to bound it: inflating stops past the
/// size of the whole training set in one file (50000 records).
#[test]
fn gzip_bomb_cifar_is_rejected_without_inflating_it() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 3073 * 1024];
    for _ in 0..100 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    run_one("cifar", &bomb).unwrap();
    let err = cellnas::data::parse_cifar10_batch("data_batch_1.bin.gz", &bomb).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin.gz: gzip data inflates past 153650000 bytes, the most this file may hold (50000 records"), "{err}");
}
