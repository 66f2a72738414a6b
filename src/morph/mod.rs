//! Network morphism: networks whose shape changes while the function they compute stays the
//! same, so trained weights carry over (Net2Net, Chen et al. 2016; NASH, Elsken et al. 2017).
//!
//! Built so far: from supernet to stand-alone. A candidate's network is taken out of a search
//! run's supernet with the weights it was scored with and its recalibrated BN statistics.
//! The network keeps the supernet's conventions (BN after pools) with affine BN whose scale and
//! shift start at 1 and 0 (the identity of the supernet's non-affine BN), so before training it
//! computes exactly what the candidate computed when the search scored it. Kernel growth
//! (kernel.rs): a 3x3 separable or dilated convolution becomes the 5x5 one. Widening
//! (widen.rs): every channel replicated, Net2WiderNet. Deepening (deepen.rs): gated residual
//! cells that start as the identity.

mod choice;
mod deepen;
mod kernel;
mod widen;
pub use choice::{available, draw, Limits, Morph};
pub use deepen::{deepen, placement};
pub use kernel::grow_kernel;
pub use widen::{widen, widened};

use crate::data::DeviceData;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::darts::NetConfig;
use crate::pipeline::search::SearchConfig;
use crate::run::{download_named, load_checkpoint, RunDir};
use crate::space::Genotype;
use crate::train::Model;
use std::sync::Arc;

/// The network a candidate of `search` grows into: the search's sizes, supernet conventions,
/// affine BN.
pub fn grown_net(search: &SearchConfig) -> NetConfig {
    NetConfig { supernet: true, supernet_affine: true, ..search.net.clone() }
}

/// How a network grows out of its supernet: widened `factor` times after gated cells are
/// added after the cells `deepen` lists (in order).
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    pub factor: usize,
    pub deepen: Vec<usize>,
}

/// The network a `train --init-from` with these sizes trains: `net` as the flags built it
/// (the supernet's sizes unless --channels / --layers changed them), with extra cells turned
/// into gated cells placed by [`placement`]; or why it cannot be grown from the supernet.
pub fn target_net(search: &SearchConfig, net: &NetConfig) -> std::result::Result<NetConfig, String> {
    let base = grown_net(search);
    let mut out = net.clone();
    if net.gated.is_empty() && net.layers != base.layers {
        if net.layers < base.layers {
            return Err(format!("--layers {}: a network grown from the supernet has at least its {} cells", net.layers, base.layers));
        }
        out.gated = placement(&NetConfig { channels: base.channels, ..base.clone() }, net.layers - base.layers);
        out.layers = base.layers;
    }
    growth(search, &out)?;
    Ok(out)
}

/// How `net` grows from the supernet of `search`, or why it cannot (another node count or
/// image, fewer channels, or not a multiple of them).
pub fn growth(search: &SearchConfig, net: &NetConfig) -> std::result::Result<Growth, String> {
    let base = grown_net(search);
    let (c, s) = (net.channels, base.channels);
    if (NetConfig { channels: s, gated: vec![], ..net.clone() }) != base {
        return Err(format!(
            "the network to train ({c} channels, {} cells, {} nodes) is not the supernet's ({s} channels, {} cells, {} nodes) widened or deepened",
            net.cells(),
            net.nodes,
            base.layers,
            base.nodes
        ));
    }
    if c < s || c % s != 0 {
        return Err(format!("--channels {c}: a network grown from the supernet has a multiple of its {s} channels ({s}, {}, {}, ...)", 2 * s, 3 * s));
    }
    Ok(Growth { factor: c / s, deepen: net.gated.clone() })
}

/// [`from_supernet`], then deepened and widened as `growth` says.
pub fn from_supernet_grown(gpu: &Arc<Gpu>, search: &SearchConfig, run: &RunDir, genotype: &Genotype, train: &DeviceData, growth: &Growth) -> Result<Model> {
    let model = from_supernet(gpu, search, run, genotype, train)?;
    if growth.factor == 1 && growth.deepen.is_empty() {
        return Ok(model);
    }
    let [_, h, w] = train.image_shape();
    let (mut net, mut tensors) = (model.net.clone(), model.download()?);
    for &after in &growth.deepen {
        (net, tensors) = deepen(&net, genotype, after, [h, w], search.train.seed, tensors)?;
    }
    if growth.factor > 1 {
        (net, tensors) = widen(&net, growth.factor, tensors)?;
    }
    let mut grown = Model::new(gpu, net, search.train.seed)?;
    grown.restore(&tensors)?;
    Ok(grown)
}

/// Candidate `genotype`'s network out of the supernet of the search run `run` (config
/// `search`; `train` is its training split, `pipeline::data::load` of its data and seed): a model of [`grown_net`] holding the path's weights and the BN statistics the
/// search's recalibration gives it (same batches, same seed). Parameters the supernet never
/// trained are initialised as the search initialised them (by name and seed), and affine BN
/// starts as the identity, so the model's eval-mode outputs are the candidate's.
pub fn from_supernet(gpu: &Arc<Gpu>, search: &SearchConfig, run: &RunDir, genotype: &Genotype, train: &DeviceData) -> Result<Model> {
    search.darts_space()?.contains(genotype).map_err(|e| Error::Config {
        path: run.dir().to_path_buf(),
        message: format!("the spec is not a sub-architecture of this search run's space: {e}"),
    })?;
    let Some((tensors, _)) = load_checkpoint(run)? else {
        return Err(Error::Config { path: run.dir().to_path_buf(), message: "has no supernet checkpoint yet: nothing to grow from".into() });
    };
    let weights: Vec<_> = tensors.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
    let seed = search.train.seed;
    let mut supernet = Model::new(gpu, search.net.clone(), seed)?;
    supernet.restore(&weights)?;
    let bn = crate::supernet::recalibrate(&mut supernet, &crate::space::Arch::Darts(genotype.clone()), train, &search.eval, seed)?;

    let net = grown_net(search);
    let [_, h, w] = train.image_shape();
    let expected = crate::nn::darts::expected_tensors(&net, genotype, h, w)?;
    let mut path: Vec<_> = weights.into_iter().filter(|(n, _, _)| !n.starts_with("bn:") && expected.contains_key(n)).collect();
    path.extend(download_named(gpu, &bn.named_tensors())?);
    let mut model = Model::new(gpu, net, seed)?;
    model.restore(&path)?;
    Ok(model)
}
