//! Image folders: `DATA/<class>/*.png|jpg|jpeg|bmp|pgm|ppm|pnm`, or split folders
//! `DATA/{train,val,test}/<class>/...`. Decoded once into the cache file
//! `DATA/.tinynas/cache-HxWxC.tnds` (or, when the data folder is read-only, under the cargo-tinynas
//! cache folder), rebuilt when any source file changes (names, sizes and modification times are
//! fingerprinted).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::cache::{Assigned, Cache, Writer};
use super::{io, DataError, ImageShape, Skipped};

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "pgm", "ppm", "pnm"];

/// How to load a folder.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub shape: ImageShape,
    /// Any skipped file is an error.
    pub strict: bool,
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Loaded {
    pub cache: Cache,
    /// Files that were not used, with the reason (from when the cache was built).
    pub skipped: Vec<Skipped>,
    /// True when the cache was (re)built by this call.
    pub rebuilt: bool,
}

struct Entry {
    class: usize,
    path: PathBuf,
    assigned: Assigned,
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("cannot list {}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The class names of an image folder (its sub-folders, or those of its `train`/`val`/`test`
/// folders), sorted, without reading any image: the labels a model trained on it has.
pub fn class_names(root: &Path) -> Result<Vec<String>, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotAFolder(root.to_path_buf()));
    }
    let groups = groups(root)?;
    let mut classes: Vec<String> = Vec::new();
    for (g, _) in &groups {
        for d in sorted_dirs(g)? {
            classes.push(name(&d));
        }
    }
    classes.sort();
    classes.dedup();
    Ok(classes)
}

/// The folders that hold class folders, with the split each gives its images (the root itself,
/// or its `train`/`val`/`test` folders).
fn groups(root: &Path) -> Result<Vec<(PathBuf, Assigned)>, DataError> {
    let top = sorted_dirs(root)?;
    let split_names = ["train", "val", "test"];
    let is_split = !top.is_empty() && top.iter().all(|d| split_names.contains(&name(d).as_str()));
    Ok(if is_split {
        top.iter()
            .map(|d| {
                let a = match name(d).as_str() {
                    "train" => Assigned::Train,
                    "val" => Assigned::Val,
                    _ => Assigned::Test,
                };
                (d.clone(), a)
            })
            .collect()
    } else {
        vec![(root.to_path_buf(), Assigned::Unassigned)]
    })
}

