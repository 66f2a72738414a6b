//! Which well-known dataset a folder holds, so augmentation defaults can fit the data:
//! horizontal flips keep the class of a shirt or a truck but not of a handwritten "2" or a
//! kana, so flips default on only for sets known to be flip-invariant.
//!
//! Recognition, in order: the official files' training labels (their first ten, with the
//! official split sizes, survive re-compression, unlike a checksum of the .gz), then the
//! folder's and files' names. Anything else is unrecognised and gets no flips.

use super::Splits;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The dataset's usual name, e.g. "Fashion-MNIST".
    pub name: &'static str,
    /// Whether horizontal flips preserve its classes.
    pub flip: bool,
    /// How it was recognised, for the printed note.
    pub how: &'static str,
}

/// (name, flip, first ten training labels of the official files, training images, test images).
const FINGERPRINTS: [(&str, bool, [u8; 10], usize, usize); 2] = [
    ("MNIST", false, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], 60_000, 10_000),
    ("Fashion-MNIST", true, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], 60_000, 10_000),
];

/// Name fragments, most specific first ("fashion-mnist" and "kmnist" both contain "mnist").
const NAMES: [(&str, &str, bool); 5] = [
    ("fashion", "Fashion-MNIST", true),
    ("kmnist", "KMNIST", false),
    ("emnist", "EMNIST", false),
    ("mnist", "MNIST", false),
    ("cifar", "CIFAR-10", true),
];

/// The dataset `splits` (loaded from `dir`, or the embedded subset when `dir` is None) is,
/// when cellnas recognises it.
pub fn identify(splits: &Splits, dir: Option<&Path>) -> Option<Known> {
    let Some(dir) = dir else {
        return Some(Known { name: "Fashion-MNIST", flip: true, how: "the embedded subset" });
    };
    let (train, test) = (&splits.train, &splits.test);
    for (name, flip, labels, n_train, n_test) in FINGERPRINTS {
        if train.n == n_train && test.n == n_test && train.labels.starts_with(&labels) {
            return Some(Known { name, flip, how: "the official files' labels" });
        }
    }
    // The CIFAR-10 loader only accepts CIFAR-10's own binary format.
    if splits.name == "cifar10" {
        return Some(Known { name: "CIFAR-10", flip: true, how: "its binary format" });
    }
    let folder = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if let Some(k) = by_name(&folder, "the folder name") {
        return Some(k);
    }
    let files: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_lowercase()).collect())
        .unwrap_or_default();
    files.iter().find_map(|f| by_name(f, "the file names"))
}

fn by_name(name: &str, how: &'static str) -> Option<Known> {
    NAMES.iter().find(|(frag, _, _)| name.contains(frag)).map(|&(_, name, flip)| Known { name, flip, how })
}

/// The class names of a known dataset (by its `Known::name`), label order; None where cellnas
/// does not know them (EMNIST's depend on its split).
pub fn class_names(dataset: &str) -> Option<&'static [&'static str; 10]> {
    match dataset {
        "Fashion-MNIST" => Some(&["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
        "MNIST" => Some(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]),
        // Kuzushiji-MNIST's classes.csv: one hiragana per class.
        "KMNIST" => Some(&["お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を"]),
        "CIFAR-10" => Some(&["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    fn splits(labels: &[u8], n_train: usize, name: &str) -> Splits {
        let mut l = labels.to_vec();
        l.resize(n_train, 0);
        let train = Dataset { images: vec![0; n_train], labels: l, n: n_train, c: 1, h: 1, w: 1, classes: 10 };
        let test = Dataset { images: vec![0; 10_000], labels: vec![0; 10_000], n: 10_000, c: 1, h: 1, w: 1, classes: 10 };
        Splits { train, test, name: name.into() }
    }

    #[test]
    fn official_labels_win_over_names() {
        let s = splits(&[5, 0, 4, 1, 9, 2, 1, 3, 1, 4], 60_000, "x");
        let k = identify(&s, Some(Path::new("/nowhere/fashion-data"))).unwrap();
        assert_eq!((k.name, k.flip), ("MNIST", false));
        let s = splits(&[9, 0, 0, 3, 0, 2, 7, 2, 5, 5], 60_000, "x");
        assert_eq!(identify(&s, Some(Path::new("/nowhere/data"))).unwrap().name, "Fashion-MNIST");
        // The same labels in a subset of another size are not the official files.
        let s = splits(&[5, 0, 4, 1, 9, 2, 1, 3, 1, 4], 1000, "x");
        assert_eq!(identify(&s, Some(Path::new("/nowhere/data"))), None);
    }

    #[test]
    fn names_most_specific_first() {
        let s = splits(&[1; 10], 100, "x");
        let id = |p: &str| identify(&s, Some(Path::new(p))).map(|k| (k.name, k.flip));
        assert_eq!(id("/d/fashion-mnist"), Some(("Fashion-MNIST", true)));
        assert_eq!(id("/d/KMNIST"), Some(("KMNIST", false)));
        assert_eq!(id("/d/mnist"), Some(("MNIST", false)));
        assert_eq!(id("/d/emnist-digits"), Some(("EMNIST", false)));
        assert_eq!(id("/d/my-data"), None);
        assert_eq!(identify(&s, None).map(|k| k.name), Some("Fashion-MNIST"));
    }
}
