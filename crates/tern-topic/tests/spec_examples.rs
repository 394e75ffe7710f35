//! The examples and normative statements of MQTT 5.0 sections 4.7 (topic names and filters)
//! and 4.8.2 (shared subscriptions), each row checked against the reference matcher, the
//! checked types, the subscription trie and the retained store.

use tern_topic::{
    Match, RetainedTree, SharedFilter, SubscriptionFilter, SubscriptionTree, TopicError,
    TopicFilter, TopicName, matches, parse_shared, validate_topic_filter, validate_topic_name,
};

/// Checks one (filter, name, expected) row with every matcher of the crate.
fn check_match(statement: &str, filter: &str, name: &str, expected: bool) {
    assert_eq!(
        matches(filter, name),
        expected,
        "{statement}: matches({filter:?}, {name:?})"
    );

    let topic_filter = TopicFilter::new(filter).unwrap();
    let topic_name = TopicName::new(name).unwrap();
    assert_eq!(
        topic_filter.matches(&topic_name),
        expected,
        "{statement}: TopicFilter"
    );

    let mut tree = SubscriptionTree::new();
    tree.insert(&SubscriptionFilter::Plain(topic_filter.clone()), 1_u32, ());
    assert_eq!(
        tree.matches(name).len(),
        usize::from(expected),
        "{statement}: trie, {filter:?}"
    );

    let shared = SubscriptionFilter::Shared(
        SharedFilter::from_parts("group", topic_filter.clone()).unwrap(),
    );
    let mut tree = SubscriptionTree::new();
    tree.insert(&shared, 1_u32, ());
    assert_eq!(
        tree.matches(name).len(),
        usize::from(expected),
        "{statement}: shared group"
    );

    let mut retained = RetainedTree::new();
    retained.insert(topic_name, ());
    assert_eq!(
        retained.matching(filter).len(),
        usize::from(expected),
        "{statement}: retained"
    );
}

