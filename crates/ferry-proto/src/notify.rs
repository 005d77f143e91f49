//! Which ends of a task someone is told about: `ferry transfer --notify`
//! (e-mail) and `ferry webhook add --events` (webhooks) spell them alike,
//! and the hub stores them in the same words.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One kind of news about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// It ended SUCCEEDED.
    Succeeded,
    /// It ended FAILED.
    Failed,
    /// It waits and moves nothing: an endpoint is offline or paused.
    Inactive,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 3] = [Self::Succeeded, Self::Failed, Self::Inactive];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Inactive => "inactive",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Succeeded => 1,
            Self::Failed => 2,
            Self::Inactive => 4,
        }
    }
}

/// A set of [`NotifyEvent`]s. Written `succeeded,failed` (in this order,
/// whatever order it was given in), `off` when empty; `on` reads as the
/// default, succeeded and failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotifyEvents(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a notification setting: give on, off, or a comma-separated list of succeeded, failed, inactive"
)]
pub struct NotifyParseError(String);

/// Longest setting accepted (the longest meaningful one is 24 bytes).
const MAX_TEXT: usize = 64;

impl NotifyEvents {
    pub const NONE: NotifyEvents = NotifyEvents(0);
    /// What `--notify on` and no `--notify` mean.
    pub const DEFAULT: NotifyEvents = NotifyEvents(1 | 2);
    pub const ALL: NotifyEvents = NotifyEvents(1 | 2 | 4);

    pub fn parse(text: &str) -> Result<Self, NotifyParseError> {
        let bad = || NotifyParseError(text.chars().take(MAX_TEXT).collect());
        if text.len() > MAX_TEXT {
            return Err(bad());
        }
        match text {
            "on" => return Ok(Self::DEFAULT),
            "off" => return Ok(Self::NONE),
            _ => {}
        }
        let mut set = 0u8;
        for word in text.split(',') {
            let event = NotifyEvent::ALL
                .into_iter()
                .find(|e| e.as_str() == word)
                .ok_or_else(bad)?;
            set |= event.bit();
        }
        Ok(Self(set))
    }

    pub fn contains(self, event: NotifyEvent) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for NotifyEvents {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for NotifyEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("off");
        }
        let mut first = true;
        for event in NotifyEvent::ALL {
            if self.contains(event) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(event.as_str())?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NotifyEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifyEvents({self})")
    }
}

impl Serialize for NotifyEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NotifyEvents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Its written form: `on`, `off`, or a comma-separated list.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for NotifyEvents {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NotifyEvents".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_TEXT,
            "description": "on, off, or a comma-separated list of succeeded, failed, inactive"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_to_one_canonical_spelling() {
        for (given, shown) in [
            ("on", "succeeded,failed"),
            ("off", "off"),
            ("inactive,succeeded", "succeeded,inactive"),
            ("failed", "failed"),
            ("succeeded,failed,inactive", "succeeded,failed,inactive"),
            ("failed,failed", "failed"),
        ] {
            let parsed = NotifyEvents::parse(given).unwrap();
            assert_eq!(parsed.to_string(), shown, "{given}");
            assert_eq!(NotifyEvents::parse(shown).unwrap(), parsed);
        }
        assert_eq!(NotifyEvents::default(), NotifyEvents::parse("on").unwrap());
    }

    #[test]
    fn anything_else_is_refused_with_what_to_give() {
        for bad in [
            "",
            "ON",
            "succeeded,",
            "canceled",
            "on,failed",
            &"x".repeat(100),
        ] {
            let e = NotifyEvents::parse(bad).unwrap_err().to_string();
            assert!(e.contains("give on, off"), "{bad}: {e}");
            assert!(e.len() < 200, "bounded: {e}");
        }
    }

    #[test]
    fn json_carries_the_canonical_words() {
        let set = NotifyEvents::parse("inactive,failed").unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, "\"failed,inactive\"");
        assert_eq!(serde_json::from_str::<NotifyEvents>(&json).unwrap(), set);
        assert!(serde_json::from_str::<NotifyEvents>("\"sometimes\"").is_err());
    }
}
