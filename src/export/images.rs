//! What `cellnas predict` reads: a dataset folder's test split (IDX or CIFAR-10), an IDX images
//! file (with its labels when the labels file sits beside it), or PNG / JPEG files (alone or a
//! folder of them, by name), all as bytes in the network's [C, H, W].
//!
//! PNG and JPEG files are read as grayscale or RGB, whichever the network expects (alpha
//! dropped; RGB to gray by the `image` crate's luma weights). Sizes are never changed unless
//! asked (`resize`): a network trained on 28x28 images given 32x32 ones says so instead.

use super::model::Input;
use crate::data::{load_dir, load_idx_images, Dataset};
use crate::error::{Error, Result};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// Images to predict, their names (file, or source and index) and labels where the source has them.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// [n, C, H, W] bytes; labels 0 where unknown.
    pub data: Dataset,
    pub names: Vec<String>,
    pub labels: Vec<Option<usize>>,
    /// PNG / JPEG files whose colour type was converted (e.g. RGB to grayscale).
    pub converted: usize,
    pub resized: usize,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image_file(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Every source in `paths`, in order, as the network's input (`input`, `classes` classes).
pub fn read_inputs(paths: &[PathBuf], input: &Input, classes: usize, resize: bool) -> Result<Inputs> {
    let (c, h, w) = (input.channels, input.height, input.width);
    let mut out = Inputs { data: Dataset { images: vec![], labels: vec![], n: 0, c, h, w, classes }, names: vec![], labels: vec![], converted: 0, resized: 0 };
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_image_file(p)).collect();
            if files.is_empty() {
                let splits = load_dir(path)?;
                let name = format!("{}:test", path.display());
                add_dataset(&mut out, &splits.test, path, &name, true, input, resize)?;
            } else {
                files.sort();
                for f in files {
                    add_image(&mut out, &f, input, resize)?;
                }
            }
        } else if is_image_file(path) {
            add_image(&mut out, path, input, resize)?;
        } else if path.is_file() {
            let (ds, labelled) = load_idx_images(path)?;
            add_dataset(&mut out, &ds, path, &path.display().to_string(), labelled, input, resize)?;
        } else {
            return Err(Error::data(path, "not found (expected a dataset folder, an IDX images file, a PNG or JPEG file, or a folder of them)"));
        }
    }
    if out.data.n == 0 {
        return Err(Error::Invalid("no images to predict".into()));
    }
    Ok(out)
}

/// The test split of the dataset a run trained on.
pub fn test_split(data: &crate::pipeline::data::DataConfig, input: &Input, classes: usize) -> Result<Inputs> {
    let splits = crate::pipeline::data::read_splits(data)?;
    let source = data.path.as_ref().map_or_else(|| splits.name.clone(), |p| p.display().to_string());
    let mut out = Inputs { data: Dataset { images: vec![], labels: vec![], n: 0, c: input.channels, h: input.height, w: input.width, classes }, names: vec![], labels: vec![], converted: 0, resized: 0 };
    add_dataset(&mut out, &splits.test, Path::new(&source), &format!("{source}:test"), true, input, false)?;
    Ok(out)
}

/// A dataset's images, checked against the input: same channels, same size unless `resize`.
fn add_dataset(out: &mut Inputs, ds: &Dataset, path: &Path, name: &str, labelled: bool, input: &Input, resize: bool) -> Result<()> {
    if ds.c != input.channels {
        return Err(Error::data(path, format!("images have {} channel(s), the network expects {} ({})", ds.c, input.channels, channels_word(input.channels))));
    }
    let same = (ds.h, ds.w) == (input.height, input.width);
    if !same && !resize {
        return Err(Error::data(path, format!("images are {}x{} pixels, the network expects {}x{} (width x height; --resize scales them)", ds.w, ds.h, input.width, input.height)));
    }
    if labelled {
        if let Some(&l) = ds.labels.iter().find(|&&l| l as usize >= out.data.classes) {
            return Err(Error::data(path, format!("label {l} is not one of the network's {} classes", out.data.classes)));
        }
    }
    for i in 0..ds.n {
        let img = ds.image(i);
        if same {
            out.data.images.extend_from_slice(img);
        } else {
            out.data.images.extend(resize_planar(img, ds.c, ds.h, ds.w, input.height, input.width));
            out.resized += 1;
        }
        out.names.push(format!("{name}[{i}]"));
        out.labels.push(labelled.then_some(ds.labels[i] as usize));
        out.data.labels.push(if labelled { ds.labels[i] } else { 0 });
        out.data.n += 1;
    }
    Ok(())
}

fn channels_word(c: usize) -> &'static str {
    match c {
        1 => "grayscale",
        3 => "RGB",
        _ => "channels",
    }
}

/// One PNG or JPEG file as the network's channels, checked (or, with `resize`, scaled) to its size.
fn add_image(out: &mut Inputs, path: &Path, input: &Input, resize: bool) -> Result<()> {
    let decoded = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode the image: {e}")))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let has = decoded.color().channel_count() as usize - decoded.color().has_alpha() as usize;
    if has != input.channels {
        out.converted += 1;
    }
    if (h, w) != (input.height, input.width) && !resize {
        return Err(Error::data(path, format!("image is {w}x{h} pixels, the network expects {}x{} (width x height; --resize scales it)", input.width, input.height)));
    }
    if (h, w) != (input.height, input.width) {
        out.resized += 1;
    }
    let (tw, th) = (input.width as u32, input.height as u32);
    let planar: Vec<u8> = match input.channels {
        1 => {
            let g = decoded.to_luma8();
            let g = if (h, w) == (input.height, input.width) { g } else { image::imageops::resize(&g, tw, th, FilterType::Triangle) };
            g.into_raw()
        }
        3 => {
            let rgb = decoded.to_rgb8();
            let rgb = if (h, w) == (input.height, input.width) { rgb } else { image::imageops::resize(&rgb, tw, th, FilterType::Triangle) };
            let raw = rgb.into_raw();
            (0..3).flat_map(|k| raw.iter().skip(k).step_by(3).copied().collect::<Vec<_>>()).collect()
        }
        c => return Err(Error::data(path, format!("the network expects {c}-channel images; PNG and JPEG files can be read only for 1 (grayscale) or 3 (RGB) channels"))),
    };
    out.data.images.extend(planar);
    out.data.labels.push(0);
    out.data.n += 1;
    out.names.push(path.display().to_string());
    out.labels.push(None);
    Ok(())
}

/// A planar image of `c` channels scaled from h x w to th x tw, channel by channel.
fn resize_planar(img: &[u8], c: usize, h: usize, w: usize, th: usize, tw: usize) -> Vec<u8> {
    let plane = h * w;
    let mut out = Vec::with_capacity(c * th * tw);
    for k in 0..c {
        let g = image::GrayImage::from_raw(w as u32, h as u32, img[k * plane..(k + 1) * plane].to_vec()).expect("a plane of h * w bytes");
        out.extend(image::imageops::resize(&g, tw as u32, th as u32, FilterType::Triangle).into_raw());
    }
    out
}
