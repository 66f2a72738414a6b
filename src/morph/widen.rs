//! Widening (Net2WiderNet, Chen et al. 2016): every channel of the network is replicated
//! `factor` times, side by side (channel j of the wide network is channel j / factor of the
//! narrow one). Replicating side by side commutes with concatenation, so it holds through the
//! cells' concat and FactorizedReduce's two halves, and every activation of the wide network is
//! the narrow one's with each channel repeated. To keep it so:
//! - a convolution over all input channels takes each narrow weight for every replica of its
//!   output and input channel, divided by `factor` (the replicas of an input sum back to one);
//! - depthwise filters (gates of gated cells too), BN parameters and BN statistics are replicated;
//! - the stem reads the image (not widened): its filters are replicated along outputs only;
//! - the classifier's weights are replicated along its inputs and divided, its bias kept.
//!
//! Elementwise ops, pools and ReLU act per channel, so the logits are unchanged in evaluation
//! and in training mode (replicated channels have the same batch statistics). Momentum is not
//! carried: the wide network's optimizer starts afresh. No symmetry-breaking noise is added.

use crate::error::{Error, Result};
use crate::nn::darts::NetConfig;
use crate::run::NamedTensor;

/// The network `net` with `factor` times the channels.
pub fn widened(net: &NetConfig, factor: usize) -> Result<NetConfig> {
    let channels = net.channels.checked_mul(factor).ok_or_else(|| Error::Invalid(format!("{} channels x {factor} overflows", net.channels)))?;
    let wide = NetConfig { channels, ..net.clone() };
    wide.validate()?;
    Ok(wide)
}

/// The tensors of `net` widened `factor` times (see the module docs); momentum is dropped.
pub fn widen(net: &NetConfig, factor: usize, tensors: Vec<NamedTensor>) -> Result<(NetConfig, Vec<NamedTensor>)> {
    if factor == 0 {
        return Err(Error::Invalid("a widening factor must be at least 1".into()));
    }
    let wide = widened(net, factor)?;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")) {
        let bad = || Error::Shape { op: "widen", message: format!("'{name}' has shape {shape:?}, which the widening rules do not cover") };
        let (shape, data) = match shape.len() {
            1 if name == "classifier.bias" => (shape, data),
            1 => (vec![shape[0] * factor], repeat(&data, 1, factor, 1.0)),
            2 if name == "classifier.weight" => (vec![shape[0], shape[1] * factor], repeat(&data, 1, factor, 1.0 / factor as f32)),
            4 if name == "stem.conv" => (vec![shape[0] * factor, shape[1], shape[2], shape[3]], repeat(&data, shape[1] * shape[2] * shape[3], factor, 1.0)),
            4 if (name.ends_with(".dw") || name.ends_with(".gate")) && shape[1] == 1 => (vec![shape[0] * factor, 1, shape[2], shape[3]], repeat(&data, shape[2] * shape[3], factor, 1.0)),
            4 => {
                let taps = shape[2] * shape[3];
                // Inputs first (each input channel's taps repeated), then whole output rows.
                let rows = repeat(&data, taps, factor, 1.0 / factor as f32);
                let row = shape[1] * factor * taps;
                (vec![shape[0] * factor, shape[1] * factor, shape[2], shape[3]], repeat(&rows, row, factor, 1.0))
            }
            _ => return Err(bad()),
        };
        out.push((name, shape, data));
    }
    Ok((wide, out))
}

/// Each run of `len` consecutive values repeated `times` times in place, scaled by `scale`.
fn repeat(data: &[f32], len: usize, times: usize, scale: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() * times);
    for run in data.chunks(len.max(1)) {
        for _ in 0..times {
            out.extend(run.iter().map(|v| v * scale));
        }
    }
    out
}
