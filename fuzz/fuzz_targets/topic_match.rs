//! Topic parsing and matching against the reference implementation.
//!
//! The input is a script, one command per line (`\n`), so that seeds stay readable:
//!
//! - `S<k><filter>`: subscribe subscriber byte `k` to `filter` (plain or `$share/...`)
//! - `U<k><filter>`: unsubscribe it; `X<k>`: remove every subscription of `k`
//! - `R<name>` / `D<name>`: retain / delete a message under `name`
//! - `T<topic>`: a topic is published: the trie must agree with brute force over
//!   [`tern_topic::matches`]; `F<filter>`: a subscription asks for retained messages: the
//!   retained store must agree with brute force
//!
//! Every string is also checked against an independent validator written from the spec, and
//! at the end everything is removed and both structures must be empty.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tern_topic::{
    Match, RetainedTree, SubscriptionFilter, SubscriptionTree, TopicFilter, TopicName, matches,
};

/// Section 4.7.3: non-empty, at most 65,535 bytes, no U+0000.
fn common_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 65_535 && !s.contains('\0')
}

/// [MQTT-4.7.0-1]: no wildcard in a name.
fn name_ok(s: &str) -> bool {
    common_ok(s) && !s.contains('+') && !s.contains('#')
}

/// [MQTT-4.7.1-1], [MQTT-4.7.1-2]: wildcards fill a level, `#` only the last one.
fn filter_ok(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    common_ok(s)
        && levels.iter().enumerate().all(|(i, level)| {
            (!level.contains('+') || *level == "+")
                && (!level.contains('#') || (*level == "#" && i == levels.len() - 1))
        })
}

/// Section 4.8.2: `(ShareName, filter)` of a valid shared subscription, `None` for a plain
/// filter, `Err` when invalid.
fn shared_ok(s: &str) -> Result<Option<(&str, &str)>, ()> {
    let Some(rest) = s.strip_prefix("$share/") else {
        return if filter_ok(s) { Ok(None) } else { Err(()) };
    };
    let (name, filter) = rest.split_once('/').ok_or(())?;
    let name_valid = !name.is_empty() && !name.contains(['+', '#']);
    if common_ok(s) && name_valid && filter_ok(filter) {
        Ok(Some((name, filter)))
    } else {
        Err(())
    }
}

/// Plain: (filter, key) -> value. Shared: (ShareName, filter) -> members in order.
#[derive(Default)]
struct Model {
    plain: BTreeMap<(String, u8), u32>,
    groups: BTreeMap<(String, String), Vec<(u8, u32)>>,
}

