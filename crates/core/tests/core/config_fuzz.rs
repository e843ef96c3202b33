//! The configuration loader on arbitrary input: a config or errors that
//! name the file, never a panic.

use k3scale_core::config::load;
use proptest::prelude::*;

/// YAML-ish text built from the loader's own keys, so that inputs get past
/// the first key often enough to reach deep code.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("pools:".to_string()),
        Just("policy:".to_string()),
        Just("scale_up:".to_string()),
        Just("template:".to_string()),
        Just("provider:".to_string()),
        Just("exec:".to_string()),
        Just("- name: w".to_string()),
        Just("cpu: \"2\"".to_string()),
        Just("memory: 4Gi".to_string()),
        Just("min: 1".to_string()),
        Just("max:".to_string()),
        Just("cooldown: 5m".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just("---".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        Just("\n".to_string()),
        Just("\n  ".to_string()),
        Just("\n    ".to_string()),
        "[a-z_]{1,8}: [0-9a-z\"]{0,6}",
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_yaml_gives_a_config_or_errors_naming_the_file(text in yamlish()) {
        if let Err(errors) = load("f.yaml", &text) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(e.to_string().starts_with("f.yaml"), "{e}");
            }
        }
    }

    #[test]
    fn random_text_gives_a_config_or_errors(text in "\\PC{0,300}") {
        let _ = load("f.yaml", &text);
    }
}
