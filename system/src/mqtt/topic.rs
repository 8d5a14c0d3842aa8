//! Topic names and topic filters (spec 4.7): validation, wildcard matching, `$`-topic rules and
//! shared-subscription parsing.
//!
//! This module owns the rules every part of the stack applies to topic strings. It must never
//! keep state; the broker's subscription trie builds on these functions.

use thiserror::Error;

/// Why a topic name or filter is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long (MQTT-4.7.3-1).
    #[error("topic is empty")]
    Empty,
    /// Topic names must not contain `+` or `#` (MQTT-4.7.0-1, MQTT-3.3.2-2).
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `+` must occupy a whole level (MQTT-4.7.1-2).
    #[error("'+' does not occupy an entire level")]
    SingleLevelWildcardNotAlone,
    /// `#` must occupy a whole level and be the last character (MQTT-4.7.1-1).
    #[error("'#' is not alone in the last level")]
    MultiLevelWildcardNotLast,
    /// Topics must not contain U+0000 (MQTT-4.7.3-2).
    #[error("topic contains the null character")]
    NullCharacter,
    /// A `$share/{group}/{filter}` with an empty group, a wildcard in the group or no filter
    /// (spec 4.8.2).
    #[error("malformed shared subscription")]
    BadSharedSubscription,
}

/// Checks a topic name as carried in PUBLISH or a Will.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter as carried in SUBSCRIBE or UNSUBSCRIBE, including the
/// `$share/{group}/{filter}` form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    let filter = match parse_shared_subscription(filter)? {
        Some((_group, inner)) => inner,
        None => filter,
    };
    let level_count = filter.split('/').count();
    for (level_index, level) in filter.split('/').enumerate() {
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardNotAlone);
        }
        if level.contains('#') && (level != "#" || level_index + 1 != level_count) {
            return Err(TopicError::MultiLevelWildcardNotLast);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}` into `(group, filter)`; `Ok(None)` for a normal filter.
pub fn parse_shared_subscription(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::BadSharedSubscription);
    };
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::BadSharedSubscription);
    }
    Ok(Some((group, inner)))
}

/// True when a filter contains `+` or `#`.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether a valid (non-shared) topic filter matches a valid topic name (spec 4.7). Filters that
/// start with a wildcard do not match names that start with `$` (MQTT-4.7.2-1).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(filter_level), Some(topic_level)) if filter_level == topic_level => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_the_spec_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(filter_matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn validation_rejects_misplaced_wildcards() {
        assert_eq!(validate_topic_filter("sport/tennis#"), Err(TopicError::MultiLevelWildcardNotLast));
        assert_eq!(validate_topic_filter("sport/#/ranking"), Err(TopicError::MultiLevelWildcardNotLast));
        assert_eq!(validate_topic_filter("sport+"), Err(TopicError::SingleLevelWildcardNotAlone));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter("$share/g"), Err(TopicError::BadSharedSubscription));
        assert_eq!(validate_topic_filter("$share//a"), Err(TopicError::BadSharedSubscription));
        assert!(validate_topic_filter("+/tennis/#").is_ok());
        assert!(validate_topic_filter("$share/group/a/+").is_ok());
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert!(validate_topic_name("/").is_ok());
    }
}
