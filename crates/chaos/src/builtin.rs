//! The built-in scenarios, compiled in from `scenarios/*.yaml`.

/// Every built-in scenario: (name, YAML).
pub const ALL: &[(&str, &str)] = &[
    (
        "market-crash",
        include_str!("../scenarios/market-crash.yaml"),
    ),
    (
        "stablecoin-depeg",
        include_str!("../scenarios/stablecoin-depeg.yaml"),
    ),
    (
        "exchange-downtime",
        include_str!("../scenarios/exchange-downtime.yaml"),
    ),
    (
        "settlement-failure",
        include_str!("../scenarios/settlement-failure.yaml"),
    ),
    (
        "strategy-malfunction",
        include_str!("../scenarios/strategy-malfunction.yaml"),
    ),
    (
        "feed-disruption",
        include_str!("../scenarios/feed-disruption.yaml"),
    ),
];

/// The YAML of a built-in scenario.
pub fn get(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, y)| *y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_is_named_for_its_file() {
        for (name, yaml) in ALL {
            let s = crate::Scenario::from_yaml(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s.name, name);
            assert!(!s.expect.is_empty(), "{name} expects nothing");
        }
    }
}
