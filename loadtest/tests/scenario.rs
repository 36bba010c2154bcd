//! The load-test policy set stays loadable as the model evolves.

use sluice_engine::{compile, PolicySetDef};

#[test]
fn embedded_scenario_compiles_with_ten_policies_and_five_quotas() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/embedded-10-policies.toml"
    ))
    .unwrap();
    let def: PolicySetDef = toml::from_str(&text).expect("scenario parses as a PolicySetDef");
    assert_eq!(def.policies.len(), 10);
    let quotas: usize = def.policies.iter().map(|p| p.quotas.len()).sum();
    assert_eq!(quotas, 5);
    if let Err(diagnostics) = compile(&def) {
        let text: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
        panic!("scenario does not compile:\n{}", text.join("\n"));
    }
}
