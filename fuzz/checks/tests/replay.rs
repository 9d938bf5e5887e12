//! Replays the committed corpus (`fuzz/corpus/<target>/`) through the same
//! checks the fuzz targets run, on stable: every crash a fuzzer found, once
//! committed there, is a regression test.
#![allow(clippy::disallowed_methods, reason = "reads the committed corpus; a failure panics naming the file")]

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut replayed = 0;
    for (target, check) in lkg_fuzz_checks::TARGETS {
        let dir = corpus.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}: every target has a corpus", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails its check", file.display());
            replayed += 1;
        }
    }
    assert!(replayed >= lkg_fuzz_checks::TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz_targets");
    for (target, _) in lkg_fuzz_checks::TARGETS {
        let file = targets.join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(&format!("lkg_fuzz_checks::{target}(")), "{} runs its check", file.display());
    }
}
