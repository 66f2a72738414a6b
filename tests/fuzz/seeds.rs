//! Seed corpora, built with the library's own writers so they track the formats.

use super::targets::join;
use cellnas::run::{encode_tensors, save_checkpoint, NamedTensor, RunDir};
use cellnas::space::{Genotype, SearchSpace, Spec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;


pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn idx_file(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

pub fn idx_seeds() -> Vec<Vec<u8>> {
    let (n, h, w) = (3u32, 4u32, 5u32);
    let images = idx_file(0x803, &[n, h, w], &(0..n * h * w).map(|i| i as u8).collect::<Vec<_>>());
    let labels = idx_file(0x801, &[n], &[0, 9, 4]);
    let one = idx_file(0x803, &[1, 1, 1], &[200]);
    let one_label = idx_file(0x801, &[1], &[7]);
    vec![
        join(Some(&images), &labels),
        join(Some(&gz(&images)), &gz(&labels)),
        join(Some(&gz(&images)), &labels),
        join(Some(&one), &one_label),
    ]
}

pub fn cifar_seeds() -> Vec<Vec<u8>> {
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| (i * 7 % 251) as u8));
        r
    };
    let two = [record(3), record(9)].concat();
    vec![record(0), two.clone(), gz(&two)]
}

/// The reference genotype of the benchmarks (shared/bench/reference.genotype.txt), DARTS V2
/// from docs/spec.md, the loose forms the reader accepts, and sampled genotypes of several
/// sizes.
pub fn genotypes_text() -> Vec<String> {
    let mut out = vec![
        "Genotype(normal=[('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 3)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('avg_pool_3x3', 2), ('skip_connect', 1), ('dil_conv_5x5', 0), ('max_pool_3x3', 3), ('dil_conv_5x5', 3), ('sep_conv_3x3', 1)], reduce_concat=[2, 3, 4, 5])".to_string(),
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])".to_string(),
        "Genotype(\n  reduce_concat=list(range(2, 4)),\n  normal=[(\"sep_conv_3x3\", 1), (\"skip_connect\", 0,), ('dil_conv_5x5', 2), ('avg_pool_3x3', 0),],\n  normal_concat=range(2, 4),\n  reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1)],\n)\n".to_string(),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for nodes in [1, 2, 5] {
        let space = SearchSpace::new(cellnas::space::Op::SEARCHABLE.to_vec(), nodes).unwrap();
        out.push(space.sample(&mut rng).to_darts());
    }
    out
}

pub fn darts_seeds() -> Vec<Vec<u8>> {
    genotypes_text().into_iter().map(String::into_bytes).collect()
}

pub fn spec_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, text) in genotypes_text().iter().enumerate() {
        let g = Genotype::from_darts(text).unwrap();
        let mut spec = Spec::new(g);
        if i % 2 == 0 {
            spec.name = Some(format!("seed {i} \u{e9}\u{1f600}"));
        }
        out.push(spec.to_json_pretty().into_bytes());
        // A search's best.json, as the search writes it: the spec beside its metrics.
        let best = json!({"spec": serde_json::to_value(&spec).unwrap(), "metrics": {"val_acc": 0.5, "params": 12345}});
        out.push(serde_json::to_vec(&best).unwrap());
    }
    out.push(genotypes_text()[0].clone().into_bytes());
    out
}

pub fn tensors() -> Vec<NamedTensor> {
    vec![
        ("a.weight".into(), vec![2, 3], (0..6).map(|i| i as f32 * 0.5).collect()),
        ("b".into(), vec![], vec![f32::NAN]),
        ("c.empty".into(), vec![0, 4], vec![]),
        ("d".into(), vec![1, 1, 1, 2], vec![-1.0, f32::INFINITY]),
    ]
}

pub fn safetensors_seeds() -> Vec<Vec<u8>> {
    let meta = BTreeMap::from([("cellnas.epoch".to_string(), "3".to_string()), ("k".into(), "{\"x\": [1]}".into())]);
    vec![
        encode_tensors(&tensors(), &meta).unwrap(),
        encode_tensors(&tensors()[..1], &BTreeMap::new()).unwrap(),
        encode_tensors(&[], &BTreeMap::new()).unwrap(),
    ]
}

/// Real checkpoints written by `save_checkpoint`: a committed one, one without state.json, and a
/// newer weights file beside the state of the checkpoint it supersedes (the recovery case).
pub fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("cellnas-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = RunDir::open(&dir);
    save_checkpoint(&run, &tensors(), &json!({"epoch": 1, "lr": 0.025})).unwrap();
    let state1 = std::fs::read(run.state_path()).unwrap();
    let weights1 = std::fs::read(run.checkpoint_path()).unwrap();
    save_checkpoint(&run, &tensors()[..2], &json!({"epoch": 2, "best": [0.5, null]})).unwrap();
    let weights2 = std::fs::read(run.checkpoint_path()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    vec![join(Some(&state1), &weights1), join(None, &weights1), join(Some(&state1), &weights2)]
}


pub fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut m = cellnas::run::Manifest::new(false);
    let mut out = vec![serde_json::to_vec_pretty(&m).unwrap()];
    for (name, bytes) in [("config.json", &b"{}"[..]), ("weights.safetensors", &[0u8; 64][..]), ("best.json", &b"[1, 2]"[..])] {
        m.files.insert(name.into(), cellnas::run::FileEntry::of(bytes));
        out.push(serde_json::to_vec_pretty(&m).unwrap());
    }
    m.adopted = true;
    out.push(serde_json::to_vec(&m).unwrap());
    out
}

