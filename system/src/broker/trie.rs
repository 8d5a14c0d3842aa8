//! The subscription trie: topic filters by level, with `+`, `#`, the `$`-topic rule and shared
//! subscription groups (`$share/{group}/{filter}`) picked round-robin.
//!
//! This module owns which session subscribed to which filter with which options, indexed for
//! matching a topic name in time proportional to its levels and the matches. It must never hold
//! messages or session state, and never iterate a hashed map (lookups only), so that matching is
//! deterministic.

use rustc_hash::FxHashMap;

use super::session::SessionKey;
use crate::mqtt::SubscriptionOptions;

/// Above this many subscribers a node keeps a position index so that removal stays O(1) even for
/// a filter a million sessions share; below it a linear scan is cheaper than the index.
const SUBSCRIBER_INDEX_THRESHOLD: usize = 16;

/// One subscription as the trie stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TrieEntry {
    pub session: SessionKey,
    pub options: SubscriptionOptions,
    /// The v5 Subscription Identifier given with the SUBSCRIBE, if any.
    pub identifier: Option<u32>,
}

/// The subscribers of one node, in insertion order (swap-removal keeps it deterministic).
#[derive(Default)]
struct Subscribers {
    entries: Vec<TrieEntry>,
    /// Position of each session in `entries`, built only for large nodes.
    positions: Option<Box<FxHashMap<SessionKey, u32>>>,
}

impl Subscribers {
    fn position(&self, session: SessionKey) -> Option<usize> {
        match &self.positions {
            Some(positions) => positions.get(&session).map(|&position| position as usize),
            None => self.entries.iter().position(|entry| entry.session == session),
        }
    }

    /// Inserts or replaces; true when the session had no entry before.
    fn upsert(&mut self, entry: TrieEntry) -> bool {
        if let Some(position) = self.position(entry.session) {
            assert_eq!(self.entries[position].session, entry.session);
            self.entries[position] = entry;
            return false;
        }
        // Exact growth while small: a one-subscriber node (the common case) holds one slot,
        // not the four a plain push would reserve.
        if self.entries.len() < 4 {
            self.entries.reserve_exact(1);
        }
        self.entries.push(entry);
        let position = u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 subscribers per node");
        if let Some(positions) = &mut self.positions {
            positions.insert(entry.session, position);
        } else if self.entries.len() > SUBSCRIBER_INDEX_THRESHOLD {
            let positions: FxHashMap<SessionKey, u32> = self
                .entries
                .iter()
                .enumerate()
                .map(|(index, entry)| (entry.session, u32::try_from(index).expect("bounded")))
                .collect();
            self.positions = Some(Box::new(positions));
        }
        true
    }

