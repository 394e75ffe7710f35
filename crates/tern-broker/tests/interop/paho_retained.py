"""A retained message reaches a later subscriber; an empty retained message deletes it.

usage: paho_retained.py PORT 311|5
"""

from paho_common import Client, args, check, describe

port, version = args()
tag = "5" if version == 5 else "311"
topic = "interop/retained"

pub = Client(port, version, f"paho-retained-pub-{tag}")
pub.publish(topic, b"kept", 1, retain=True)

# [MQTT-3.3.1-5]: stored; [MQTT-3.3.1-6] (3.1.1) / [MQTT-3.3.1-9] (5.0): sent to a new
# subscription, with RETAIN 1.
late = Client(port, version, f"paho-retained-late-{tag}")
late.subscribe(topic, 1)
msg = late.expect("the retained message")
check(
    (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, b"kept", 1, True),
    f"expected the retained {topic} b'kept' at QoS 1, got {describe(msg)}",
)
late.disconnect()

# [MQTT-3.3.1-10], [MQTT-3.3.1-11] (3.1.1) / [MQTT-3.3.1-6], [MQTT-3.3.1-7] (5.0): an empty
# retained message deletes it and is not stored itself.
pub.publish(topic, b"", 1, retain=True)
later = Client(port, version, f"paho-retained-later-{tag}")
later.subscribe(topic, 1)
# A retained message would have come with the subscription, before this live one.
pub.publish(topic, b"live", 1)
msg = later.expect("the live message")
check(
    (msg.payload, msg.retain) == (b"live", False),
    f"expected the live b'live' with RETAIN 0 (nothing retained), got {describe(msg)}",
)

later.disconnect()
pub.disconnect()
print("ok: retained, then deleted")
