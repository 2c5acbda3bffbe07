//! Image-folder datasets: formats, conversion, bad files, the cache and its rebuilds. Every
//! fixture is written by the test into a temporary folder.

use std::path::{Path, PathBuf};

use cargo_tinynas::data::folder::{self, Options};
use cargo_tinynas::data::{split, DataError, ImageShape};

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("data-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_image(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(seed),
            (y as u8).wrapping_add(seed),
            seed,
        ])
    });
    img.save(path).unwrap();
}

fn shape() -> ImageShape {
    ImageShape { h: 8, w: 8, c: 3 }
}

/// Two classes in four formats, one corrupt image and one text file.
fn sample_folder(name: &str) -> PathBuf {
    let d = tmp(name);
    write_image(&d.join("cat/a.png"), 16, 12, 3);
    write_image(&d.join("cat/b.jpg"), 8, 8, 5);
    write_image(&d.join("cat/c.bmp"), 10, 10, 7);
    let grey = image::GrayImage::from_fn(9, 7, |x, _| image::Luma([x as u8 * 20]));
    grey.save(d.join("dog/d.pgm")).unwrap_or_else(|_| {
        std::fs::create_dir_all(d.join("dog")).unwrap();
        grey.save(d.join("dog/d.pgm")).unwrap()
    });
    write_image(&d.join("dog/e.png"), 8, 8, 11);
    std::fs::write(
        d.join("dog/broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    std::fs::write(d.join("dog/notes.txt"), b"labels are the folder names").unwrap();
    d
}

#[test]
fn loads_formats_reports_bad_files_and_caches() {
    let d = sample_folder("formats");
    let l = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    assert!(l.rebuilt);
    assert_eq!(l.cache.classes, vec!["cat", "dog"]);
    assert_eq!(l.cache.len(), 5);
    assert_eq!(l.cache.labels.iter().filter(|&&c| c == 0).count(), 3);
    // Both bad files are reported with their paths and reasons.
    assert_eq!(l.skipped.len(), 2, "{:?}", l.skipped);
    let text = folder::describe(&l.skipped);
    assert!(
        text.contains("broken.png") && text.contains("cannot decode"),
        "{text}"
    );
    assert!(
        text.contains("notes.txt") && text.contains("not an image"),
        "{text}"
    );
    // Samples read back at the requested shape; a grey image became RGB.
    let mut l = l;
    let mut buf = Vec::new();
    l.cache.read_batch(&[0, 3, 4], &mut buf).unwrap();
    assert_eq!(buf.len(), 3 * 8 * 8 * 3);

    // Second load: the cache is reused, and remembers what was skipped.
    let again = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    assert!(!again.rebuilt);
    assert_eq!(again.skipped.len(), 2);

    // --strict turns skipped files into an error that lists them.
    match folder::load(
        &d,
        Options {
            shape: shape(),
            strict: true,
        },
    ) {
        Err(e @ DataError::Strict { count: 2, .. }) => assert!(e.to_string().contains("notes.txt")),
        other => panic!("expected a strict error, got {other:?}"),
    }

    // A changed source file rebuilds the cache.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_image(&d.join("cat/f.png"), 8, 8, 13);
    let rebuilt = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    assert!(rebuilt.rebuilt);
    assert_eq!(rebuilt.cache.len(), 6);

    // Another input shape has its own cache.
    let grey = folder::load(
        &d,
        Options {
            shape: ImageShape { h: 4, w: 4, c: 1 },
            strict: false,
        },
    )
    .unwrap();
    assert!(grey.rebuilt);
    assert_eq!(grey.cache.shape.len(), 16);
}

#[test]
fn bad_datasets_say_what_to_fix() {
    let e = folder::load(
        Path::new("/no/such/folder"),
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("one sub-folder of images per class"),
        "{e}"
    );

    let one = tmp("one-class");
    write_image(&one.join("cat/a.png"), 8, 8, 1);
    let e = folder::load(
        &one,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap_err();
    assert!(matches!(e, DataError::TooFewClasses(_, 1)), "{e}");

    let empty = tmp("empty-class");
    write_image(&empty.join("cat/a.png"), 8, 8, 1);
    std::fs::create_dir_all(empty.join("dog")).unwrap();
    std::fs::write(empty.join("dog/readme.md"), b"nothing").unwrap();
    let e = folder::load(
        &empty,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, DataError::EmptyClass { class, .. } if class == "dog"),
        "{e}"
    );
    assert!(e.to_string().contains("add images or remove the folder"));
    // The failed load left no temporary files (sized like the data set) in the cache folder.
    let left: Vec<_> = std::fs::read_dir(empty.join(".tinynas"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The content fingerprint names the images, not the files: a fresh checkout of the same images
/// (new modification times) gets the same one, though its cache is rebuilt; other pixels do not.
#[test]
fn the_content_fingerprint_follows_the_pixels_not_the_files() {
    let d = sample_folder("content-fingerprint");
    let opts = || Options {
        shape: shape(),
        strict: false,
    };
    let mut first = folder::load(&d, opts()).unwrap().cache;
    let content = first.content_fingerprint().unwrap();
    let a = d.join("cat/a.png");
    let bytes = std::fs::read(&a).unwrap();
    std::fs::remove_file(&a).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&a, &bytes).unwrap();
    let again = folder::load(&d, opts()).unwrap();
    assert!(again.rebuilt, "new file times: the cache is rebuilt");
    let mut c = again.cache;
    assert_ne!(c.fingerprint, first.fingerprint);
    assert_eq!(c.content_fingerprint().unwrap(), content);
    write_image(&a, 16, 12, 4);
    let mut other = folder::load(&d, opts()).unwrap().cache;
    assert_ne!(other.content_fingerprint().unwrap(), content);
}

/// A symbolic link among the images that leads nowhere (a loop) is reported as skipped, and is
/// an error with `--strict`; it is never dropped silently.
#[test]
fn a_looping_symlink_is_reported() {
    let d = sample_folder("symlink-loop");
    let link = d.join("cat/x.png");
    std::os::unix::fs::symlink(&link, &link).unwrap();
    let l = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    let s = l
        .skipped
        .iter()
        .find(|s| s.path == link)
        .expect("the loop is reported");
    assert!(
        s.reason.contains("symbolic link that leads to no file"),
        "{}",
        s.reason
    );
    let e = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: true,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("x.png"), "{e}");
}

#[test]
fn split_folders_are_respected() {
    let d = tmp("split");
    for (part, n) in [("train", 6u8), ("test", 2)] {
        for class in ["a", "b"] {
            for i in 0..n {
                write_image(
                    &d.join(part).join(class).join(format!("{i}.png")),
                    8,
                    8,
                    i + 1,
                );
            }
        }
    }
    let l = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    assert_eq!(l.cache.classes, vec!["a", "b"]);
    let s = split::stratified(&l.cache.labels, &l.cache.assigned, 0.34, 0.5, 3);
    assert_eq!(s.test.len(), 4, "the test folder is the test split");
    assert_eq!(s.val.len(), 4, "validation is cut from train/, per class");
    assert_eq!(s.train.len(), 8);
}

#[test]
fn a_killed_build_leaves_no_half_cache() {
    let d = sample_folder("atomic");
    let l = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    let path = l.cache.path.clone();
    // Simulate a crash mid-write: a stale temporary file next to a truncated cache.
    std::fs::write(path.with_extension("tmp"), b"TNDS partial").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let again = folder::load(
        &d,
        Options {
            shape: shape(),
            strict: false,
        },
    )
    .unwrap();
    assert!(again.rebuilt, "a damaged cache is rebuilt, not used");
    assert_eq!(again.cache.len(), 5);
}

/// The real Fashion-MNIST from Debian's `dataset-fashion-mnist` (installed by .ci/run): 70,000
/// images in ten balanced classes, split as packaged, read back in batches.
#[test]
fn imports_fashion_mnist_from_the_debian_package() {
    use cargo_tinynas::data::cache::Assigned;
    use cargo_tinynas::data::import::{fashion_mnist, FASHION_MNIST_DIR};
    let dir = Path::new(FASHION_MNIST_DIR);
    assert!(
        dir.is_dir(),
        "install the data set: apt-get install -y dataset-fashion-mnist"
    );
    let out = tmp("fashion").join("fashion-28x28x1.tnds");
    let mut c = fashion_mnist(dir, ImageShape { h: 28, w: 28, c: 1 }, &out).unwrap();
    assert_eq!(c.len(), 70_000);
    assert_eq!(c.classes.len(), 10);
    assert_eq!(
        c.assigned.iter().filter(|&&a| a == Assigned::Test).count(),
        10_000
    );
    for class in 0..10u16 {
        assert_eq!(c.labels.iter().filter(|&&l| l == class).count(), 7_000);
    }
    let mut buf = Vec::new();
    c.read_batch(&[0, 69_999], &mut buf).unwrap();
    assert_eq!(buf.len(), 2 * 784);
    assert!(buf.iter().any(|&b| b > 0), "images are not blank");
}
