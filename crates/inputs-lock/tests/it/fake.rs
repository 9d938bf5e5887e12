//! A hand-written in-memory resolver: repositories with tags, images with
//! labels and real layer bytes, and a log of the tags probed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;

use lkg_inputs_lock::{Digest, Image, ImageRef, Layer, Resolver};

#[derive(Debug, Default)]
pub(crate) struct FakeRegistry {
    /// `name:tag` -> digest.
    tags: HashMap<String, Digest>,
    /// (`name`, digest) -> image.
    images: HashMap<(String, Digest), Image>,
    blobs: HashMap<Digest, Vec<u8>>,
    /// Every `name:tag` whose digest was asked, in order.
    pub(crate) probes: Mutex<Vec<String>>,
    /// How many bytes `read_layer` writes at a time (odd, to cross every
    /// gzip and tar boundary).
    pub(crate) chunk: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("fake registry: {0}")]
pub(crate) struct FakeError(String);

impl FakeRegistry {
    pub(crate) fn new() -> FakeRegistry {
        FakeRegistry { chunk: 777, ..FakeRegistry::default() }
    }

    /// Stores an image made of `layers` under `repository` with `tags`;
    /// returns its digest.
    pub(crate) fn push(
        &mut self,
        repository: &str,
        tags: &[&str],
        labels: &[(&str, &str)],
        layers: Vec<Vec<u8>>,
    ) -> Digest {
        let layers: Vec<Layer> = layers
            .into_iter()
            .map(|bytes| {
                let digest = Digest::sha256(&bytes);
                let layer = Layer {
                    digest: digest.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    size: bytes.len() as u64,
                };
                self.blobs.insert(digest, bytes);
                layer
            })
            .collect();
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        // The "manifest" digest: any stable function of the content will do.
        let manifest =
            format!("{repository}|{labels:?}|{:?}", layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>());
        let digest = Digest::sha256(manifest.as_bytes());
        let name = ImageRef::parse(repository).unwrap().name();
        for tag in tags {
            self.tags.insert(format!("{name}:{tag}"), digest.clone());
        }
        self.images.insert((name, digest.clone()), Image { digest: digest.clone(), labels, layers });
        digest
    }

    pub(crate) fn probes(&self) -> Vec<String> {
        self.probes.lock().unwrap().clone()
    }

    fn lookup(&self, image: &ImageRef) -> Option<Digest> {
        match image.digest() {
            Some(d) => self.images.contains_key(&(image.name(), d.clone())).then(|| d.clone()),
            None => self.tags.get(&format!("{}:{}", image.name(), image.tag().unwrap_or("latest"))).cloned(),
        }
    }
}

impl Resolver for FakeRegistry {
    type Error = FakeError;

    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, FakeError> {
        if let Some(tag) = image.tag() {
            self.probes.lock().unwrap().push(tag.to_owned());
        }
        Ok(self.lookup(image))
    }

    async fn inspect(&self, image: &ImageRef) -> Result<Option<Image>, FakeError> {
        Ok(self.lookup(image).and_then(|d| self.images.get(&(image.name(), d)).cloned()))
    }

    async fn tags(&self, repository: &ImageRef) -> Result<Vec<String>, FakeError> {
        let prefix = format!("{}:", repository.name());
        let mut tags: Vec<String> =
            self.tags.keys().filter_map(|k| k.strip_prefix(&prefix)).map(str::to_owned).collect();
        tags.sort();
        Ok(tags)
    }

    async fn read_layer(&self, _: &ImageRef, layer: &Layer, sink: &mut (dyn Write + Send)) -> Result<(), FakeError> {
        let bytes = self.blobs.get(&layer.digest).ok_or_else(|| FakeError(format!("no blob {}", layer.digest)))?;
        for chunk in bytes.chunks(self.chunk.max(1)) {
            sink.write_all(chunk).map_err(|e| FakeError(format!("the sink refused bytes: {e}")))?;
        }
        Ok(())
    }
}