fuzz_target!(|data: &[u8]| {
    let script = String::from_utf8_lossy(data);
    let mut tree = SubscriptionTree::<u8, u32>::new();
    let mut retained = RetainedTree::new();
    let mut model = Model::default();
    let mut names = BTreeMap::new();

    for (counter, line) in script.split('\n').take(256).enumerate() {
        let counter = counter as u32;
        let mut chars = line.chars();
        let Some(command) = chars.next() else {
            continue;
        };
        let rest = chars.as_str();
        match command {
            'S' | 'U' | 'X' => {
                let mut chars = rest.chars();
                let Some(key) = chars.next() else { continue };
                let key = key as u32 as u8;
                let text = chars.as_str();
                if command == 'X' {
                    let before =
                        model.plain.len() + model.groups.values().map(Vec::len).sum::<usize>();
                    model.plain.retain(|(_, k), _| *k != key);
                    for members in model.groups.values_mut() {
                        members.retain(|(k, _)| *k != key);
                    }
                    model.groups.retain(|_, members| !members.is_empty());
                    let after =
                        model.plain.len() + model.groups.values().map(Vec::len).sum::<usize>();
                    assert_eq!(tree.remove_subscriber(&key), before - after);
                    continue;
                }
                let parsed = SubscriptionFilter::new(text);
                let expected = shared_ok(text);
                assert_eq!(
                    parsed.is_ok(),
                    expected.is_ok(),
                    "validity of {text:?}: {parsed:?}"
                );
                let Ok(filter) = parsed else { continue };
                match (&filter, expected.unwrap()) {
                    (SubscriptionFilter::Plain(f), None) => assert_eq!(f.as_str(), text),
                    (SubscriptionFilter::Shared(s), Some((name, f))) => {
                        assert_eq!((s.share_name(), s.filter().as_str()), (name, f));
                        assert_eq!(s.to_string(), text);
                    }
                    other => panic!("{text:?} parsed as {other:?}"),
                }
                let model_key = |s: &SubscriptionFilter| match s {
                    SubscriptionFilter::Plain(f) => (None, f.to_string()),
                    SubscriptionFilter::Shared(s) => {
                        (Some(s.share_name().to_string()), s.filter().to_string())
                    }
                };
                let (share, f) = model_key(&filter);
                if command == 'S' {
                    let old = match share {
                        None => model.plain.insert((f, key), counter),
                        Some(name) => {
                            let members = model.groups.entry((name, f)).or_default();
                            match members.iter_mut().find(|(k, _)| *k == key) {
                                Some((_, v)) => Some(std::mem::replace(v, counter)),
                                None => {
                                    members.push((key, counter));
                                    None
                                }
                            }
                        }
                    };
                    assert_eq!(tree.insert(&filter, key, counter), old);
                } else {
                    let old = match share {
                        None => model.plain.remove(&(f, key)),
                        Some(name) => {
                            let group = (name, f);
                            let members = model.groups.get_mut(&group);
                            let removed = members.and_then(|members| {
                                let at = members.iter().position(|(k, _)| *k == key)?;
                                Some(members.remove(at).1)
                            });
                            if model.groups.get(&group).is_some_and(Vec::is_empty) {
                                model.groups.remove(&group);
                            }
                            removed
                        }
                    };
                    assert_eq!(tree.remove(&filter, &key), old);
                }
            }
            'R' | 'D' => {
                let parsed = TopicName::new(rest);
                assert_eq!(parsed.is_ok(), name_ok(rest), "validity of name {rest:?}");
                let Ok(name) = parsed else { continue };
                if command == 'R' {
                    assert_eq!(
                        retained.insert(name, counter),
                        names.insert(rest.to_string(), counter)
                    );
                } else {
                    assert_eq!(retained.remove(rest), names.remove(rest));
                }
            }
            'T' => {
                // Any string: the trie reads it level by level, as the reference does.
                let mut plain = Vec::new();
                let mut groups = Vec::new();
                tree.for_each_match(rest, |m| match m {
                    Match::Subscription { key, value } => plain.push((*key, *value)),
                    Match::Shared(group) => groups.push((
                        group.share_name().to_string(),
                        group.filter().to_string(),
                        group.members().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
                    )),
                });
                plain.sort_unstable();
                groups.sort();
                let mut expected_plain: Vec<_> = model
                    .plain
                    .iter()
                    .filter(|((f, _), _)| matches(f, rest))
                    .map(|((_, k), v)| (*k, *v))
                    .collect();
                expected_plain.sort_unstable();
                let expected_groups: Vec<_> = model
                    .groups
                    .iter()
                    .filter(|((_, f), _)| matches(f, rest))
                    .map(|((n, f), m)| (n.clone(), f.clone(), m.clone()))
                    .collect();
                assert_eq!(plain, expected_plain, "topic {rest:?}");
                assert_eq!(groups, expected_groups, "topic {rest:?}");
            }
            'F' => {
                let Ok(filter) = TopicFilter::new(rest) else {
                    continue;
                };
                let mut found: Vec<_> = retained
                    .matching(&filter)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), *v))
                    .collect();
                found.sort();
                let expected: Vec<_> = names
                    .iter()
                    .filter(|(n, _)| matches(&filter, n))
                    .map(|(n, v)| (n.clone(), *v))
                    .collect();
                assert_eq!(found, expected, "retained filter {rest:?}");
            }
            _ => {}
        }
    }

    let total = model.plain.len() + model.groups.values().map(Vec::len).sum::<usize>();
    assert_eq!(tree.len(), total);
    assert_eq!(retained.len(), names.len());
    let removed: usize = (0..=u8::MAX).map(|key| tree.remove_subscriber(&key)).sum();
    assert_eq!(removed, total);
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 0);
    assert_eq!(tree.level_count(), 0);
    assert_eq!(tree.group_count(), 0);
    for name in names.keys() {
        assert!(retained.remove(name).is_some());
    }
    assert_eq!(retained.node_count(), 0);
});
