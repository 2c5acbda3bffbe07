//! The engine on its own, with no cargo-tinynas and no files: an in-memory data set through
//! `Samples`, trained, exported to int8 and evaluated by the host interpreter.

use tinynas_train::export::{export, int8_accuracy, int8_predictions};
use tinynas_train::fit::{evaluate, fit, Options};
use tinynas_train::net::{Arch, Net};
use tinynas_train::optim::{OptimizerKind, Schedule};
use tinynas_train::{ImageShape, ReadError, Samples};

/// Images of two classes: a bright bar across the top half, or across the bottom half, over
/// seeded noise. A small network separates them easily; a broken engine does not.
struct Bars {
    shape: ImageShape,
    images: Vec<Vec<u8>>,
    labels: Vec<usize>,
}

impl Bars {
    fn new(n: usize) -> Self {
        let shape = ImageShape { h: 12, w: 12, c: 1 };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let label = i % 2;
            let img: Vec<u8> = (0..shape.len())
                .map(|p| {
                    let top = p / shape.w < shape.h / 2;
                    let noise = (next() % 96) as u8;
                    if top == (label == 0) {
                        150 + noise
                    } else {
                        noise
                    }
                })
                .collect();
            images.push(img);
            labels.push(label);
        }
        Bars {
            shape,
            images,
            labels,
        }
    }
}

impl Samples for Bars {
    fn shape(&self) -> ImageShape {
        self.shape
    }

    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    fn read_batch(&mut self, indices: &[usize], out: &mut Vec<u8>) -> Result<(), ReadError> {
        out.clear();
        for &i in indices {
            let img = self.images.get(i).ok_or_else(|| {
                ReadError(format!("image {i} of {} does not exist", self.images.len()).into())
            })?;
            out.extend_from_slice(img);
        }
        Ok(())
    }
}

#[test]
fn trains_exports_and_evaluates_an_in_memory_data_set() {
    let mut data = Bars::new(240);
    let train: Vec<usize> = (0..160).collect();
    let val: Vec<usize> = (160..240).collect();
    let mut net = Net::new(Arch::NanoNas { k: 4, c: 1 }, data.shape(), 2, 7).unwrap();
    let opts = Options {
        epochs: 3,
        batch: 16,
        lr: 0.01,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::Constant,
        seed: 7,
        augment: false,
        label_smoothing: 0.0,
    };
    let before = evaluate(&mut net, &mut data, &val, 32).unwrap();
    let history = fit(&mut net, &mut data, &train, &val, &opts, |_| {}).unwrap();
    assert_eq!(history.len(), 3);
    let float = evaluate(&mut net, &mut data, &val, 32).unwrap();
    assert!(
        float >= 0.95,
        "float validation accuracy {float} (was {before} before training)"
    );

    let labels = vec!["top".to_string(), "bottom".to_string()];
    let model = export(&mut net, &mut data, &train, labels).unwrap();
    let int8 = int8_accuracy(&model, &mut data, &val).unwrap();
    assert!(
        int8 >= 0.95,
        "int8 validation accuracy {int8} (float {float})"
    );
    let predicted = int8_predictions(&model, &mut data, &val).unwrap();
    assert_eq!(predicted.len(), val.len());
    let correct = val
        .iter()
        .zip(&predicted)
        .filter(|&(&i, &p)| data.label(i) == p)
        .count();
    assert_eq!(correct as f32 / val.len() as f32, int8);
}

#[test]
fn a_read_error_reaches_the_caller_with_its_message() {
    let mut data = Bars::new(8);
    let mut net = Net::new(Arch::NanoNas { k: 4, c: 1 }, data.shape(), 2, 1).unwrap();
    let e = evaluate(&mut net, &mut data, &[0, 1, 99], 4).unwrap_err();
    assert_eq!(e.to_string(), "image 99 of 8 does not exist");
}

/// A layer the exporter cannot fold (a batch norm with no convolution before it) is named in the
/// error, not printed with its parameters.
#[test]
fn an_unexportable_layer_is_named_in_the_error() {
    let mut data = Bars::new(8);
    let mut net = Net::new(Arch::NanoNas { k: 4, c: 1 }, data.shape(), 2, 1).unwrap();
    net.layers
        .insert(0, Box::new(tinynas_train::layers::BatchNorm::new(1)));
    let labels = vec!["top".to_string(), "bottom".to_string()];
    let e = export(&mut net, &mut data, &[0, 1], labels)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot place layer 0 (batch norm) on its own"),
        "{e}"
    );
    assert!(e.len() < 200, "{e}");
}
