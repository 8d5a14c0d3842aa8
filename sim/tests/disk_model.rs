//! Property tests: `SimDisk` loses exactly what the durability contract allows and nothing else.
//!
//! Random sequences of append / sync / truncate / rename / remove, interleaved with process
//! crashes, power losses, wipes and a full-disk fault, run against `SimDisk` and against a
//! reference model written differently (explicit synced copies and lists of unsynced appends per
//! file object, directory syncs recomputed from scratch). After every step both must agree on
//! every read, length and listing; after a power loss each surviving file must hold its synced
//! bytes plus at most a prefix of its unsynced appends (whole appends, then one torn), under the
//! names its directory's last sync recorded. The negative tests plant the losses the checks exist
//! to catch and show them failing. About 1 s for the whole file.

use std::collections::BTreeMap;

use edgeproof_sim::disk::{DiskFault, DiskFaultKind, SimDisk};
use edgeproof_system::fs::{Fs, FsError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NAMES: [&str; 4] = ["d/a", "d/b", "d/c", "e/a"];
const DIRS: [&str; 2] = ["d", "e"];

/// One file object of the reference model (what an inode is to the disk).
#[derive(Clone, Debug)]
struct RefFile {
    cached: Vec<u8>,
    synced: Vec<u8>,
    /// Appends since the last sync, in order; their concatenation is `cached[synced.len()..]`
    /// unless `diverged`.
    unsynced_appends: Vec<Vec<u8>>,
    /// A truncate cut below the synced bytes: a power loss brings back exactly `synced`.
    diverged: bool,
}

#[derive(Clone, Debug, Default)]
struct Reference {
    files: Vec<RefFile>,
    cached_names: BTreeMap<String, usize>,
    durable_names: BTreeMap<String, usize>,
    capacity_bytes: Option<u64>,
}

impl Reference {
    fn live_objects(&self) -> Vec<usize> {
        let mut ids: Vec<usize> =
            self.cached_names.values().chain(self.durable_names.values()).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn used_bytes(&self) -> u64 {
        self.live_objects()
            .iter()
            .map(|id| {
                let file = &self.files[*id];
                file.cached.len() as u64 + if file.diverged { file.synced.len() as u64 } else { 0 }
            })
            .sum()
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, FsError> {
        if self.capacity_bytes.is_some_and(|capacity| self.used_bytes() + data.len() as u64 > capacity) {
            return Err(FsError::DiskFull);
        }
        let id = match self.cached_names.get(name) {
            Some(id) => *id,
            None => {
                self.files.push(RefFile {
                    cached: vec![],
                    synced: vec![],
                    unsynced_appends: vec![],
                    diverged: false,
                });
                self.cached_names.insert(name.to_string(), self.files.len() - 1);
                self.files.len() - 1
            }
        };
        let file = &mut self.files[id];
        file.cached.extend_from_slice(data);
        if !data.is_empty() {
            file.unsynced_appends.push(data.to_vec());
        }
        Ok(file.cached.len() as u64)
    }

    fn sync(&mut self, name: &str) -> Result<(), FsError> {
        let id = *self.cached_names.get(name).ok_or_else(|| FsError::NotFound { path: name.to_string() })?;
        let file = &mut self.files[id];
        file.synced = file.cached.clone();
        file.unsynced_appends.clear();
        file.diverged = false;
        let dir = name.split_once('/').expect("every test name has a directory").0;
        let in_dir = |entry: &String| entry.starts_with(&format!("{dir}/"));
        let mut durable: BTreeMap<String, usize> = self
            .durable_names
            .iter()
            .filter(|(entry, _)| !in_dir(entry))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        durable.extend(
            self.cached_names.iter().filter(|(entry, _)| in_dir(entry)).map(|(k, v)| (k.clone(), *v)),
        );
        self.durable_names = durable;
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), FsError> {
        let id = *self.cached_names.get(name).ok_or_else(|| FsError::NotFound { path: name.to_string() })?;
        let file = &mut self.files[id];
        let file_len = file.cached.len() as u64;
        if len > file_len {
            return Err(FsError::InvalidLength { path: name.to_string(), len, file_len });
        }
        file.cached.truncate(len as usize);
        if len < file.synced.len() as u64 {
            file.diverged = true;
        }
        if !file.diverged {
            // What is left past the synced bytes is one unsynced run a power loss may keep a prefix of.
            let tail = file.cached[file.synced.len()..].to_vec();
            file.unsynced_appends = if tail.is_empty() { vec![] } else { vec![tail] };
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let id = *self.cached_names.get(from).ok_or_else(|| FsError::NotFound { path: from.to_string() })?;
        self.cached_names.remove(from);
        self.cached_names.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), FsError> {
        self.cached_names.remove(name).map(|_| ()).ok_or_else(|| FsError::NotFound { path: name.to_string() })
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, FsError> {
        self.cached_names
            .get(name)
            .map(|id| self.files[*id].cached.clone())
            .ok_or_else(|| FsError::NotFound { path: name.to_string() })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        let prefix = format!("{dir}/");
        let names: Vec<String> = self
            .cached_names
            .keys()
            .filter_map(|name| name.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        if names.is_empty() { Err(FsError::NotFound { path: dir.to_string() }) } else { Ok(names) }
    }

    /// Checks a disk that just lost power against what may survive, then adopts what survived.
    fn check_power_loss(&mut self, disk: &mut SimDisk) -> Result<(), String> {
        self.cached_names = self.durable_names.clone();
        for (name, id) in self.cached_names.clone() {
            let file = &self.files[id];
            let actual = disk.read(&name, 0, usize::MAX).map_err(|error| format!("{name}: {error}"))?;
            if file.diverged {
                if actual != file.synced {
                    return Err(format!(
                        "{name}: after a truncate below the synced bytes, {actual:?} != {:?}",
                        file.synced
                    ));
                }
            } else {
                let unsynced: Vec<u8> = file.unsynced_appends.concat();
                let allowed = [file.synced.clone(), unsynced.clone()].concat();
                if !actual.starts_with(&file.synced) {
                    return Err(format!("{name}: synced bytes {:?} lost, found {actual:?}", file.synced));
                }
                if !allowed.starts_with(&actual) {
                    return Err(format!(
                        "{name}: {actual:?} is not the synced bytes plus a prefix of unsynced appends"
                    ));
                }
            }
            let file = &mut self.files[id];
            file.cached = actual.clone();
            file.synced = actual;
            file.unsynced_appends.clear();
            file.diverged = false;
        }
        Ok(())
    }

    /// Checks that the disk shows exactly what the reference's page cache holds.
    fn check_same_view(&self, disk: &mut SimDisk) -> Result<(), String> {
        for name in NAMES {
            let expected = self.read(name);
            let actual = disk.read(name, 0, usize::MAX);
            if expected != actual {
                return Err(format!("{name}: reference {expected:?}, disk {actual:?}"));
            }
            let expected_len = expected.map(|data| data.len() as u64);
            let actual_len = disk.len(name);
            if expected_len != actual_len {
                return Err(format!("{name}: reference length {expected_len:?}, disk {actual_len:?}"));
            }
        }
        for dir in DIRS {
            let (expected, actual) = (self.list(dir), disk.list(dir));
            if expected != actual {
                return Err(format!("list {dir}: reference {expected:?}, disk {actual:?}"));
            }
        }
        if self.used_bytes() != disk.used_bytes() {
            return Err(format!("used bytes: reference {}, disk {}", self.used_bytes(), disk.used_bytes()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Step {
    Append { name: usize, data: Vec<u8> },
    Sync { name: usize },
    Truncate { name: usize, keep_per_mille: u16 },
    Rename { from: usize, to: usize },
    Remove { name: usize },
    ProcessCrash,
    PowerLoss { seed: u64 },
    Wipe,
    Full { capacity_bytes: u64 },
    HealFull,
}

fn step() -> impl Strategy<Value = Step> {
    let name = 0..NAMES.len();
    prop_oneof![
        8 => (name.clone(), proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(name, data)| Step::Append { name, data }),
        4 => name.clone().prop_map(|name| Step::Sync { name }),
        1 => (name.clone(), 0..=1000u16).prop_map(|(name, keep_per_mille)| Step::Truncate { name, keep_per_mille }),
        2 => (name.clone(), name.clone()).prop_map(|(from, to)| Step::Rename { from, to }),
        1 => name.prop_map(|name| Step::Remove { name }),
        1 => Just(Step::ProcessCrash),
        2 => any::<u64>().prop_map(|seed| Step::PowerLoss { seed }),
        1 => Just(Step::Wipe),
        1 => (0..80u64).prop_map(|capacity_bytes| Step::Full { capacity_bytes }),
        1 => Just(Step::HealFull),
    ]
}

/// Runs `steps` on both, returning the first disagreement.
fn run(steps: &[Step]) -> Result<(), String> {
    let mut disk = SimDisk::default();
    let mut reference = Reference::default();
    for (index, step) in steps.iter().enumerate() {
        let context = |error: String| format!("step {index} {step:?}: {error}");
        match step {
            Step::Append { name, data } => {
                let (expected, actual) =
                    (reference.append(NAMES[*name], data), disk.append(NAMES[*name], data));
                if expected != actual {
                    return Err(context(format!("append: reference {expected:?}, disk {actual:?}")));
                }
            }
            Step::Sync { name } => {
                let (expected, actual) = (reference.sync(NAMES[*name]), disk.sync(NAMES[*name]));
                if expected != actual {
                    return Err(context(format!("sync: reference {expected:?}, disk {actual:?}")));
                }
            }
            Step::Truncate { name, keep_per_mille } => {
                let len = reference
                    .read(NAMES[*name])
                    .map_or(0, |data| data.len() as u64 * u64::from(*keep_per_mille) / 1000);
                let (expected, actual) =
                    (reference.truncate(NAMES[*name], len), disk.truncate(NAMES[*name], len));
                if expected != actual {
                    return Err(context(format!("truncate: reference {expected:?}, disk {actual:?}")));
                }
            }
            Step::Rename { from, to } => {
                let (expected, actual) =
                    (reference.rename(NAMES[*from], NAMES[*to]), disk.rename(NAMES[*from], NAMES[*to]));
                if expected != actual {
                    return Err(context(format!("rename: reference {expected:?}, disk {actual:?}")));
                }
            }
            Step::Remove { name } => {
                let (expected, actual) = (reference.remove(NAMES[*name]), disk.remove(NAMES[*name]));
                if expected != actual {
                    return Err(context(format!("remove: reference {expected:?}, disk {actual:?}")));
                }
            }
            Step::ProcessCrash => disk.process_crash(),
            Step::PowerLoss { seed } => {
                disk.power_loss(&mut ChaCha8Rng::seed_from_u64(*seed));
                reference.check_power_loss(&mut disk).map_err(context)?;
            }
            Step::Wipe => {
                disk.wipe();
                reference = Reference::default();
            }
            Step::Full { capacity_bytes } => {
                disk.inject(&DiskFault::Full { capacity_bytes: *capacity_bytes });
                reference.capacity_bytes = Some(*capacity_bytes);
            }
            Step::HealFull => {
                disk.heal(DiskFaultKind::Full);
                reference.capacity_bytes = None;
            }
        }
        reference.check_same_view(&mut disk).map_err(context)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sim_disk_loses_exactly_what_the_contract_allows(steps in proptest::collection::vec(step(), 1..60)) {
        prop_assert_eq!(run(&steps), Ok(()));
    }
}

#[test]
fn power_loss_exercises_drops_tears_and_renames() {
    // The properties above are only as strong as the cases they see: make sure a power loss with
    // unsynced data both drops and tears, and a synced rename survives.
    let mut disk = SimDisk::default();
    for seed in 0..32 {
        disk.append("d/a", &[1, 2, 3]).expect("append");
        disk.sync("d/a").expect("sync");
        disk.append("d/a", &[4, 5, 6]).expect("append");
        disk.append("d/a", &[7, 8, 9]).expect("append");
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
        disk.remove("d/a").expect("remove");
        disk.append("d/z", b"x").expect("append");
        disk.sync("d/z").expect("sync: makes the removal of d/a durable too");
        disk.remove("d/z").expect("remove");
    }
    let stats = disk.stats();
    assert!(
        stats.torn_appends > 0 && stats.unsynced_bytes_lost > 0 && stats.unsynced_bytes_kept > 0,
        "{stats:?}"
    );
    disk.append("d/tmp", b"new").expect("append");
    disk.rename("d/tmp", "d/live").expect("rename");
    disk.sync("d/live").expect("sync");
    disk.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(disk.list("d"), Ok(vec!["live".to_string()]));
}

#[test]
fn the_power_loss_check_catches_lost_synced_bytes_and_invented_bytes() {
    let mut reference = Reference::default();
    let mut disk = SimDisk::default();
    reference.append("d/a", b"synced").expect("append");
    disk.append("d/a", b"synced").expect("append");
    reference.sync("d/a").expect("sync");
    disk.sync("d/a").expect("sync");
    let mut planted = disk.clone();
    planted.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
    planted.corrupt_byte("d/a", 2, 0).expect("corrupt");
    let error =
        reference.clone().check_power_loss(&mut planted).expect_err("corrupted synced bytes are caught");
    assert!(error.contains("synced bytes"), "{error}");
    let mut invented = disk.clone();
    invented.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
    invented.append("d/a", b"!").expect("append");
    let error =
        reference.clone().check_power_loss(&mut invented).expect_err("bytes never written are caught");
    assert!(error.contains("prefix of unsynced appends"), "{error}");
}

#[test]
fn the_view_check_catches_a_crash_that_loses_the_page_cache() {
    // Plant the bug the process-crash rule exists to catch: a crash that behaves as a power loss.
    let mut reference = Reference::default();
    let mut disk = SimDisk::default();
    reference.append("d/a", b"cached only").expect("append");
    disk.append("d/a", b"cached only").expect("append");
    disk.power_loss(&mut ChaCha8Rng::seed_from_u64(1));
    let error = reference.check_same_view(&mut disk).expect_err("a lost page cache is caught");
    assert!(error.contains("d/a"), "{error}");
}
