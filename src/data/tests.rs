//! Tests of the data module on files written in a temporary folder.

use super::*;
use ndarray::{Array1, Array2, Array4};
use ndarray_npy::{NpzWriter, WriteNpyExt};
use std::fs::File;

fn spec(name: &str, dtype: DType, shape: &[Option<usize>]) -> InputSpec {
    InputSpec {
        name: name.into(),
        dtype,
        shape: shape
            .iter()
            .map(|d| d.map_or(Dim::Dynamic, Dim::Fixed))
            .collect(),
    }
}

fn images(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 1, 2, 3), |(i, _, y, x)| (i * 100 + y * 10 + x) as f32)
}

fn write_npz(path: &Path, compressed: bool, n: usize) {
    let f = File::create(path).expect("create");
    let mut w = if compressed {
        NpzWriter::new_compressed(f)
    } else {
        NpzWriter::new(f)
    };
    w.add_array("x", &images(n)).expect("x");
    w.add_array(
        "scale",
        &Array2::from_shape_fn((n, 2), |(i, j)| (i + j) as f32 * 0.5),
    )
    .expect("scale");
    w.add_array(LABELS, &Array1::from_shape_fn(n, |i| (i % 3) as i64))
        .expect("labels");
    w.finish().expect("finish");
}

fn two_inputs() -> Vec<InputSpec> {
    vec![
        spec("x", DType::F32, &[None, Some(1), Some(2), Some(3)]),
        spec("scale", DType::F32, &[None, Some(2)]),
    ]
}

#[test]
fn npz_stored_and_deflated_stream_the_same_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    for compressed in [false, true] {
        let p = dir.path().join(format!("d{compressed}.npz"));
        write_npz(&p, compressed, 10);
        let mut ds = Dataset::open(&p, &two_inputs(), None).expect("open");
        assert_eq!(ds.total(), 10);
        assert!(ds.has_labels());
        let batches: Vec<Batch> = ds
            .batches(4)
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2].indices, vec![8, 9]);
        let full = images(10).into_dyn();
        assert_eq!(batches[1].inputs[0].0, "x");
        assert_eq!(
            batches[1].inputs[0].1,
            full.slice(ndarray::s![4..8, .., .., ..]).into_dyn()
        );
        assert_eq!(batches[0].inputs[1].1.shape(), &[4, 2]);
        assert_eq!(batches[0].inputs[1].1[[3, 1]], 2.0);
        assert_eq!(batches[1].labels, Some(vec![1, 2, 0, 1]));
        // A seeded subset reads exactly the selected rows (also skipping in deflated entries).
        ds.select(4, Some(11));
        let idx = ds.indices().to_vec();
        assert_eq!(idx, select::subset(10, 4, Some(11)));
        let b: Vec<Batch> = ds
            .batches(3)
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("read");
        let got: Vec<f32> = b
            .iter()
            .flat_map(|b| b.inputs[0].1.iter().step_by(6).copied().collect::<Vec<_>>())
            .collect();
        let want: Vec<f32> = idx.iter().map(|&i| (i * 100) as f32).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn npz_errors_name_file_and_array() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("d.npz");
    write_npz(&p, false, 5);
    // Wrong dtype.
    let mut inputs = two_inputs();
    inputs[1].dtype = DType::I64;
    let e = Dataset::open(&p, &inputs, None)
        .expect_err("dtype")
        .to_string();
    assert!(
        e.contains("d.npz") && e.contains("'scale'") && e.contains("float32"),
        "{e}"
    );
    // Shape mismatch.
    let mut inputs = two_inputs();
    inputs[0].shape[3] = Dim::Fixed(4);
    let e = Dataset::open(&p, &inputs, None).expect_err("shape");
    assert!(
        matches!(e, DataError::WrongShape { ref array, .. } if array == "x"),
        "{e}"
    );
    let mut inputs = two_inputs();
    inputs[1].shape.push(Dim::Dynamic);
    assert!(Dataset::open(&p, &inputs, None).is_err());
    // Missing array lists what is there.
    let mut inputs = two_inputs();
    inputs[1].name = "mask".into();
    let e = Dataset::open(&p, &inputs, None)
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("'mask'") && e.contains("labels, scale, x"),
        "{e}"
    );
}

