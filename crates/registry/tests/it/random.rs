//! Synthetic OCI images with random (incompressible) layers, built with the
//! lkg client itself. Shared by the tests and the `push-random-image`
//! example the benchmarks use.
#![allow(dead_code, unreachable_pub)] // shared by the tests and an example, each using a part

use bytes::Bytes;
use futures_util::StreamExt as _;
use lkg_registry::{Client, Digest, DigestWriter, Manifest, Platform, Reference, RegistryError, media};

/// A fast deterministic byte generator (xorshift64*): layers differ by seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

const CHUNK: usize = 1 << 20;

fn layer_digest(seed: u64, len: usize) -> Digest {
    let mut w = DigestWriter::new(lkg_registry::Algorithm::Sha256);
    let mut done = 0;
    let mut i = 0u64;
    while done < len {
        let n = CHUNK.min(len - done);
        w.update(&random_bytes(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), n));
        done += n;
        i += 1;
    }
    w.finish()
}

fn layer_stream(seed: u64, len: usize) -> lkg_registry::BlobStream {
    let chunks = len.div_ceil(CHUNK);
    futures_util::stream::iter(0..chunks)
        .map(move |i| {
            let n = CHUNK.min(len - i * CHUNK);
            Ok::<_, RegistryError>(Bytes::from(random_bytes(
                seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                n,
            )))
        })
        .boxed()
}

/// The content of layer `index` of an image pushed with `seed`.
pub fn random_bytes_layer(seed: u64, index: usize, len: usize) -> Vec<u8> {
    let layer_seed = seed.wrapping_mul(1_000_003).wrapping_add(index as u64);
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        let n = CHUNK.min(len - out.len());
        out.extend(random_bytes(layer_seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), n));
        i += 1;
    }
    out
}

/// Pushes an image whose layers are `layer_sizes` random bytes each (seeded
/// by `seed`), with `labels`, for `platform`; tags it with `r`'s tag.
/// Layers stream, so multi-GiB images need no memory.
pub async fn push_random_image(
    client: &Client,
    r: &Reference,
    seed: u64,
    layer_sizes: &[usize],
    labels: &[(&str, &str)],
    platform: &Platform,
) -> Result<Manifest, RegistryError> {
    let mut layers = Vec::new();
    for (i, &size) in layer_sizes.iter().enumerate() {
        let layer_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let digest = layer_digest(layer_seed, size);
        if client.blob_exists(r, &digest).await?.is_none() {
            client.push_blob_stream(r, &digest, size as u64, layer_stream(layer_seed, size), None).await?;
        }
        layers.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}),
        );
    }
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
    let diff_ids: Vec<serde_json::Value> = layers.iter().map(|l| l["digest"].clone()).collect();
    let mut config = serde_json::json!({
        "created": "2026-05-22T10:00:00Z",
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(v) = &platform.variant {
        config["variant"] = serde_json::Value::from(v.clone());
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::sha256(&config);
    if client.blob_exists(r, &config_digest).await?.is_none() {
        client.push_blob(r, &config_digest, Bytes::from(config.clone())).await?;
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let manifest = Manifest::from_bytes(manifest, Some(media::OCI_MANIFEST))?;
    client.put_manifest(r, &r.target(), &manifest).await?;
    Ok(manifest)
}

/// Pushes an OCI index of `children` (already in `r`'s repository) and tags it.
pub async fn push_index(
    client: &Client,
    r: &Reference,
    children: &[(&Manifest, Platform)],
) -> Result<Manifest, RegistryError> {
    let entries: Vec<serde_json::Value> = children
        .iter()
        .map(|(m, p)| {
            serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len(), "platform": p})
        })
        .collect();
    let index = serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    let index = Manifest::from_bytes(index, Some(media::OCI_INDEX))?;
    client.put_manifest(r, &r.target(), &index).await?;
    Ok(index)
}
