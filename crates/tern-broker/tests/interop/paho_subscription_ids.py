"""MQTT 5.0 Subscription Identifiers: a message matching two overlapping subscriptions of one
client carries the identifiers of both.

usage: paho_subscription_ids.py PORT
"""

from paho_common import Client, PacketTypes, args, check, describe, props

port, version = args(with_version=False)
fence = "interop/subid-fence"

sub = Client(port, version, "paho-subid")
sub.subscribe("interop/subid/#", 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=1))
sub.subscribe("interop/subid/+", 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=2))
sub.subscribe(fence, 1)
pub = Client(port, version, "paho-subid-pub")


def expect_ids(topic, expected):
    pub.publish(topic, b"x", 1)
    pub.publish(fence, b"fence", 1)
    msg = sub.expect(f"the message on {topic}")
    check(msg.topic == topic, f"expected {topic}, got {describe(msg)}")
    ids = sorted(getattr(msg.properties, "SubscriptionIdentifier", []))
    check(ids == expected, f"{topic}: Subscription Identifiers {ids}, expected {expected}; {describe(msg)}")
    # The broker merges overlapping subscriptions into one delivery: no second copy before the
    # fence (published after it by the same client).
    msg = sub.expect("the fence")
    check(msg.topic == fence, f"expected the fence after one copy of {topic}, got {describe(msg)}")
    ids = getattr(msg.properties, "SubscriptionIdentifier", [])
    check(not ids, f"the fence matches a subscription without identifier, but carries {ids}")


# [MQTT-3.3.4-3], [MQTT-3.3.4-4]: one copy carrying the identifiers of both matching
# subscriptions, in any order.
expect_ids("interop/subid/x", [1, 2])
# Only `interop/subid/#` matches a topic two levels below.
expect_ids("interop/subid/x/y", [1])

pub.disconnect()
sub.disconnect()
print("ok: subscription identifiers")