#[test]
fn nan_empty_and_length_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("nan.npz");
    let mut x = images(6);
    x[[4, 0, 1, 2]] = f32::NAN;
    let mut w = NpzWriter::new(File::create(&p).expect("create"));
    w.add_array("x", &x).expect("x");
    w.finish().expect("finish");
    let inputs = vec![two_inputs().remove(0)];
    let ds = Dataset::open(&p, &inputs, None).expect("open");
    let mut it = ds.batches(4).expect("iter");
    assert!(it.next().expect("first").is_ok());
    let e = it.next().expect("second").expect_err("nan");
    assert!(matches!(e, DataError::NonFinite { sample: 4, .. }), "{e}");
    assert!(e.to_string().contains("nan.npz") && e.to_string().contains("'x'"));
    assert!(it.next().is_none());

    let p = dir.path().join("empty.npz");
    let mut w = NpzWriter::new(File::create(&p).expect("create"));
    w.add_array("x", &images(0)).expect("x");
    w.finish().expect("finish");
    let e = Dataset::open(&p, &inputs, None).expect_err("empty");
    assert!(matches!(e, DataError::Empty { .. }));

    let p = dir.path().join("len.npz");
    let mut w = NpzWriter::new(File::create(&p).expect("create"));
    w.add_array("x", &images(3)).expect("x");
    w.add_array("scale", &Array2::<f32>::zeros((4, 2)))
        .expect("s");
    w.finish().expect("finish");
    let e = Dataset::open(&p, &two_inputs(), None).expect_err("len");
    assert!(
        matches!(
            e,
            DataError::LengthMismatch {
                found: 4,
                expected: 3,
                ..
            }
        ),
        "{e}"
    );

    let p = dir.path().join("badlabels.npz");
    let mut w = NpzWriter::new(File::create(&p).expect("create"));
    w.add_array("x", &images(3)).expect("x");
    w.add_array(LABELS, &Array1::<f32>::zeros(3)).expect("l");
    w.finish().expect("finish");
    let e = Dataset::open(&p, &inputs, None).expect_err("labels dtype");
    assert!(e.to_string().contains("'labels'"), "{e}");

    let e = Dataset::open(&dir.path().join("nothere.npz"), &inputs, None).expect_err("missing");
    assert!(e.to_string().contains("nothere.npz"));
    let txt = dir.path().join("data.csv");
    std::fs::write(&txt, "1,2").expect("write");
    assert!(matches!(
        Dataset::open(&txt, &inputs, None),
        Err(DataError::Unsupported { .. })
    ));
}

#[test]
fn npy_single_input_and_split() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("x.npy");
    images(9)
        .write_npy(File::create(&p).expect("create"))
        .expect("write");
    let inputs = vec![two_inputs().remove(0)];
    let ds = Dataset::open(&p, &inputs, None).expect("open");
    assert!(!ds.has_labels());
    let (a, b) = ds.split(3, Some(5));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 6);
    assert!(a.indices().iter().all(|i| !b.indices().contains(i)));
    let first: Vec<Batch> = a
        .batches(2)
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(
        first[0].inputs[0].1[[0, 0, 0, 0]],
        (a.indices()[0] * 100) as f32
    );
    let e = Dataset::open(&p, &two_inputs(), None).expect_err("two inputs");
    assert!(e.to_string().contains("x, scale"), "{e}");
    // uint8 data for a float input.
    let p8 = dir.path().join("u8.npy");
    Array2::<u8>::zeros((2, 6))
        .write_npy(File::create(&p8).expect("create"))
        .expect("write");
    let e = Dataset::open(&p8, &[spec("x", DType::F32, &[None, Some(6)])], None)
        .expect_err("u8")
        .to_string();
    assert!(e.contains("uint8") && e.contains("u8.npy"), "{e}");
}

fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let img = ::image::RgbImage::from_pixel(w, h, ::image::Rgb(rgb));
    img.save(path).expect("save png");
}

