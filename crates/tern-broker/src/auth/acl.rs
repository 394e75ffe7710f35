//! ACL files in mosquitto's format.
//!
//! ```text
//! # Lines before any `user` line apply to anonymous clients (no username).
//! topic read public/#
//!
//! user alice                    # the rules below, up to the next `user` line, are alice's
//! topic readwrite home/alice/#
//! topic deny home/alice/secret  # deny beats any grant
//! topic sensors/+               # no access word: readwrite
//!
//! # Patterns apply to every client, wherever they stand; %c is the client identifier and
//! # %u the username, each the only text of its level.
//! pattern write devices/%c/status
//! pattern read inbox/%u/#
//! ```
//!
//! With an ACL file, whatever is not granted is denied. Read access is checked on SUBSCRIBE
//! (a rule must cover every topic the filter can match) and again on each delivery (the
//! message's topic, retained messages included); write access on PUBLISH and on the Will
//! when it is published (a denied Will is dropped). Matching follows the `$` rule: a rule starting with a wildcard does not grant
//! `$SYS/...` (grant it with a rule such as `topic read $SYS/#`). A client identifier or
//! username containing `+`, `#` or `/` never matches a `%c` / `%u` level.

use std::collections::HashMap;
use std::path::Path;

use tern_topic::validate_topic_filter;

use super::{Access, AuthFileError, Identity};

/// The access a rule gives (or takes away: `deny`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn covers(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite | Grant::Deny, _)
                | (Grant::Read, Access::Read | Access::Subscribe)
                | (Grant::Write, Access::Write)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    grant: Grant,
    levels: Vec<String>,
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Parses the text of an ACL file.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Syntax`] naming the first bad line.
    pub fn parse(text: &str) -> Result<AclFile, AuthFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| AuthFileError::syntax(number + 1, reason);
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(bad("`user` needs a username"));
                    }
                    user = Some(rest.to_owned());
                    acl.users.entry(rest.to_owned()).or_default();
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(&bad)?;
                    match (keyword, &user) {
                        ("pattern", _) => acl.patterns.push(rule),
                        (_, Some(user)) => acl.users.entry(user.clone()).or_default().push(rule),
                        (_, None) => acl.anonymous.push(rule),
                    }
                }
                _ => return Err(bad("expected `user`, `topic` or `pattern`")),
            }
        }
        Ok(acl)
    }

    /// Reads and parses an ACL file.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Io`] or [`AuthFileError::Syntax`], naming the file.
    pub fn read(path: &Path) -> Result<AclFile, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthFileError::io(path, e))?;
        AclFile::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Whether `client` has `access` to `topic` (a topic name, or a filter for
    /// [`Access::Subscribe`]): no `deny` rule applies and some rule grants it.
    pub fn allows(&self, client: &Identity, access: Access, topic: &str) -> bool {
        let own = match &client.username {
            Some(user) => self.users.get(user.as_str()).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let mut granted = false;
        for (rule, pattern) in own
            .iter()
            .map(|r| (r, false))
            .chain(self.patterns.iter().map(|r| (r, true)))
        {
            if !rule.grant.covers(access) || (granted && rule.grant != Grant::Deny) {
                continue;
            }
            // A pattern's %c and %u levels stand for the client's identifier and username.
            let levels = rule.levels.iter().map(|level| match level.as_str() {
                "%c" if pattern => usable(Some(client.client_id.as_str())),
                "%u" if pattern => usable(client.username.as_deref()),
                other => Some(other),
            });
            let hit = match access {
                Access::Subscribe => covers(levels, topic),
                Access::Read | Access::Write => matches(levels, topic),
            };
            if hit {
                if rule.grant == Grant::Deny {
                    return false;
                }
                granted = true;
            }
        }
        granted
    }
}

fn parse_rule(rest: &str) -> Result<Rule, &'static str> {
    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let after = after.trim();
    let (grant, topic) = match first {
        "read" if !after.is_empty() => (Grant::Read, after),
        "write" if !after.is_empty() => (Grant::Write, after),
        "readwrite" if !after.is_empty() => (Grant::ReadWrite, after),
        "deny" if !after.is_empty() => (Grant::Deny, after),
        _ => (Grant::ReadWrite, rest),
    };
    if topic.is_empty() {
        return Err("a rule needs a topic");
    }
    validate_topic_filter(topic).map_err(|_| "not a valid topic filter")?;
    Ok(Rule {
        grant,
        levels: topic.split('/').map(str::to_owned).collect(),
    })
}

/// A substituted level: `None` (matching nothing) for a missing value or one that would
/// widen the rule.
fn usable(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && !v.contains(['+', '#', '/']))
}

/// Whether the rule's levels match the topic name, with the `$` rule. A `None` level
/// matches nothing.
fn matches<'a>(rule: impl Iterator<Item = Option<&'a str>>, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for (i, want) in rule.enumerate() {
        let Some(want) = want else {
            return false;
        };
        if want == "#" {
            return !(i == 0 && topic.starts_with('$'));
        }
        let Some(level) = levels.next() else {
            return false;
        };
        if want == "+" {
            if i == 0 && level.starts_with('$') {
                return false;
            }
        } else if want != level {
            return false;
        }
    }
    levels.next().is_none()
}

