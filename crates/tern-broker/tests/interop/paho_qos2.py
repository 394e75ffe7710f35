"""QoS 2 round trip through the broker between two paho-mqtt clients.

usage: paho_qos2.py PORT 311|5
"""

from paho_common import Client, args, check, describe

port, version = args()
tag = "5" if version == 5 else "311"
topic = "interop/qos2"

sub = Client(port, version, f"paho-qos2-sub-{tag}")
sub.subscribe(topic, 2)
pub = Client(port, version, f"paho-qos2-pub-{tag}")
pub.publish(topic, b"exactly once", 2)

msg = sub.expect("the QoS 2 message")
# [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): delivered at min(publish QoS 2, granted QoS 2).
check(
    (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, b"exactly once", 2, False),
    f"expected {topic} b'exactly once' at QoS 2, got {describe(msg)}",
)
# Exactly once (4.3.3): the next message from the same publisher on the same topic comes
# next (4.6, ordered topic), so no second copy came before it.
pub.publish(topic, b"next", 2)
msg = sub.expect("the next message")
check(msg.payload == b"next", f"expected b'next' after the QoS 2 message, got {describe(msg)}")

pub.disconnect()
sub.disconnect()
print("ok: QoS 2 round trip")
