"""MQTT 5.0 User Properties reach the subscriber unaltered and in order, duplicates included.

usage: paho_user_properties.py PORT
"""

from paho_common import Client, PacketTypes, args, check, describe, props

port, version = args(with_version=False)
topic = "interop/user-properties"
pairs = [("b", "2"), ("a", "1"), ("b", "3"), ("same", "same"), ("empty", ""), ("k", "v with spaces")]

sub = Client(port, version, "paho-props-sub")
sub.subscribe(topic, 1)
pub = Client(port, version, "paho-props-pub")
publish_properties = props(PacketTypes.PUBLISH)
publish_properties.UserProperty = pairs
pub.publish(topic, b"with properties", 1, properties=publish_properties)

msg = sub.expect("the message with User Properties")
got = getattr(msg.properties, "UserProperty", None)
# [MQTT-3.3.2-17]: all of them, unaltered; [MQTT-3.3.2-18]: in their order.
check(got == pairs, f"User Properties {got}, expected {pairs}; message: {describe(msg)}")

pub.disconnect()
sub.disconnect()
print("ok: user properties in order")
