//! The root Dockerfile and `scripts/image flomastr` (the registry-free build the tests run) must
//! make the same image: the same files and the same entrypoint, user and environment. The
//! Dockerfile cannot be built here (no Docker), so its runtime stage is read instead, and the
//! archive `scripts/test` built is compared with it.

use crate::common::require_env;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The OCI archive of the flomastr image, built by `scripts/image flomastr`.
const ARCHIVE_VAR: &str = "FLOMASTR_TEST_IMAGE_FLOMASTR_ARCHIVE";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// A Dockerfile's instructions per stage: (keyword, arguments), continuation lines joined.
fn dockerfile_stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && logical.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let (keyword, args) = logical.split_once(' ').unwrap_or((logical.as_str(), ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("a Dockerfile starts with FROM")
            .push((keyword, args.trim().to_owned()));
        logical.clear();
    }
    stages
}

struct RuntimeStage {
    copies: Vec<String>,
    env: Vec<String>,
    user: String,
    entrypoint: Vec<String>,
}

fn runtime_stage(stages: &[Vec<(String, String)>]) -> RuntimeStage {
    let last = stages.last().expect("the Dockerfile has stages");
    let mut stage = RuntimeStage {
        copies: Vec::new(),
        env: Vec::new(),
        user: String::new(),
        entrypoint: Vec::new(),
    };
    for (keyword, args) in last {
        match keyword.as_str() {
            "FROM" => assert_eq!(args, "scratch", "the runtime stage starts from nothing"),
            "COPY" => stage.copies.push(args.clone()),
            "ENV" => stage
                .env
                .push(args.replacen(' ', "=", usize::from(!args.contains('=')))),
            "USER" => stage.user = args.clone(),
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(args).expect("ENTRYPOINT in exec form")
            }
            other => panic!("unexpected {other} in the Dockerfile's runtime stage"),
        }
    }
    stage
}

/// An OCI image layout in a tar: its files by name.
struct Archive(BTreeMap<String, Vec<u8>>);

impl Archive {
    fn open(path: &str) -> Self {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        let mut tar = tar::Archive::new(file);
        let mut files = BTreeMap::new();
        for entry in tar.entries().expect("a tar archive") {
            let mut entry = entry.expect("a tar entry");
            let name = entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        Archive(files)
    }

    fn blob(&self, digest: &str) -> &[u8] {
        let name = format!("blobs/{}", digest.replacen(':', "/", 1));
        self.0
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is in the archive"))
    }

    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(self.blob(digest)).expect("a JSON blob")
    }

    /// The single image's manifest.
    fn manifest(&self) -> Value {
        let index: Value = serde_json::from_slice(&self.0["index.json"]).unwrap();
        let manifests = index["manifests"]
            .as_array()
            .expect("index lists manifests");
        assert_eq!(manifests.len(), 1, "one image in the archive");
        self.json(manifests[0]["digest"].as_str().unwrap())
    }
}

/// One file system entry: its kind, mode and owner (what decides whether the image works).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// Every entry of the image's layers (applied in order), keyed by absolute path, and the
/// contents of the regular files under `keep` (an absolute directory or file path).
fn layer_entries(
    archive: &Archive,
    manifest: &Value,
    keep: &[&str],
) -> (BTreeMap<String, Entry>, BTreeMap<String, Vec<u8>>) {
    let mut entries = BTreeMap::new();
    let mut contents = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let blob = archive.blob(layer["digest"].as_str().unwrap());
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar",
            "scripts/image writes plain tar layers"
        );
        let mut tar = tar::Archive::new(blob);
        for entry in tar.entries().expect("a tar layer") {
            let mut entry = entry.expect("a layer entry");
            let path = format!(
                "/{}",
                entry
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
            );
            if path == "/" {
                continue;
            }
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Regular => 'f',
                other => panic!("unexpected entry type {other:?} at {path}"),
            };
            let found = Entry {
                kind,
                mode: header.mode().unwrap() & 0o7777,
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
            };
            if kind == 'f'
                && keep
                    .iter()
                    .any(|k| path == *k || path.starts_with(&format!("{k}/")))
            {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                contents.insert(path.clone(), data);
            }
            entries.insert(path, found);
        }
    }
    (entries, contents)
}