/// Whether every topic the filter matches is matched by the rule's levels.
fn covers<'a>(rule: impl Iterator<Item = Option<&'a str>>, filter: &str) -> bool {
    let mut levels = filter.split('/');
    for (i, want) in rule.enumerate() {
        let Some(want) = want else {
            return false;
        };
        let dollar = i == 0 && filter.starts_with('$');
        if want == "#" {
            return !dollar;
        }
        let Some(level) = levels.next() else {
            return false;
        };
        match (want, level) {
            (_, "#") => return false,
            ("+", _) if dollar => return false,
            ("+", _) => {}
            (want, level) if want == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client_id: &str, username: Option<&str>) -> Identity {
        Identity {
            client_id: client_id.to_owned(),
            username: username.map(str::to_owned),
        }
    }

    const FILE: &str = "# comment\n\
        topic read public/#\n\
        \n\
        user alice\n\
        topic readwrite home/alice/#\n\
        topic deny home/alice/secret\n\
        topic sensors/+\n\
        topic write $SYS/broker/log\n\
        user bob\n\
        topic read home/#\n\
        pattern write devices/%c/status\n\
        pattern read inbox/%u/#\n";

    #[test]
    fn mosquitto_semantics() {
        let acl = AclFile::parse(FILE).unwrap();
        let anon = id("anon-1", None);
        let alice = id("a1", Some("alice"));
        let bob = id("b1", Some("bob"));
        let carol = id("c1", Some("carol"));
        // Rules before any `user` line: anonymous clients only.
        assert!(acl.allows(&anon, Access::Read, "public/news"));
        assert!(!acl.allows(&anon, Access::Write, "public/news"));
        assert!(!acl.allows(&alice, Access::Read, "public/news"));
        // A user's block.
        assert!(acl.allows(&alice, Access::Write, "home/alice/kitchen"));
        assert!(acl.allows(&alice, Access::Read, "home/alice"));
        assert!(!acl.allows(&alice, Access::Read, "home/alice/secret"));
        assert!(!acl.allows(&alice, Access::Write, "home/bob/kitchen"));
        assert!(acl.allows(&alice, Access::Write, "sensors/t1"));
        assert!(!acl.allows(&alice, Access::Write, "sensors/t1/x"));
        assert!(acl.allows(&bob, Access::Read, "home/alice/kitchen"));
        assert!(!acl.allows(&bob, Access::Write, "home/alice/kitchen"));
        // Nothing granted: denied.
        assert!(!acl.allows(&carol, Access::Read, "home/x"));
        // Patterns: everyone, with substitution.
        assert!(acl.allows(&carol, Access::Write, "devices/c1/status"));
        assert!(!acl.allows(&carol, Access::Write, "devices/c2/status"));
        assert!(acl.allows(&carol, Access::Read, "inbox/carol/1"));
        assert!(!acl.allows(&anon, Access::Read, "inbox/carol/1"));
        assert!(acl.allows(&anon, Access::Write, "devices/anon-1/status"));
        // A client id that would widen the pattern never matches.
        assert!(!acl.allows(&id("+", None), Access::Write, "devices/+/status"));
        // `$` topics only with an explicit rule.
        assert!(acl.allows(&alice, Access::Write, "$SYS/broker/log"));
        assert!(!acl.allows(&bob, Access::Read, "$SYS/broker/uptime"));
    }

    #[test]
    fn subscribe_needs_a_covering_rule() {
        let acl = AclFile::parse(FILE).unwrap();
        let alice = id("a1", Some("alice"));
        let bob = id("b1", Some("bob"));
        assert!(acl.allows(&bob, Access::Subscribe, "home/#"));
        assert!(acl.allows(&bob, Access::Subscribe, "home/+/kitchen"));
        assert!(!acl.allows(&bob, Access::Subscribe, "#"));
        assert!(!acl.allows(&bob, Access::Subscribe, "+/alice"));
        assert!(acl.allows(&alice, Access::Subscribe, "sensors/+"));
        assert!(acl.allows(&alice, Access::Subscribe, "sensors/t1"));
        assert!(!acl.allows(&alice, Access::Subscribe, "sensors/#"));
        // Wholly inside a denied topic.
        assert!(!acl.allows(&alice, Access::Subscribe, "home/alice/secret"));
        assert!(acl.allows(&alice, Access::Subscribe, "home/alice/#"));
        let all = AclFile::parse("topic read #\n").unwrap();
        let anon = id("x", None);
        assert!(all.allows(&anon, Access::Subscribe, "#"));
        assert!(!all.allows(&anon, Access::Subscribe, "$SYS/#"));
        assert!(!all.allows(&anon, Access::Read, "$SYS/broker/uptime"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line) in [
            ("topic read a/#\nbogus line\n", 2),
            ("user\n", 1),
            ("\n\ntopic read a/#/b\n", 3),
            ("topic\n", 1),
        ] {
            match AclFile::parse(text) {
                Err(AuthFileError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // A topic called `read` is a topic, not an access word.
        let acl = AclFile::parse("topic read\n").unwrap();
        assert!(acl.allows(&id("x", None), Access::Write, "read"));
    }
}
