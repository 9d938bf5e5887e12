use std::sync::OnceLock;

use regex::Regex;

/// What changes from run to run and what stands in for it in a snapshot.
const FILTERS: &[(&str, &str)] = &[
    // RFC 3339 timestamps, with or without fractions and offset.
    (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "[TS]"),
    // Compact timestamps used in file names: 20260529T005510Z.
    (r"\b\d{8}T\d{6}Z\b", "[TS]"),
    // Temp directories.
    (r"(/tmp|/var/tmp)/[^\s\x22',]+", "[TMP]"),
    // Loopback ports chosen at run time.
    (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
    // Per-test unique names from `unique_name`, also inside swarm's derived names
    // (`lkgt-x-0a1b2c3d_data`, where `\b` would not match before `_`).
    (r"lkgt-([a-z0-9-]+?)-[0-9a-f]{8}", "lkgt-$1-[ID]"),
    // lkg deploy ids.
    (r"\bdeploy-[0-9a-f]{16}\b", "deploy-[ID]"),
];

fn compiled() -> &'static [(Regex, &'static str)] {
    static COMPILED: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    COMPILED
        .get_or_init(|| FILTERS.iter().map(|(re, with)| (Regex::new(re).expect("valid filter regex"), *with)).collect())
}

/// Replaces timestamps, temp paths, loopback ports and random ids in `text`,
/// so that a snapshot fails only on a real change.
pub fn redact(text: &str) -> String {
    compiled().iter().fold(text.to_owned(), |acc, (re, with)| re.replace_all(&acc, *with).into_owned())
}

/// insta settings with the same redactions as [`redact`]:
///
/// ```
/// let _guard = lkg_testkit::settings().bind_to_scope();
/// insta::assert_snapshot!("took a snapshot at 2026-05-29T00:55:10Z", @"took a snapshot at [TS]");
/// ```
pub fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (re, with) in FILTERS {
        settings.add_filter(re, *with);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_what_varies() {
        let text = "at 2026-05-29T00:55:10.123Z in /tmp/.tmpAbC/state via 127.0.0.1:40123 \
                    stack lkgt-smoke-0a1b2c3d volume lkgt-snap-0a1b2c3d_data alert 20260529T005510Z-keycloak deploy-0123456789abcdef";
        assert_eq!(
            redact(text),
            "at [TS] in [TMP] via 127.0.0.1:[PORT] stack lkgt-smoke-[ID] volume lkgt-snap-[ID]_data alert [TS]-keycloak deploy-[ID]"
        );
    }

    #[test]
    fn keeps_digests() {
        let digest = "sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021";
        assert_eq!(redact(digest), digest);
    }
}