/// The entries of a directory tree, keyed by their path inside it.
fn tree_entries(root: &Path) -> BTreeMap<String, Entry> {
    use std::os::unix::fs::MetadataExt;
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = if meta.file_type().is_symlink() {
                'l'
            } else if meta.is_dir() {
                stack.push(path.clone());
                'd'
            } else {
                'f'
            };
            let relative = format!("/{}", path.strip_prefix(root).unwrap().display());
            entries.insert(
                relative,
                Entry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid().into(),
                    gid: meta.gid().into(),
                },
            );
        }
    }
    entries
}

fn write_file(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_dockerfile_and_scripts_image_make_the_same_flomastr_image() {
    let stages = dockerfile_stages(&repo_file("Dockerfile"));
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build = &stages[0];
    let runtime = runtime_stage(&stages);

    // The runtime stage is exactly the root file system that scripts/image-rootfs lays out in
    // the build stage, and scripts/image packs the output of the same command.
    assert_eq!(runtime.copies, ["--from=build /rootfs/ /"]);
    assert!(
        build
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("scripts/image-rootfs flomastr /rootfs")),
        "the build stage lays out /rootfs with scripts/image-rootfs"
    );
    assert!(
        build
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("cargo build --release --locked")),
        "the Dockerfile builds the release binary from the lock file"
    );
    assert!(repo_file("scripts/image").contains(r#"scripts/image-rootfs" flomastr"#));

    // Entrypoint, user and environment are the Dockerfile's.
    let archive = Archive::open(&require_env(ARCHIVE_VAR));
    let manifest = archive.manifest();
    let config = archive.json(manifest["config"]["digest"].as_str().unwrap());
    let image = &config["config"];
    let entrypoint: Vec<String> = serde_json::from_value(image["Entrypoint"].clone()).unwrap();
    assert_eq!(entrypoint, runtime.entrypoint);
    assert_eq!(image["User"], runtime.user.as_str());
    assert!(
        image["Cmd"].is_null(),
        "no CMD in either: arguments are the subcommand"
    );
    let env: Vec<String> = serde_json::from_value(image["Env"].clone()).unwrap_or_default();
    for variable in &runtime.env {
        assert!(
            env.contains(variable),
            "{variable} is set in the archive's config ({env:?})"
        );
    }
    assert_eq!(config["os"], "linux");

    // The files: what scripts/image-rootfs makes from the same binary and model is exactly
    // what the archive holds (so the Dockerfile's COPY of that tree gives the same image).
    let model_dir = runtime
        .env
        .iter()
        .find_map(|e| e.strip_prefix("FLOMASTR_EMBED_MODEL_DIR="))
        .expect("the Dockerfile points the engine at the image's model");
    let binary_path = runtime.entrypoint[0].as_str();
    let (entries, contents) = layer_entries(&archive, &manifest, &[binary_path, model_dir]);
    assert!(!entries.contains_key("/bin/sh"), "no shell in the image");
    assert_eq!(entries["/etc/ssl/certs/ca-certificates.crt"].kind, 'f');
    assert_eq!(
        entries[binary_path].mode & 0o111,
        0o111,
        "the entrypoint is executable"
    );

    let inputs = tempfile::tempdir().unwrap();
    let binary = inputs.path().join("flomastr");
    write_file(&binary, &contents[binary_path], 0o755);
    let model = inputs.path().join("model");
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let data = contents
            .get(&format!("{model_dir}/{name}"))
            .unwrap_or_else(|| panic!("{model_dir}/{name} is in the image"));
        write_file(&model.join(name), data, 0o644);
    }
    let rootfs: PathBuf = inputs.path().join("rootfs");
    let status =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/image-rootfs"))
            .arg("flomastr")
            .arg(&rootfs)
            .arg(&binary)
            .arg(&model)
            .status()
            .expect("run scripts/image-rootfs");
    assert!(status.success(), "scripts/image-rootfs lays out the image");
    let expected = tree_entries(&rootfs);
    assert_eq!(
        entries, expected,
        "the archive's files are what the Dockerfile copies"
    );
}
