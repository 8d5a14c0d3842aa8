//! The scenario catalogue: the TOML files under `scenarios/catalog/`, embedded at build time so
//! every tool (tests, the CLI, loadgen) runs the same scenarios by name.
//!
//! This module owns the list of catalogue entries; it must never read the files at run time. A
//! test parses every entry, so a broken file fails `cargo test`, and [`get`] may treat a parse
//! failure as a bug.

use crate::spec::Scenario;

/// One embedded scenario file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Scenario name (equals the `name` inside the file).
    pub name: &'static str,
    /// File name under `scenarios/catalog/`.
    pub file_name: &'static str,
    /// The file's text.
    pub text: &'static str,
}

impl CatalogEntry {
    /// Parses the entry. Panics when the embedded file is invalid: the catalogue test rules that out.
    pub fn scenario(&self) -> Scenario {
        match Scenario::from_toml_str(self.text, self.file_name) {
            Ok(scenario) => scenario,
            Err(error) => panic!("catalogue file is invalid: {error}"),
        }
    }
}

macro_rules! entry {
    ($name:literal) => {
        CatalogEntry {
            name: $name,
            file_name: concat!($name, ".toml"),
            text: include_str!(concat!("../catalog/", $name, ".toml")),
        }
    };
}

/// Every catalogue entry, in a fixed order (simple to complex).
pub const ENTRIES: &[CatalogEntry] = &[
    entry!("smoke"),
    entry!("subscriber-offline"),
    entry!("device-partition"),
    entry!("broker-crash"),
    entry!("republish"),
];

/// The names of every catalogue scenario.
pub fn names() -> impl Iterator<Item = &'static str> {
    ENTRIES.iter().map(|entry| entry.name)
}

/// The catalogue entry called `name`.
pub fn entry(name: &str) -> Option<&'static CatalogEntry> {
    ENTRIES.iter().find(|entry| entry.name == name)
}

/// The parsed scenario called `name`, `None` when the catalogue has no such entry.
pub fn get(name: &str) -> Option<Scenario> {
    entry(name).map(CatalogEntry::scenario)
}

/// Every catalogue scenario, parsed.
pub fn all() -> Vec<Scenario> {
    ENTRIES.iter().map(CatalogEntry::scenario).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FaultAction;

    #[test]
    fn every_catalogue_file_parses_and_is_named_after_its_file() {
        let scenarios = all();
        assert_eq!(scenarios.len(), ENTRIES.len());
        for (entry, scenario) in ENTRIES.iter().zip(&scenarios) {
            assert_eq!(scenario.name, entry.name, "{}", entry.file_name);
            assert!(!scenario.description.is_empty(), "{} has no description", entry.name);
            assert!(scenario.device_count() <= 5_000, "{} is too big for cargo test", entry.name);
        }
        let mut names: Vec<&str> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENTRIES.len(), "catalogue names are unique");
    }

    #[test]
    fn catalogue_scenarios_say_what_the_brief_asks() {
        let smoke = get("smoke").expect("smoke exists");
        assert_eq!(smoke.device_count(), 1_000);
        assert_eq!(smoke.duration_secs, 60);
        assert_eq!(smoke.subscribers[0].filters, vec!["#".to_string()]);
        assert!(smoke.faults.is_empty());

        let offline = get("subscriber-offline").expect("exists");
        assert!(!offline.subscribers[0].clean_start);
        let cut = offline.faults.iter().find(|fault| matches!(fault.action, FaultAction::Partition { .. }));
        let healed = offline.faults.iter().find(|fault| matches!(fault.action, FaultAction::Heal { .. }));
        assert_eq!(healed.expect("heal").at_secs - cut.expect("partition").at_secs, 30.0);

        let partition = get("device-partition").expect("exists");
        let outage_secs = 120;
        assert_eq!(partition.faults[1].at_secs - partition.faults[0].at_secs, outage_secs as f64);
        let fleet = &partition.fleets[0];
        let samples_in_outage = outage_secs * 1000 / fleet.publish_interval().as_millis() as u32;
        assert!(fleet.pending_messages_limit >= samples_in_outage, "pending queue sized for the outage");

        let crash = get("broker-crash").expect("exists");
        assert!(matches!(crash.faults[0].action, FaultAction::Crash { .. }));
        assert_eq!(crash.expect.lost_max, 0, "the expectation stays: the verdict must be fail");
        assert!(get("no-such-scenario").is_none());
    }
}
