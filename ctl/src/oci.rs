//! The filter module as an OCI image (`egressctl package`), and the digest the rendered
//! manifests pin.
//!
//! Format: the Docker/OCI "compat" variant Istio's image fetcher reads (and Envoy Gateway's,
//! which follows it): an ordinary OCI image whose single layer is a gzip'd tar holding one file,
//! `plugin.wasm`. Chosen over the wasm-specific media type
//! (`application/vnd.module.wasm.content.layer.v1+wasm`) because it is also an ordinary image:
//! a Kubernetes `image` volume (and any registry, mirror or scanner) handles it as one, which is
//! how the plain-Kubernetes Deployment mounts the module.
//!
//! The image is reproducible: the tar entry and the gzip header carry no time, owner or host,
//! so the same module always gives the same digest. `render` relies on that to compute the
//! digest of a module without packaging it.

use anyhow::{bail, Context};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The one file in the layer, the name Istio's fetcher looks for.
pub const MODULE_FILE: &str = "plugin.wasm";

/// A blob: its bytes and `sha256:<hex>` digest.
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Self { bytes, digest }
    }
    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The image: layer, config and manifest. The image's digest is the manifest's.
pub struct Image {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Checks that `bytes` is a WebAssembly binary module (magic and version 1).
pub fn check_wasm(bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("not a WebAssembly module (no \\0asm magic)");
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        bail!("unsupported WebAssembly binary version (want 1)");
    }
    Ok(())
}

/// Builds the image for a module (checked to be WebAssembly).
pub fn image(module: &[u8]) -> anyhow::Result<Image> {
    check_wasm(module)?;
    let tar = tar_one_file(MODULE_FILE, module)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    let layer = Blob::new(gz.finish()?);
    let config = Blob::new(serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))?);
    let manifest = Blob::new(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config.digest,
            "size": config.bytes.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer.digest,
            "size": layer.bytes.len(),
            "annotations": { "org.opencontainers.image.title": MODULE_FILE },
        }],
    }))?);
    Ok(Image {
        layer,
        config,
        manifest,
    })
}

/// The digest `package` prints for the module in `path`.
pub fn module_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let img = image(&bytes).with_context(|| path.display().to_string())?;
    Ok(img.manifest.digest)
}

/// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) into `dir`, the
/// manifest tagged `tag` (`org.opencontainers.image.ref.name`).
pub fn write_layout(img: &Image, dir: &Path, tag: &str) -> anyhow::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("cannot create {}", blobs.display()))?;
    for blob in [&img.layer, &img.config, &img.manifest] {
        write_file(&blobs.join(blob.hex()), &blob.bytes)?;
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": img.manifest.digest,
            "size": img.manifest.bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write_file(&dir.join("index.json"), &serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// A POSIX ustar archive with one regular file (mode 0644, owner 0, time 0).
fn tar_one_file(name: &str, content: &[u8]) -> anyhow::Result<Vec<u8>> {
    if name.len() > 100 {
        bail!("tar entry name too long");
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644); // mode
    octal(&mut h, 108, 8, 0); // uid
    octal(&mut h, 116, 8, 0); // gid
    if content.len() as u64 >= 8u64.pow(11) {
        bail!("module too large for a ustar entry");
    }
    octal(&mut h, 124, 12, content.len() as u64); // size
    octal(&mut h, 136, 12, 0); // mtime
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // Checksum: computed with the checksum field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = Vec::with_capacity(512 + content.len() + 1536);
    out.extend_from_slice(&h);
    out.extend_from_slice(content);
    let pad = (512 - content.len() % 512) % 512;
    out.resize(out.len() + pad + 1024, 0); // padding, then two zero blocks
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn same_module_same_digest() {
        let a = image(MODULE).unwrap();
        let b = image(MODULE).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.layer.bytes, b.layer.bytes);
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        assert!(image(b"#!/bin/sh\n").is_err());
        assert!(image(b"\0asm\x02\0\0\0").is_err());
    }

    #[test]
    fn tar_header_checksum_is_valid() {
        let t = tar_one_file("plugin.wasm", MODULE).unwrap();
        assert_eq!(t.len() % 512, 0);
        let mut h = t[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| u32::from(b)).sum::<u32>());
    }
}
