//! Fuzz target: the configuration file. Must not panic; every problem names a key path or a
//! line (or is the known whole-file "more than one document" error); the environment
//! variable's secret value never appears in an error (unless the input itself spells it out,
//! e.g. as a key name, which libFuzzer's comparison tracing makes it do).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tibiot_exporter::config::Config;

const SECRET: &str = "FuzzSecretValue-91x";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| (k == "S").then(|| SECRET.to_owned());
    match Config::parse_with_env(text, Path::new("/nonexistent-fuzz-dir"), &env) {
        Ok(cfg) => {
            if !text.contains(SECRET) {
                assert!(!cfg.redacted_yaml().contains(SECRET));
            }
        }
        Err(errors) => {
            for e in &errors {
                assert!(
                    !e.key.is_empty()
                        || e.line.is_some()
                        || e.message.contains("more than one document"),
                    "unlocated error: {e:?}"
                );
                // `${S}` may also be used where its value is no secret (base_url, app_key, the
                // path of app_secret_file): an error about that key may show it.
                let about_plain_value = [".base_url", ".app_key", ".app_secret_file"]
                    .iter()
                    .any(|k| e.key.ends_with(k));
                if !text.contains(SECRET) && !about_plain_value {
                    assert!(!e.to_string().contains(SECRET), "secret in error: {e}");
                }
            }
        }
    }
});