    fn remove(&mut self, session: SessionKey) -> bool {
        let Some(position) = self.position(session) else {
            return false;
        };
        let removed = self.entries.swap_remove(position);
        assert_eq!(removed.session, session);
        if let Some(positions) = &mut self.positions {
            positions.remove(&session);
            if let Some(moved) = self.entries.get(position) {
                positions.insert(moved.session, u32::try_from(position).expect("bounded"));
            }
            if self.entries.len() <= SUBSCRIBER_INDEX_THRESHOLD / 2 {
                self.positions = None;
            }
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Above this many children a node switches from a vector to a hash map.
const CHILDREN_MAP_THRESHOLD: usize = 8;

/// The exact-level children of a node. Most nodes have one or two children, where a vector of
/// exactly that size costs a fraction of a hash map's minimum table; a node like `devices/` with
/// a million children gets the map.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, u32)>),
    Many(FxHashMap<Box<str>, u32>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn get(&self, level: &str) -> Option<u32> {
        match self {
            Children::Few(children) => {
                children.iter().find(|(name, _)| &**name == level).map(|&(_, index)| index)
            }
            Children::Many(children) => children.get(level).copied(),
        }
    }

    fn insert(&mut self, level: &str, index: u32) {
        assert!(self.get(level).is_none(), "level {level:?} inserted twice");
        match self {
            Children::Few(children) if children.len() < CHILDREN_MAP_THRESHOLD => {
                children.reserve_exact(1);
                children.push((level.into(), index));
            }
            Children::Few(children) => {
                let mut map: FxHashMap<Box<str>, u32> = std::mem::take(children).into_iter().collect();
                map.insert(level.into(), index);
                *self = Children::Many(map);
            }
            Children::Many(children) => {
                children.insert(level.into(), index);
            }
        }
    }

    fn remove(&mut self, level: &str) -> Option<u32> {
        match self {
            Children::Few(children) => {
                let position = children.iter().position(|(name, _)| &**name == level)?;
                let (_, index) = children.swap_remove(position);
                children.shrink_to_fit();
                Some(index)
            }
            Children::Many(children) => children.remove(level),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(children) => children.is_empty(),
            Children::Many(children) => children.is_empty(),
        }
    }
}

/// The members of one shared subscription group on one filter.
struct SharedGroup {
    name: Box<str>,
    members: Subscribers,
    /// Round-robin cursor into `members.entries`.
    next_member: usize,
}

/// One filter level. Nodes know neither their parent nor their own level text: removal walks
/// the filter from the root anyway, which saves two fields and an allocation per node.
#[derive(Default)]
struct Node {
    children: Children,
    /// The `+` child, 0 when absent (the root is never a child).
    plus_child: u32,
    /// The `#` child, 0 when absent.
    hash_child: u32,
    subscribers: Subscribers,
    shared_groups: Vec<SharedGroup>,
}

impl Node {
    fn is_unused(&self) -> bool {
        self.children.is_empty()
            && self.plus_child == 0
            && self.hash_child == 0
            && self.subscribers.is_empty()
            && self.shared_groups.is_empty()
    }
}

/// Subscriptions of all sessions, by filter level.
pub(super) struct SubscriptionTrie {
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    subscription_count: usize,
}

const ROOT: u32 = 0;

impl SubscriptionTrie {
    pub fn new() -> SubscriptionTrie {
        SubscriptionTrie { nodes: vec![Node::default()], free_nodes: Vec::new(), subscription_count: 0 }
    }

    /// Subscriptions stored (shared group memberships included).
    pub fn len(&self) -> usize {
        self.subscription_count
    }

    fn child(&self, node: u32, level: &str) -> Option<u32> {
        let node = &self.nodes[node as usize];
        let child = match level {
            "+" => node.plus_child,
            "#" => node.hash_child,
            _ => return node.children.get(level),
        };
        (child != 0).then_some(child)
    }

    fn child_or_insert(&mut self, parent: u32, level: &str) -> u32 {
        if let Some(child) = self.child(parent, level) {
            return child;
        }
        let node = Node::default();
        let index = match self.free_nodes.pop() {
            Some(index) => {
                assert!(self.nodes[index as usize].is_unused());
                self.nodes[index as usize] = node;
                index
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 trie nodes")
            }
        };
        assert_ne!(index, ROOT);
        let parent_node = &mut self.nodes[parent as usize];
        match level {
            "+" => parent_node.plus_child = index,
            "#" => parent_node.hash_child = index,
            _ => {
                parent_node.children.insert(level, index);
            }
        }
        index
    }

    /// Adds or replaces the subscription of `entry.session` to `filter` (without any `$share/`
    /// prefix), in `group` when shared. True when it is new.
    pub fn subscribe(&mut self, filter: &str, group: Option<&str>, entry: TrieEntry) -> bool {
        assert!(!filter.is_empty(), "validated filters are never empty");
        let mut node = ROOT;
        for level in filter.split('/') {
            node = self.child_or_insert(node, level);
        }
        let node = &mut self.nodes[node as usize];
        let is_new = match group {
            None => node.subscribers.upsert(entry),
            Some(group) => match node.shared_groups.iter_mut().find(|shared| &*shared.name == group) {
                Some(shared) => shared.members.upsert(entry),
                None => {
                    let mut members = Subscribers::default();
                    members.upsert(entry);
                    node.shared_groups.push(SharedGroup { name: group.into(), members, next_member: 0 });
                    true
                }
            },
        };
        if is_new {
            self.subscription_count += 1;
        }
        is_new
    }

    /// Removes the subscription of `session` to `filter` (in `group`); true when it existed.
    /// Nodes left without any use are freed, so the trie shrinks back.
    pub fn unsubscribe(&mut self, filter: &str, group: Option<&str>, session: SessionKey) -> bool {
        // The path from the root, to free nodes left unused on the way back up.
        let mut path = vec![ROOT];
        for level in filter.split('/') {
            let Some(child) = self.child(*path.last().expect("starts at the root"), level) else {
                return false;
            };
            path.push(child);
        }
        let index = *path.last().expect("non-empty");
        let node = &mut self.nodes[index as usize];
        let removed = match group {
            None => node.subscribers.remove(session),
            Some(group) => match node.shared_groups.iter().position(|shared| &*shared.name == group) {
                Some(group_index) => {
                    let shared = &mut node.shared_groups[group_index];
                    let removed = shared.members.remove(session);
                    if shared.members.is_empty() {
                        node.shared_groups.swap_remove(group_index);
                    }
                    removed
                }
                None => false,
            },
        };
        if removed {
            assert!(self.subscription_count > 0);
            self.subscription_count -= 1;
            self.prune(filter, &path);
        }
        removed
    }

    /// Frees the nodes of `path` (the walk of `filter` from the root) from the leaf upwards
    /// while they are unused.
    fn prune(&mut self, filter: &str, path: &[u32]) {
        let levels: Vec<&str> = filter.split('/').collect();
        assert_eq!(levels.len() + 1, path.len());
        for depth in (1..path.len()).rev() {
            let index = path[depth];
            if !self.nodes[index as usize].is_unused() {
                return;
            }
            let parent = &mut self.nodes[path[depth - 1] as usize];
            match levels[depth - 1] {
                "+" => {
                    assert_eq!(parent.plus_child, index);
                    parent.plus_child = 0;
                }
                "#" => {
                    assert_eq!(parent.hash_child, index);
                    parent.hash_child = 0;
                }
                level => {
                    let removed = parent.children.remove(level);
                    assert_eq!(removed, Some(index));
                }
            }
            // Reset rather than keep: an emptied node may still hold allocated capacity.
            self.nodes[index as usize] = Node::default();
            self.free_nodes.push(index);
        }
    }

    /// Appends every subscription matching `topic` to `matches`: all plain subscribers, and one
    /// member per shared group (round-robin, preferring members for which `is_online` holds).
    pub fn matches(
        &mut self,
        topic: &str,
        is_online: impl Fn(SessionKey) -> bool,
        stack: &mut Vec<(u32, usize)>,
        matches: &mut Vec<TrieEntry>,
    ) {
        assert!(!topic.is_empty(), "validated topic names are never empty");
        stack.clear();
        let levels_total = topic.split('/').count();
        let dollar_topic = topic.starts_with('$');
        stack.push((ROOT, 0));
        // Levels are looked up by index; splitting once up front keeps the walk allocation-free
        // beyond the reusable stack.
        let mut level_starts: [&str; 32] = [""; 32];
        let levels_owned: Vec<&str>;
        let levels: &[&str] = if levels_total <= level_starts.len() {
            for (slot, level) in level_starts.iter_mut().zip(topic.split('/')) {
                *slot = level;
            }
            &level_starts[..levels_total]
        } else {
            levels_owned = topic.split('/').collect();
            &levels_owned
        };
        while let Some((index, depth)) = stack.pop() {
            // Wildcards at the first level never match topics that start with `$` (MQTT-4.7.2-1).
            let wildcards_allowed = !(depth == 0 && dollar_topic);
            if wildcards_allowed && self.nodes[index as usize].hash_child != 0 {
                // `a/#` matches `a` itself as well as everything below it.
                let hash_child = self.nodes[index as usize].hash_child;
                self.collect(hash_child, &is_online, matches);
            }
            if depth == levels.len() {
                self.collect(index, &is_online, matches);
                continue;
            }
            let node = &self.nodes[index as usize];
            if wildcards_allowed && node.plus_child != 0 {
                stack.push((node.plus_child, depth + 1));
            }
            if let Some(child) = node.children.get(levels[depth]) {
                stack.push((child, depth + 1));
            }
        }
    }

    fn collect(&mut self, index: u32, is_online: &impl Fn(SessionKey) -> bool, matches: &mut Vec<TrieEntry>) {
        let node = &mut self.nodes[index as usize];
        matches.extend_from_slice(&node.subscribers.entries);
        for shared in &mut node.shared_groups {
            let members = &shared.members.entries;
            assert!(!members.is_empty(), "empty groups are removed");
            // Round-robin from the cursor, skipping offline members when an online one exists,
            // so a stopped consumer does not hoard the group's messages in its queue.
            let start = shared.next_member % members.len();
            let chosen = (0..members.len())
                .map(|offset| (start + offset) % members.len())
                .find(|&position| is_online(members[position].session))
                .unwrap_or(start);
            matches.push(members[chosen]);
            shared.next_member = chosen + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::QoS;

    fn entry(session: u64) -> TrieEntry {
        TrieEntry {
            session: SessionKey(session),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            identifier: None,
        }
    }

    fn matched(trie: &mut SubscriptionTrie, topic: &str) -> Vec<u64> {
        let mut matches = Vec::new();
        trie.matches(topic, |_| true, &mut Vec::new(), &mut matches);
        let mut sessions: Vec<u64> = matches.iter().map(|entry| entry.session.0).collect();
        sessions.sort_unstable();
        sessions
    }

    #[test]
    fn trie_agrees_with_filter_matches_on_the_spec_examples() {
        let filters = [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "sport/tennis/+",
            "sport/+",
            "+/+",
            "/+",
            "+",
            "$SYS/#",
            "$SYS/monitor/+",
            "+/monitor/Clients",
            "a/b",
        ];
        let topics = [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport",
            "sport/",
            "/finance",
            "$SYS/monitor/Clients",
            "$SYS",
            "a/b",
            "a/c",
            "x",
        ];
        let mut trie = SubscriptionTrie::new();
        for (index, filter) in filters.iter().enumerate() {
            assert!(trie.subscribe(filter, None, entry(index as u64)));
        }
        for topic in topics {
            let expected: Vec<u64> = filters
                .iter()
                .enumerate()
                .filter(|(_, filter)| crate::mqtt::topic::filter_matches(filter, topic))
                .map(|(index, _)| index as u64)
                .collect();
            assert_eq!(matched(&mut trie, topic), expected, "topic {topic}");
        }
        for (index, filter) in filters.iter().enumerate() {
            assert!(trie.unsubscribe(filter, None, SessionKey(index as u64)));
            assert!(!trie.unsubscribe(filter, None, SessionKey(index as u64)));
        }
        assert_eq!(trie.len(), 0);
        assert!(trie.nodes[ROOT as usize].is_unused(), "all nodes pruned");
    }

    #[test]
    fn large_nodes_index_positions_and_remove_in_any_order() {
        let mut trie = SubscriptionTrie::new();
        for session in 0..100 {
            assert!(trie.subscribe("fan/out", None, entry(session)));
        }
        assert!(!trie.subscribe("fan/out", None, entry(42)), "re-subscribe replaces");
        for session in (0..100).step_by(3) {
            assert!(trie.unsubscribe("fan/out", None, SessionKey(session)));
        }
        let expected: Vec<u64> = (0..100).filter(|session| session % 3 != 0).collect();
        assert_eq!(matched(&mut trie, "fan/out"), expected);
        assert_eq!(trie.len(), expected.len());
    }

    #[test]
    fn nodes_with_many_children_switch_to_a_map_and_prune_back() {
        let mut trie = SubscriptionTrie::new();
        for device in 0..20u64 {
            assert!(trie.subscribe(&format!("dev/{device}/cmd"), None, entry(device)));
        }
        let dev = trie.child(ROOT, "dev").expect("dev node");
        assert!(matches!(trie.nodes[dev as usize].children, Children::Many(_)));
        for device in 0..20u64 {
            assert_eq!(matched(&mut trie, &format!("dev/{device}/cmd")), vec![device]);
        }
        assert!(matched(&mut trie, "dev/20/cmd").is_empty());
        for device in 0..20u64 {
            assert!(trie.unsubscribe(&format!("dev/{device}/cmd"), None, SessionKey(device)));
        }
        assert!(trie.nodes[ROOT as usize].is_unused(), "all nodes pruned");
        assert_eq!(trie.free_nodes.len(), trie.nodes.len() - 1, "every node but the root is free");
    }

    #[test]
    fn shared_groups_deliver_round_robin_and_prefer_online_members() {
        let mut trie = SubscriptionTrie::new();
        for session in 1..=3 {
            trie.subscribe("jobs/+", Some("workers"), entry(session));
        }
        let mut picks = Vec::new();
        for _ in 0..6 {
            let mut matches = Vec::new();
            trie.matches("jobs/a", |_| true, &mut Vec::new(), &mut matches);
            assert_eq!(matches.len(), 1);
            picks.push(matches[0].session.0);
        }
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
        let mut matches = Vec::new();
        trie.matches("jobs/a", |session| session == SessionKey(3), &mut Vec::new(), &mut matches);
        assert_eq!(matches[0].session, SessionKey(3));
    }
}
