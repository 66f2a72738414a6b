//! Named f32 tensors on disk in the safetensors format: a standard, zero-copy, framework-neutral
//! weights format, so a supernet cellnas trained can be opened in PyTorch or NumPy
//! (`safetensors.numpy.load_file`) without cellnas. Values are stored little-endian, as the
//! format requires, whatever the host.

use super::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{numel, Tensor};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// A tensor with its name and shape, as it is saved and loaded.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Write `tensors` and string `metadata` (safetensors' `__metadata__`) to `path` atomically.
/// Names must be unique; each tensor's length must match its shape.
pub fn save_tensors(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = encode_tensors(tensors, metadata)
        .map_err(|message| Error::Checkpoint { path: path.to_path_buf(), message })?;
    write_atomic(path, &bytes)
}

/// Read a safetensors file of f32 tensors, returned sorted by name (the order they are stored
/// in), with its metadata (empty when the file has none). A missing, truncated or corrupt file,
/// or a tensor of another dtype, is an error naming the file (and the tensor).
pub fn load_tensors(path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_tensors(&bytes).map_err(|message| Error::Checkpoint { path: path.to_path_buf(), message })
}

/// Bring `named` tensors back to the host in ONE step: a read per tensor, a single submit and
/// wait, instead of one round trip per tensor (a supernet has hundreds of them).
pub fn download_named(gpu: &Arc<Gpu>, named: &[(String, &Tensor)]) -> Result<Vec<NamedTensor>> {
    let mut step = gpu.step();
    let handles: Vec<_> = named.iter().map(|(_, t)| step.read(&t.buf, 0, 4 * t.numel() as u64)).collect();
    let out = step.submit()?;
    Ok(named
        .iter()
        .zip(handles)
        .map(|((name, t), h)| (name.clone(), t.shape.clone(), out.f32s(h)))
        .collect())
}

/// FNV-1a, 64 bit: a cheap content hash that ties a checkpoint's state to its weights file. It
/// detects a mismatched file, not tampering.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One f32 tensor as safetensors sees it.
struct F32View<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(self.data))
        } else {
            Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }
    fn data_len(&self) -> usize {
        4 * self.data.len()
    }
}

/// The file's bytes; the error is a message for the caller to attach the path to.
pub fn encode_tensors(
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    for (name, shape, data) in tensors {
        // safetensors keeps tensors in a map keyed by name, beside the `__metadata__` key: a
        // duplicate would be silently dropped on load.
        if name == "__metadata__" || !seen.insert(name.as_str()) {
            return Err(format!("tensor name '{name}' is reserved or used twice"));
        }
        if data.len() != numel(shape) {
            return Err(format!("tensor '{name}' has {} values for shape {shape:?}", data.len()));
        }
    }
    let views = tensors.iter().map(|(name, shape, data)| (name.as_str(), F32View { shape, data }));
    // No `__metadata__` at all when there is none, as other writers do.
    let info = (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>());
    safetensors::serialize(views, info).map_err(|e| format!("cannot encode safetensors: {e}"))
}

/// Parse a whole file's bytes; the error is a message for the caller to attach the path to.
pub fn decode_tensors(bytes: &[u8]) -> std::result::Result<(Vec<NamedTensor>, BTreeMap<String, String>), String> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a readable safetensors file (truncated or corrupt: {e})"))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| format!("not a readable safetensors file: {e}"))?;
    let mut tensors = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor '{name}' is {:?}; cellnas reads only F32 tensors", view.dtype()));
        }
        // The data may sit at any byte offset, so read it bytewise rather than cast it.
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.push((name.to_string(), view.shape().to_vec(), data));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok((tensors, metadata))
}