#[test]
fn image_folder_preprocessing() {
    let dir = tempfile::tempdir().expect("tmp");
    // Deliberately created out of name order.
    write_png(&dir.path().join("b.png"), 40, 30, [255, 0, 0]);
    write_png(&dir.path().join("a.PNG"), 20, 50, [0, 0, 255]);
    std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    let input = spec("img", DType::F32, &[None, Some(3), Some(16), Some(16)]);
    let prep = Preprocess {
        resize_shorter: Some(20),
        resample: Resample::Bilinear,
        crop: Some((16, 16)),
        normalize: Normalize::Affine {
            scale: 1.0 / 255.0,
            offset: 0.0,
        },
        channels: Channels::Bgr,
        layout: Layout::Nchw,
    };
    let ds = Dataset::open(dir.path(), std::slice::from_ref(&input), Some(prep)).expect("open");
    assert_eq!(ds.total(), 2);
    let b: Vec<Batch> = ds
        .batches(8)
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("read");
    let x = &b[0].inputs[0].1;
    assert_eq!(x.shape(), &[2, 3, 16, 16]);
    // a.PNG (blue) first; BGR puts blue in channel 0.
    assert_eq!(x[[0, 0, 8, 8]], 1.0);
    assert_eq!(x[[0, 2, 8, 8]], 0.0);
    assert_eq!(x[[1, 2, 3, 3]], 1.0);
    // Mean/std, NHWC.
    let nhwc = spec("img", DType::F32, &[None, Some(16), Some(16), Some(3)]);
    let p2 = Preprocess {
        normalize: IMAGENET_MEAN_STD,
        channels: Channels::Rgb,
        layout: Layout::Nhwc,
        ..prep
    };
    let ds = Dataset::open(dir.path(), &[nhwc], Some(p2)).expect("open");
    let b = ds
        .batches(1)
        .expect("iter")
        .nth(1)
        .expect("second")
        .expect("read");
    let v = b.inputs[0].1[[0, 5, 5, 0]];
    assert!((v - (1.0 - 0.485) / 0.229).abs() < 1e-5, "{v}");
    // Default preprocessing from the input shape (ImageNet transform) and a size mismatch.
    let small = spec("img", DType::F32, &[None, Some(3), Some(60), Some(60)]);
    let ds = Dataset::open(dir.path(), std::slice::from_ref(&small), None).expect("open");
    let b = ds
        .batches(2)
        .expect("iter")
        .next()
        .expect("one")
        .expect("read");
    assert_eq!(b.inputs[0].1.shape(), &[2, 3, 60, 60]);
    let big_crop = Preprocess {
        crop: Some((60, 60)),
        ..prep
    };
    let ds = Dataset::open(dir.path(), &[small], Some(big_crop)).expect("open");
    let e = ds
        .batches(2)
        .expect("iter")
        .next()
        .expect("one")
        .expect_err("crop");
    assert!(
        e.to_string().contains("a.PNG") && e.to_string().contains("larger"),
        "{e}"
    );
    let no_crop = Preprocess { crop: None, ..prep };
    let ds = Dataset::open(dir.path(), &[input], Some(no_crop)).expect("open");
    let e = ds
        .batches(2)
        .expect("iter")
        .next()
        .expect("one")
        .expect_err("shape");
    assert!(e.to_string().contains("expects [?, 3, 16, 16]"), "{e}");
}

#[test]
fn image_class_folders_give_labels_and_bad_files_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    for (class, n) in [("cat", 2), ("dog", 1)] {
        let d = dir.path().join(class);
        std::fs::create_dir(&d).expect("mkdir");
        for i in 0..n {
            write_png(&d.join(format!("{i}.png")), 8, 8, [10, 20, 30]);
        }
    }
    let input = spec("x", DType::F32, &[None, Some(1), Some(8), Some(8)]);
    let prep = Preprocess {
        resize_shorter: None,
        resample: Resample::Bicubic,
        crop: None,
        normalize: Normalize::Affine {
            scale: 1.0,
            offset: 0.0,
        },
        channels: Channels::Gray,
        layout: Layout::Nchw,
    };
    let ds = Dataset::open(dir.path(), std::slice::from_ref(&input), Some(prep)).expect("open");
    assert!(ds.has_labels());
    let b = ds
        .batches(3)
        .expect("iter")
        .next()
        .expect("b")
        .expect("read");
    assert_eq!(b.labels, Some(vec![0, 0, 1]));
    assert_eq!(b.inputs[0].1.shape(), &[3, 1, 8, 8]);
    std::fs::write(dir.path().join("dog").join("2.jpg"), b"not a jpeg").expect("write");
    let ds = Dataset::open(dir.path(), std::slice::from_ref(&input), Some(prep)).expect("open");
    let e = ds
        .batches(4)
        .expect("iter")
        .next()
        .expect("b")
        .expect_err("decode");
    assert!(e.to_string().contains("2.jpg"), "{e}");
    let empty = tempfile::tempdir().expect("tmp");
    assert!(matches!(
        Dataset::open(empty.path(), &[input], Some(prep)),
        Err(DataError::Empty { .. })
    ));
}

