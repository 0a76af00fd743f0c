//! The synthetic region generator: deterministic for a seed, with both feed formats.

use poplar_loaders::registry::{FeedFormat, Registry};
use poplar_loaders::synth::SynthOutput;
use std::collections::{BTreeMap, HashSet};

use crate::common::*;

#[test]
fn synth_is_deterministic_for_a_seed_and_differs_across_seeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = |out: &SynthOutput| -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for source in std::fs::read_dir(&out.deliveries).expect("dir") {
            let source = source.expect("entry").path();
            for delivery in std::fs::read_dir(&source).expect("dir") {
                let path = delivery.expect("entry").path().join("manifest.toml");
                m.insert(
                    path.strip_prefix(&out.deliveries)
                        .expect("prefix")
                        .display()
                        .to_string(),
                    std::fs::read_to_string(&path).expect("manifest"),
                );
            }
        }
        m
    };
    let a = region(&dir.path().join("a"), 800, 7);
    let b = region(&dir.path().join("b"), 800, 7);
    let c = region(&dir.path().join("c"), 800, 8);
    assert_eq!(manifests(&a), manifests(&b), "same seed, same bytes");
    assert_ne!(manifests(&a), manifests(&c), "another seed, other data");
    assert_eq!(a.report.organisations.values().sum::<usize>(), small_mix().total());
    let formats: HashSet<FeedFormat> = Registry::from_file(&a.registry)
        .expect("registry")
        .sources
        .iter()
        .map(|s| s.format)
        .collect();
    assert!(
        formats.contains(&FeedFormat::Csv) && formats.contains(&FeedFormat::FhirNdjson),
        "both feed formats appear"
    );
}
