//! The fuzz targets: one function per parser that takes arbitrary bytes, calls the parser, and
//! panics only when an invariant breaks (a parser's own panic, or an accepted input that does
//! not survive a write/read round trip). Shared by the in-suite run (tests/fuzz.rs) and the
//! cargo-fuzz targets (fuzz/fuzz_targets/), so both exercise exactly the same code; it may use
//! only `cellnas` and std, since the fuzz crate has no other dependencies.
//!
//! Adding a parser is one function here and one row in `TARGETS`.

#![allow(dead_code)]

use cellnas::data::{parse_cifar10_batch, parse_idx_pair};
use cellnas::run::{decode_checkpoint, decode_tensors, encode_tensors, Manifest, RunDir};
use cellnas::space::{Genotype, Spec};
use std::path::Path;

/// A parser under fuzzing: its name (also the cargo-fuzz target's) and the function that runs
/// it on one input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target { name: "idx", run: idx },
    Target { name: "cifar", run: cifar },
    Target { name: "darts", run: darts },
    Target { name: "spec", run: spec },
    Target { name: "safetensors", run: safetensors },
    Target { name: "checkpoint", run: checkpoint },
    Target { name: "manifest", run: manifest },
];

pub fn target(name: &str) -> &'static Target {
    TARGETS.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no fuzz target '{name}'"))
}

/// Targets that read two files take one input split in two: a little-endian u32 length of the
/// first part, then the first part, then the second. A length past the end is clamped (so a
/// mutated prefix only moves the split), and 0xffff_ffff means "the first file is absent".
pub fn split(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return (None, data);
    };
    let len = u32::from_le_bytes(*len);
    if len == u32::MAX {
        return (None, rest);
    }
    let at = (len as usize).min(rest.len());
    (Some(&rest[..at]), &rest[at..])
}

/// The inverse of [`split`], for building seeds.
pub fn join(first: Option<&[u8]>, second: &[u8]) -> Vec<u8> {
    let mut out = match first {
        Some(f) => (f.len() as u32).to_le_bytes().to_vec(),
        None => u32::MAX.to_le_bytes().to_vec(),
    };
    out.extend_from_slice(first.unwrap_or_default());
    out.extend_from_slice(second);
    out
}

/// An IDX image file and label file (each raw or gzip).
pub fn idx(data: &[u8]) {
    let (images, labels) = split(data);
    if let Ok(ds) = parse_idx_pair(("images", images.unwrap_or_default()), ("labels", labels)) {
        assert_eq!(ds.images.len(), ds.n * ds.image_len(), "accepted IDX data of the wrong size");
        assert_eq!(ds.labels.len(), ds.n);
    }
}

/// One CIFAR-10 binary batch file (raw or gzip).
pub fn cifar(data: &[u8]) {
    if let Ok(ds) = parse_cifar10_batch("data_batch_1.bin", data) {
        assert_eq!(ds.images.len(), ds.n * 3 * 32 * 32, "accepted CIFAR data of the wrong size");
        assert!(ds.labels.iter().all(|&l| l < 10));
    }
}

/// DARTS genotype text; an accepted genotype must come back from its own text and JSON.
pub fn darts(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = Genotype::from_darts(text) {
        let again = Genotype::from_darts(&g.to_darts()).expect("to_darts of an accepted genotype must parse");
        assert_eq!(again, g, "DARTS text round trip changed the genotype");
        let spec = Spec::new(g);
        assert_eq!(Spec::from_json(&spec.to_json_pretty()).expect("its JSON must parse"), spec);
    }
}

/// A spec file as the CLI reads it (JSON spec, a search's best.json, or DARTS text); an
/// accepted spec must come back from its own JSON.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(s) = Spec::from_text(text) {
        let again = Spec::from_json(&s.to_json_pretty()).expect("to_json_pretty of an accepted spec must parse");
        assert_eq!(again, s, "spec JSON round trip changed the spec");
    }
}

/// A safetensors weights file; accepted tensors must encode and decode to the same bits.
pub fn safetensors(data: &[u8]) {
    if let Ok((tensors, meta)) = decode_tensors(data) {
        let bytes = encode_tensors(&tensors, &meta).expect("decoded tensors must encode");
        let (again, meta2) = decode_tensors(&bytes).expect("encoded tensors must decode");
        assert_eq!(meta2, meta);
        assert_eq!(again.len(), tensors.len());
        for ((n1, s1, d1), (n2, s2, d2)) in tensors.iter().zip(&again) {
            assert_eq!((n1, s1), (n2, s2));
            // Bits, not values: NaN payloads must survive too.
            assert!(d1.iter().map(|x| x.to_bits()).eq(d2.iter().map(|x| x.to_bits())), "tensor '{n1}' changed");
        }
    }
}

/// A run's manifest.json; an accepted one must write and read back the same.
pub fn manifest(data: &[u8]) {
    let path = Path::new("fuzz-run/manifest.json");
    if let Ok(m) = Manifest::parse(path, data) {
        let again = Manifest::parse(path, &m.to_json()).expect("a written manifest parses");
        assert_eq!((&again.run_id, &again.files, again.adopted), (&m.run_id, &m.files, m.adopted));
    }
}

/// A checkpoint: `state.json` (possibly absent) and the weights file.
pub fn checkpoint(data: &[u8]) {
    let (state, weights) = split(data);
    let run = RunDir::open(Path::new("fuzz-run"));
    let _ = decode_checkpoint(&run, state, weights);
}