#[test]
fn for_input_detects_layout() {
    let p = Preprocess::for_input(&spec(
        "x",
        DType::F32,
        &[None, Some(3), Some(224), Some(224)],
    ))
    .expect("nchw");
    assert_eq!(p.layout, Layout::Nchw);
    assert_eq!(p.resize_shorter, Some(256));
    let p = Preprocess::for_input(&spec(
        "x",
        DType::F32,
        &[Some(1), Some(28), Some(28), Some(1)],
    ))
    .expect("nhwc");
    assert_eq!(p.layout, Layout::Nhwc);
    assert_eq!(p.channels, Channels::Gray);
    assert!(Preprocess::for_input(&spec("x", DType::F32, &[None, Some(10)])).is_err());
}

/// The Python interpreter of the project's venv (`MFQ_PYTHON`, default `.venv/bin/python` at
/// the workspace root); panics with the set-up command when it is missing.
fn python() -> std::path::PathBuf {
    let p = std::env::var_os("MFQ_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        p.exists(),
        "Python oracle not found at {} (set MFQ_PYTHON or run `bash scripts/venv.sh`)",
        p.display()
    );
    p
}

/// Pillow draws the images and computes the torchvision-style reference (resize shorter side
/// to 256 with floor for the long side, centre crop 224 with Python rounding, ImageNet
/// mean/std, CHW); mfq must agree to within a few 8-bit levels (Pillow and the `image` crate
/// round their resampling filters differently, and the JPEG decoders differ by an IDCT ulp).
const PIL_REFERENCE: &str = r#"
import sys, numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.default_rng(0)
mean = np.array([0.485, 0.456, 0.406]); std = np.array([0.229, 0.224, 0.225])
specs = [("a.png", 375, 500), ("b.jpg", 375, 500), ("c.png", 300, 280)]
refs = {}
for name, h, w in specs:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(x / 37.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], -1)
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(f"{out}/img/{name}", quality=90)
for tag, res in [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)]:
    batch = []
    for name, _, _ in specs:
        im = Image.open(f"{out}/img/{name}").convert("RGB")
        w, h = im.size
        nw, nh = (256, int(h * 256 / w)) if w <= h else (int(w * 256 / h), 256)
        im = im.resize((nw, nh), res)
        l, t = int(round((nw - 224) / 2)), int(round((nh - 224) / 2))
        im = im.crop((l, t, l + 224, t + 224))
        a = (np.asarray(im).astype(np.float64) / 255 - mean) / std
        batch.append(a.transpose(2, 0, 1).astype(np.float32))
    refs[tag] = np.stack(batch)
np.savez(f"{out}/ref.npz", **refs)
"#;

#[test]
fn preprocessing_matches_pillow() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("img")).expect("mkdir");
    let st = std::process::Command::new(python())
        .arg("-c")
        .arg(PIL_REFERENCE)
        .arg(dir.path())
        .status()
        .expect("run python");
    assert!(st.success(), "Pillow reference script failed");
    let mut refs =
        ndarray_npy::NpzReader::new(File::open(dir.path().join("ref.npz")).expect("ref"))
            .expect("npz");
    let input = spec("x", DType::F32, &[None, Some(3), Some(224), Some(224)]);
    let std = [0.229f32, 0.224, 0.225];
    // Per file (a.png, b.jpg, c.png): allowed max and mean |difference| in 8-bit levels.
    for (tag, r, limits) in [
        (
            "bilinear",
            Resample::Bilinear,
            [(1.01, 0.3), (4.01, 0.6), (1.01, 0.3)],
        ),
        (
            "bicubic",
            Resample::Bicubic,
            [(4.01, 0.3), (4.01, 0.6), (8.01, 0.3)],
        ),
    ] {
        let want: ndarray::Array4<f32> = refs.by_name(tag).expect("ref array");
        let mut p = Preprocess::imagenet(224, 224);
        p.resample = r;
        let ds = Dataset::open(
            &dir.path().join("img"),
            std::slice::from_ref(&input),
            Some(p),
        )
        .expect("open");
        let b = ds
            .batches(8)
            .expect("iter")
            .next()
            .expect("batch")
            .expect("read");
        let got = &b.inputs[0].1;
        assert_eq!(got.shape(), want.shape());
        for (k, (max_l, mean_l)) in limits.into_iter().enumerate() {
            let mut max = 0f64;
            let mut sum = 0f64;
            let mut n = 0f64;
            for c in 0..3 {
                for y in 0..224 {
                    for x in 0..224 {
                        let d = f64::from((got[[k, c, y, x]] - want[[k, c, y, x]]).abs() * std[c])
                            * 255.0;
                        max = max.max(d);
                        sum += d;
                        n += 1.0;
                    }
                }
            }
            assert!(
                max <= max_l && sum / n <= mean_l,
                "{tag} image {k}: max {max:.2} mean {:.3} levels",
                sum / n
            );
        }
    }
}
