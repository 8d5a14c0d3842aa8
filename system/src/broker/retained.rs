//! Retained messages (spec 3.3.1.3): the last retained message per topic, bounded in count and
//! bytes, with passive expiry.
//!
//! This module owns the store and its bounds. It must never route or deliver: the broker asks
//! it for the messages matching a new subscription and delivers them itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::session::Message;
use crate::mqtt::topic::{filter_matches, has_wildcard};
use crate::time::Time;

/// What storing a retained message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RetainOutcome {
    /// Stored, new or replacing the topic's previous message.
    Stored,
    /// An empty payload removed the topic's message (or there was none).
    Deleted,
    /// The store is at its count or bytes bound; nothing changed.
    Rejected,
}

pub(super) struct RetainedStore {
    /// Ordered by topic, so a wildcard subscription receives retained messages in a stable order.
    messages: BTreeMap<Arc<str>, Arc<Message>>,
    bytes_total: u64,
    messages_limit: usize,
    bytes_limit: u64,
}

impl RetainedStore {
    pub fn new(messages_limit: usize, bytes_limit: u64) -> RetainedStore {
        RetainedStore { messages: BTreeMap::new(), bytes_total: 0, messages_limit, bytes_limit }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn set(&mut self, message: &Arc<Message>) -> RetainOutcome {
        assert!(message.retain, "only retained messages are stored");
        if message.payload.is_empty() {
            if let Some(old) = self.messages.remove(&message.topic) {
                self.bytes_total -= old.quota_bytes();
            }
            return RetainOutcome::Deleted;
        }
        let replaced = self.messages.get(&message.topic);
        let replaced_bytes = replaced.map_or(0, |old| old.quota_bytes());
        let count_after = self.messages.len() + usize::from(replaced.is_none());
        let bytes_after = self.bytes_total - replaced_bytes + message.quota_bytes();
        if count_after > self.messages_limit || bytes_after > self.bytes_limit {
            return RetainOutcome::Rejected;
        }
        self.messages.insert(message.topic.clone(), message.clone());
        self.bytes_total = bytes_after;
        assert!(self.messages.len() <= self.messages_limit && self.bytes_total <= self.bytes_limit);
        RetainOutcome::Stored
    }

    /// Appends the unexpired retained messages matching a (non-shared) `filter`; expired ones
    /// met on the way are removed.
    pub fn matching(&mut self, filter: &str, now: Time, out: &mut Vec<Arc<Message>>) {
        let start = out.len();
        if has_wildcard(filter) {
            out.extend(
                self.messages
                    .iter()
                    .filter(|(topic, _)| filter_matches(filter, topic))
                    .map(|(_, m)| m.clone()),
            );
        } else if let Some(message) = self.messages.get(filter) {
            out.push(message.clone());
        }
        let mut index = start;
        while index < out.len() {
            if out[index].is_expired(now) {
                let expired = out.remove(index);
                if self.messages.remove(&expired.topic).is_some() {
                    self.bytes_total -= expired.quota_bytes();
                }
            } else {
                index += 1;
            }
        }
    }
}
