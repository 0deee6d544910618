//! The container image as a cluster would run it: `deploy/build-image.sh` builds it with
//! buildah from scratch and writes an oci-archive; the test unpacks the archive as a runtime
//! would (index.json → manifest → config and layers), checks what is inside (the binary,
//! exactly its shared libraries and loader, the CA bundle, the nonroot user, no shell), and
//! runs `cutover --version` and `cutover validate` in it with `chroot` as uid 65532.
//!
//! Needs root (buildah's storage, chroot) and `buildah` (installed by tests/setup.sh); a
//! machine without them fails this test, never skips it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use cutover_tests::{TempDir, cutover_bin, require_program, workspace};

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn blob(dir: &Path, digest: &str) -> std::path::PathBuf {
    let (algo, hex) = digest.split_once(':').expect("a digest is algo:hex");
    dir.join("blobs").join(algo).join(hex)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_image_runs_cutover_as_nonroot_from_scratch() {
    require_program("buildah");
    let chroot = require_program("chroot");
    let (_, uid) = run(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "building and chrooting into the image needs root"
    );
    let tmp = TempDir::new("image");
    let archive = tmp.path().join("cutover.oci.tar");

    // Given the image built from the binary the tests use,
    let (code, out) = run(Command::new("bash")
        .arg(workspace().join("deploy/build-image.sh"))
        .arg("--binary")
        .arg(cutover_bin())
        .arg("--out")
        .arg(&archive)
        .arg("--tag")
        .arg(format!("cutover-e2e:{}", std::process::id()))
        .current_dir(workspace()));
    assert_eq!(code, 0, "deploy/build-image.sh failed:\n{out}");

    // when it is unpacked as a runtime would,
    let oci = tmp.path().join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    let (code, out) = run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&oci));
    assert_eq!(code, 0, "{out}");
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "{c:#}");
    assert_eq!(c["Entrypoint"][0], "/usr/local/bin/cutover", "{c:#}");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION"),
        "{c:#}"
    );
    for label in ["source", "revision"] {
        assert!(
            c["Labels"][format!("org.opencontainers.image.{label}")].is_string(),
            "label {label}: {c:#}"
        );
    }
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let gz = layer["mediaType"].as_str().unwrap().ends_with("+gzip");
        let path = blob(&oci, layer["digest"].as_str().unwrap());
        let (code, out) = run(Command::new("tar")
            .arg(if gz { "-xzf" } else { "-xf" })
            .arg(&path)
            .arg("-C")
            .arg(&rootfs));
        assert_eq!(code, 0, "layer {layer}: {out}");
    }

    // then it holds the binary, its libraries, the CA bundle and the user, and no shell,
    for f in [
        "usr/local/bin/cutover",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "etc/group",
    ] {
        assert!(rootfs.join(f).is_file(), "{f} is missing from the image");
    }
    let (_, ldd) = run(Command::new("ldd").arg(cutover_bin()));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        assert!(
            rootfs.join(lib.trim_start_matches('/')).exists(),
            "{lib} (from ldd) is missing from the image"
        );
    }
    for shell in ["bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"] {
        assert!(!rootfs.join(shell).exists(), "{shell} is in the image");
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    // and cutover runs in it as uid 65532.
    std::fs::copy(
        workspace().join("policies/checkout.yaml"),
        rootfs.join("tmp/checkout.yaml"),
    )
    .unwrap();
    let in_image = |args: &[&str]| {
        run(Command::new(&chroot)
            .arg("--userspec=65532:65532")
            .arg(&rootfs)
            .arg("/usr/local/bin/cutover")
            .args(args)
            .env_clear()
            .env("HOME", "/home/nonroot"))
    };
    let (code, out) = in_image(&["--version"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("cutover {}", env!("CARGO_PKG_VERSION")));
    let (code, out) = in_image(&["validate", "/tmp/checkout.yaml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/tmp/checkout.yaml: ok"), "{out}");
    let (code, out) = in_image(&["validate", "/tmp/absent.yaml"]);
    assert_eq!(
        code, 2,
        "a missing policy is reported inside the image too:\n{out}"
    );
}