#[test]
fn multi_level_wildcard_examples() {
    // Section 4.7.1.2: `#` matches the parent level and any number of child levels.
    let rows = [
        (
            "4.7.1.2",
            "sport/tennis/player1/#",
            "sport/tennis/player1",
            true,
        ),
        (
            "4.7.1.2",
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "4.7.1.2",
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        (
            "4.7.1.2: `sport/#` also matches the singular `sport`",
            "sport/#",
            "sport",
            true,
        ),
        ("4.7.1.2", "sport/#", "sport/", true),
        (
            "4.7.1.2: `#` receives every message",
            "#",
            "sport/tennis/player1",
            true,
        ),
        ("4.7.1.2", "#", "/", true),
        ("4.7.1.2", "sport/tennis/#", "sport/tennis", true),
        ("4.7.1.2", "sport/tennis/#", "sport/tennisplayer1", false),
        ("4.7.1.2", "sport/tennis/#", "sport", false),
    ];
    for (statement, filter, name, expected) in rows {
        check_match(statement, filter, name, expected);
    }
}

#[test]
fn single_level_wildcard_examples() {
    // Section 4.7.1.3: `+` matches exactly one level.
    let rows = [
        ("4.7.1.3", "sport/tennis/+", "sport/tennis/player1", true),
        ("4.7.1.3", "sport/tennis/+", "sport/tennis/player2", true),
        (
            "4.7.1.3",
            "sport/tennis/+",
            "sport/tennis/player1/ranking",
            false,
        ),
        (
            "4.7.1.3: `sport/+` does not match `sport`",
            "sport/+",
            "sport",
            false,
        ),
        (
            "4.7.1.3: `sport/+` matches `sport/`",
            "sport/+",
            "sport/",
            true,
        ),
        ("4.7.1.3", "sport/+/player1", "sport/tennis/player1", true),
        (
            "4.7.1.3",
            "+/tennis/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        ("4.7.1.3", "+", "finance", true),
        ("4.7.1.3: `/finance` matches `+/+`", "+/+", "/finance", true),
        ("4.7.1.3: `/finance` matches `/+`", "/+", "/finance", true),
        (
            "4.7.1.3: `/finance` does not match `+`",
            "+",
            "/finance",
            false,
        ),
    ];
    for (statement, filter, name, expected) in rows {
        check_match(statement, filter, name, expected);
    }
}

#[test]
fn dollar_topics() {
    // [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a wildcard character
    // (# or +) with Topic Names beginning with a $ character.
    let rows = [
        (
            "[MQTT-4.7.2-1] `#` gets nothing from `$` topics",
            "#",
            "$SYS/broker/clients",
            false,
        ),
        (
            "[MQTT-4.7.2-1]",
            "+/monitor/Clients",
            "$SYS/monitor/Clients",
            false,
        ),
        ("[MQTT-4.7.2-1]", "+", "$SYS", false),
        ("[MQTT-4.7.2-1]", "#", "$", false),
        (
            "4.7.2: `$SYS/#` receives `$SYS/` topics",
            "$SYS/#",
            "$SYS/broker/clients",
            true,
        ),
        ("4.7.2", "$SYS/monitor/+", "$SYS/monitor/Clients", true),
        (
            "4.7.2: the rule is about the first level only",
            "a/+",
            "a/$b",
            true,
        ),
        ("4.7.2", "a/#", "a/$b/c", true),
        (
            "4.7.2: only a wildcard first level is concerned",
            "$SYS",
            "$SYS",
            true,
        ),
    ];
    for (statement, filter, name, expected) in rows {
        check_match(statement, filter, name, expected);
    }

    // 4.7.2: to receive both, a client subscribes to `#` and `$SYS/#`.
    let mut tree = SubscriptionTree::new();
    tree.insert(&"#".parse().unwrap(), 1_u32, "all");
    tree.insert(&"$SYS/#".parse().unwrap(), 1_u32, "sys");
    let values = |topic: &str| {
        tree.matches(topic)
            .into_iter()
            .map(|m| match m {
                Match::Subscription { value, .. } => *value,
                Match::Shared(_) => unreachable!("no shared subscription"),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(values("$SYS/uptime"), ["sys"]);
    assert_eq!(values("uptime"), ["all"]);
}

#[test]
fn topic_semantics_and_usage() {
    // Section 4.7.3 and [MQTT-4.7.3-4]: no normalization; case, spaces and `/` count.
    let rows = [
        (
            "4.7.3: `ACCOUNTS` and `Accounts` differ",
            "ACCOUNTS",
            "Accounts",
            false,
        ),
        (
            "4.7.3: `Accounts payable` is a valid name",
            "Accounts payable",
            "Accounts payable",
            true,
        ),
        (
            "4.7.3: `/finance` differs from `finance`",
            "/finance",
            "finance",
            false,
        ),
        (
            "4.7.1.1: adjacent separators make an empty level",
            "a//b",
            "a//b",
            true,
        ),
        ("4.7.1.1", "a/b", "a//b", false),
        ("4.7.1.1", "a/+/b", "a//b", true),
        ("[MQTT-4.7.3-4]", "caf\u{e9}", "cafe\u{301}", false),
    ];
    for (statement, filter, name, expected) in rows {
        check_match(statement, filter, name, expected);
    }
}

#[test]
fn valid_and_invalid_filters() {
    use TopicError::*;
    let rows: [(&str, &str, Result<(), TopicError>); 14] = [
        (
            "4.7.1.2: `sport/tennis/#` is valid",
            "sport/tennis/#",
            Ok(()),
        ),
        ("4.7.1.2: `#` is valid", "#", Ok(())),
        (
            "[MQTT-4.7.1-1] `sport/tennis#` is not valid",
            "sport/tennis#",
            Err(MisplacedMultiLevelWildcard),
        ),
        (
            "[MQTT-4.7.1-1] `sport/tennis/#/ranking` is not valid",
            "sport/tennis/#/ranking",
            Err(MisplacedMultiLevelWildcard),
        ),
        ("[MQTT-4.7.1-1]", "#/", Err(MisplacedMultiLevelWildcard)),
        ("4.7.1.3: `+` is valid", "+", Ok(())),
        ("4.7.1.3: `+/tennis/#` is valid", "+/tennis/#", Ok(())),
        (
            "[MQTT-4.7.1-2] `sport+` is not valid",
            "sport+",
            Err(MisplacedSingleLevelWildcard),
        ),
        (
            "4.7.1.3: `sport/+/player1` is valid",
            "sport/+/player1",
            Ok(()),
        ),
        ("[MQTT-4.7.1-2]", "+a/b", Err(MisplacedSingleLevelWildcard)),
        ("[MQTT-4.7.3-1] at least one character", "", Err(Empty)),
        ("[MQTT-4.7.3-2] no U+0000", "a/\0", Err(NullCharacter)),
        ("4.7.1.1: empty levels are legal", "/", Ok(())),
        ("4.7.1.1", "a//+/", Ok(())),
    ];
    for (statement, filter, expected) in rows {
        assert_eq!(
            validate_topic_filter(filter),
            expected,
            "{statement}: {filter:?}"
        );
        assert_eq!(
            TopicFilter::new(filter).map(|_| ()),
            expected,
            "{statement}: {filter:?}"
        );
    }
}

#[test]
fn valid_and_invalid_names() {
    use TopicError::*;
    let rows: [(&str, &str, Result<(), TopicError>); 9] = [
        (
            "[MQTT-4.7.0-1] no `+` in a name",
            "sport/+",
            Err(WildcardInName { wildcard: '+' }),
        ),
        (
            "[MQTT-4.7.0-1] no `#` in a name",
            "sport/#",
            Err(WildcardInName { wildcard: '#' }),
        ),
        (
            "[MQTT-4.7.0-1]",
            "a#b",
            Err(WildcardInName { wildcard: '#' }),
        ),
        ("[MQTT-4.7.3-1] at least one character", "", Err(Empty)),
        ("[MQTT-4.7.3-2] no U+0000", "a\0b", Err(NullCharacter)),
        ("4.7.1.1: `/` alone is two empty levels", "/", Ok(())),
        ("4.7.1.1", "/finance", Ok(())),
        ("4.7.2: `$` names are valid names", "$SYS/broker", Ok(())),
        ("4.7.3: spaces are allowed", "Accounts payable", Ok(())),
    ];
    for (statement, name, expected) in rows {
        assert_eq!(validate_topic_name(name), expected, "{statement}: {name:?}");
        assert_eq!(
            TopicName::new(name).map(|_| ()),
            expected,
            "{statement}: {name:?}"
        );
    }
}

#[test]
fn length_limit() {
    // [MQTT-4.7.3-3] at most 65,535 bytes of UTF-8.
    let longest = "a".repeat(65_535);
    assert!(TopicName::new(longest.as_str()).is_ok());
    assert!(TopicFilter::new(longest.as_str()).is_ok());
    let too_long = "é".repeat(32_768); // 65,536 bytes, 32,768 characters
    assert_eq!(
        TopicName::new(too_long.as_str()),
        Err(TopicError::TooLong { len: 65_536 })
    );
    assert_eq!(
        TopicFilter::new(too_long.as_str()),
        Err(TopicError::TooLong { len: 65_536 })
    );
    let shared = format!("$share/g/{}", "a".repeat(65_535 - 9 + 1));
    assert_eq!(
        parse_shared(&shared),
        Err(TopicError::TooLong { len: 65_536 })
    );
}

#[test]
fn shared_subscription_syntax() {
    use TopicError::*;
    type Split<'a> = Result<Option<(&'a str, &'a str)>, TopicError>;
    let rows: [(&str, &str, Split<'_>); 12] = [
        (
            "4.8.2",
            "$share/consumer1/sport/tennis/+",
            Ok(Some(("consumer1", "sport/tennis/+"))),
        ),
        (
            "4.8.2",
            "$share/consumer2/sport/tennis/+",
            Ok(Some(("consumer2", "sport/tennis/+"))),
        ),
        (
            "4.8.2: a filter starting with `/`",
            "$share/consumer1//finance",
            Ok(Some(("consumer1", "/finance"))),
        ),
        ("4.8.2", "$share/g/#", Ok(Some(("g", "#")))),
        (
            "4.8.2: not a shared subscription",
            "sport/tennis/+",
            Ok(None),
        ),
        (
            "4.8.2: `$share` alone is an ordinary filter",
            "$share",
            Ok(None),
        ),
        (
            "[MQTT-4.8.2-1] ShareName at least one character",
            "$share//sport",
            Err(EmptyShareName),
        ),
        ("[MQTT-4.8.2-1]", "$share/", Err(EmptyShareName)),
        (
            "[MQTT-4.8.2-2] no `+` in the ShareName",
            "$share/a+b/sport",
            Err(WildcardInShareName { wildcard: '+' }),
        ),
        (
            "[MQTT-4.8.2-2] no `#` in the ShareName",
            "$share/#/sport",
            Err(WildcardInShareName { wildcard: '#' }),
        ),
        (
            "[MQTT-4.8.2-2] followed by `/` and a filter",
            "$share/consumer1",
            Err(MissingSharedFilter),
        ),
        (
            "[MQTT-4.8.2-2]",
            "$share/consumer1/",
            Err(MissingSharedFilter),
        ),
    ];
    for (statement, filter, expected) in rows {
        assert_eq!(parse_shared(filter), expected, "{statement}: {filter:?}");
    }
    assert_eq!(
        parse_shared("$share/g/a/#/b"),
        Err(MisplacedMultiLevelWildcard),
        "[MQTT-4.8.2-2] the part after the ShareName is a valid topic filter"
    );
    assert_eq!(
        SharedFilter::new("sport/#"),
        Err(MissingSharePrefix),
        "[MQTT-4.8.2-1]"
    );
    assert_eq!(
        SharedFilter::from_parts("a/b", TopicFilter::new("x").unwrap()),
        Err(MissingSharedFilter),
        "[MQTT-4.8.2-2] no `/` in the ShareName"
    );
}

#[test]
fn shared_groups_are_distinct_by_share_name_and_filter() {
    // 4.8.2: `$share/consumer1/sport/tennis/+` and `$share/consumer2/sport/tennis/+` are
    // distinct groups; each receives a copy, delivered to one of its members.
    let mut tree = SubscriptionTree::new();
    let sub = |s: &str| SubscriptionFilter::new(s).unwrap();
    tree.insert(&sub("$share/consumer1/sport/tennis/+"), "a", 1_u8);
    tree.insert(&sub("$share/consumer1/sport/tennis/+"), "b", 0);
    tree.insert(&sub("$share/consumer2/sport/tennis/+"), "c", 2);
    tree.insert(&sub("$share/consumer1/sport/#"), "a", 1);
    tree.insert(&sub("sport/tennis/+"), "a", 0);

    let mut groups = Vec::new();
    let mut plain = 0;
    tree.for_each_match("sport/tennis/player1", |m| match m {
        Match::Shared(group) => groups.push((
            group.share_name(),
            group.filter().as_str(),
            group.members().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
        )),
        Match::Subscription { .. } => plain += 1,
    });
    groups.sort();
    assert_eq!(plain, 1);
    assert_eq!(
        groups,
        [
            ("consumer1", "sport/#", vec![("a", 1)]),
            ("consumer1", "sport/tennis/+", vec![("a", 1), ("b", 0)]),
            ("consumer2", "sport/tennis/+", vec![("c", 2)]),
        ]
    );
    // [MQTT-4.7.2-1] applies to the filter of a shared subscription too.
    tree.insert(&sub("$share/all/#"), "d", 0);
    assert!(tree.matches("$SYS/x").is_empty());
    assert_eq!(tree.matches("x").len(), 1);
}

#[test]
fn overlapping_subscriptions_are_reported_per_filter() {
    // [MQTT-3.3.4-2]-style overlap: one client, three matching filters; the broker sees all
    // three (highest QoS, every subscription identifier).
    let mut tree = SubscriptionTree::new();
    let sub = |s: &str| SubscriptionFilter::new(s).unwrap();
    tree.insert(&sub("a/b"), 7_u64, (0_u8, Some(1_u32)));
    tree.insert(&sub("a/+"), 7, (2, Some(2)));
    tree.insert(&sub("#"), 7, (1, None));
    tree.insert(&sub("a/+"), 7, (1, Some(3))); // replaces the previous `a/+`
    let mut reached: Vec<_> = tree
        .matches("a/b")
        .into_iter()
        .map(|m| match m {
            Match::Subscription { key, value } => (*key, *value),
            Match::Shared(_) => unreachable!("no shared subscription"),
        })
        .collect();
    reached.sort_unstable();
    assert_eq!(
        reached,
        [(7, (0, Some(1))), (7, (1, None)), (7, (1, Some(3)))]
    );
}