/// Loads (or reuses the cache of) an image folder.
pub fn load(root: &Path, opts: Options) -> Result<Loaded, DataError> {
    let classes = class_names(root)?;
    let groups = groups(root)?;
    if classes.len() < 2 {
        return Err(DataError::TooFewClasses(root.to_path_buf(), classes.len()));
    }

    // Every file, and the fingerprint of the whole source.
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut fp = crate::hash::Fingerprint::new();
    fp.field(format!("v1 {}x{}x{}", opts.shape.h, opts.shape.w, opts.shape.c).as_bytes());
    for (g, assigned) in &groups {
        for d in sorted_dirs(g)? {
            let class = classes.binary_search(&name(&d)).unwrap_or(0);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                .map_err(io(format!("cannot list {}", d.display())))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| !name(p).starts_with('.'))
                .collect();
            files.sort();
            // A symbolic link that leads nowhere (a loop, a missing target) is a file the user
            // meant to be there: reported, not dropped.
            files.retain(|p| {
                if p.is_file() {
                    return true;
                }
                if p.is_symlink() {
                    let why = std::fs::metadata(p).err().map_or_else(
                        || "a symbolic link to something that is not a file".to_string(),
                        |e| format!("a symbolic link that leads to no file ({e})"),
                    );
                    skipped.push(Skipped {
                        path: p.clone(),
                        reason: why,
                    });
                }
                false
            });
            for path in files {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    skipped.push(Skipped {
                        path,
                        reason: format!(
                            "not an image (extension {:?}; expected one of {})",
                            ext,
                            IMAGE_EXTENSIONS.join(", ")
                        ),
                    });
                    continue;
                }
                let meta = std::fs::metadata(&path)
                    .map_err(io(format!("cannot read {}", path.display())))?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                fp.field(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .as_bytes(),
                );
                fp.field(&meta.len().to_le_bytes());
                fp.field(&mtime.to_le_bytes());
                entries.push(Entry {
                    class,
                    path,
                    assigned: *assigned,
                });
            }
        }
    }
    let fingerprint = fp.finish();
    let file_name = format!(
        "cache-{}x{}x{}.tnds",
        opts.shape.h, opts.shape.w, opts.shape.c
    );
    let in_data = root.join(".tinynas").join(&file_name);
    let fallback = crate::firmware::cache_dir()
        .join("datasets")
        .join(format!("{fingerprint:016x}-{file_name}"));
    for candidate in [&in_data, &fallback] {
        if let Ok(c) = Cache::open(candidate) {
            if c.fingerprint == fingerprint {
                let skipped = read_skipped(candidate);
                check(&c, &skipped, opts.strict)?;
                return Ok(Loaded {
                    cache: c,
                    skipped,
                    rebuilt: false,
                });
            }
        }
    }

    // Build: decode, convert, resize; then check that no class is empty.
    let path =
        if std::fs::create_dir_all(in_data.parent().unwrap_or(root)).is_ok() && writable(root) {
            in_data
        } else {
            fallback
        };
    let mut w = Writer::create(&path, opts.shape, classes.clone(), fingerprint)?;
    let mut counts = vec![0usize; classes.len()];
    for e in &entries {
        match decode(&e.path, opts.shape) {
            Ok(px) => {
                w.push(&px, e.class, e.assigned)?;
                counts[e.class] += 1;
            }
            Err(reason) => skipped.push(Skipped {
                path: e.path.clone(),
                reason,
            }),
        }
    }
    for (class, &n) in counts.iter().enumerate() {
        if n == 0 {
            return Err(DataError::EmptyClass {
                class: classes[class].clone(),
                path: root.join(&classes[class]),
            });
        }
    }
    write_skipped(&path, &skipped);
    let cache = w.finish()?;
    check(&cache, &skipped, opts.strict)?;
    Ok(Loaded {
        cache,
        skipped,
        rebuilt: true,
    })
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".tinynas").join(".write-test");
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn check(_c: &Cache, skipped: &[Skipped], strict: bool) -> Result<(), DataError> {
    if strict && !skipped.is_empty() {
        return Err(DataError::Strict {
            count: skipped.len(),
            list: describe(skipped),
        });
    }
    Ok(())
}

/// One line per skipped file.
pub fn describe(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|s| format!("  {}: {}", s.path.display(), s.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn skipped_path(cache: &Path) -> PathBuf {
    cache.with_extension("skipped")
}

fn write_skipped(cache: &Path, skipped: &[Skipped]) {
    let text: String = skipped
        .iter()
        .map(|s| format!("{}\t{}\n", s.path.display(), s.reason))
        .collect();
    let _ = crate::fsutil::write_atomic(&skipped_path(cache), text.as_bytes());
}

fn read_skipped(cache: &Path) -> Vec<Skipped> {
    std::fs::read_to_string(skipped_path(cache))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, r)| Skipped {
            path: PathBuf::from(p),
            reason: r.to_string(),
        })
        .collect()
}

/// [`decode`]'s error for a file in no format it reads.
pub const NOT_AN_IMAGE: &str = "not an image format this tool reads (PNG, JPEG, BMP, PGM/PPM)";

/// Decodes one image to `shape` (grey or RGB, bilinear resize); the error says why not.
pub fn decode(path: &Path, shape: ImageShape) -> Result<Vec<u8>, String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?
        .decode()
        .map_err(|e| match e {
            // The image crate's words ("The file extension `.\"txt\"` was not recognized as an
            // image format") do not say what would be.
            image::ImageError::Unsupported(_) => NOT_AN_IMAGE.to_string(),
            e => format!("cannot decode: {e}"),
        })?;
    let (w, h) = (shape.w as u32, shape.h as u32);
    Ok(match shape.c {
        1 => {
            let g = img.to_luma8();
            if g.dimensions() == (w, h) {
                g.into_raw()
            } else {
                image::imageops::resize(&g, w, h, FilterType::Triangle).into_raw()
            }
        }
        3 => {
            let c = img.to_rgb8();
            if c.dimensions() == (w, h) {
                c.into_raw()
            } else {
                image::imageops::resize(&c, w, h, FilterType::Triangle).into_raw()
            }
        }
        c => {
            return Err(format!(
                "{c} channels requested; images are read as 1 (grey) or 3 (RGB)"
            ))
        }
    })
}
