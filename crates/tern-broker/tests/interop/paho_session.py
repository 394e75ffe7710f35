"""Session resume: a QoS 1 message published while the client is away is delivered when it
comes back with clean_session=False (3.1.1) / clean_start=False and a Session Expiry
Interval (5.0), with Session Present 1.

usage: paho_session.py PORT 311|5
"""

from paho_common import Client, PacketTypes, args, check, describe, props

port, version = args()
v5 = version == 5
tag = "5" if v5 else "311"
topic = "interop/session"
client_id = f"paho-session-{tag}"
expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=300) if v5 else None

# 5.0 starts clean and asks for the session to outlive the connection; 3.1.1 has only
# CleanSession 0 for both.
first = Client(port, version, client_id, clean=v5, connect_properties=expiry)
check(not first.session_present, "first connection: Session Present 1, expected 0 (no session yet)")
first.subscribe(topic, 1)
first.disconnect()

pub = Client(port, version, f"paho-session-pub-{tag}")
pub.publish(topic, b"while away", 1)
pub.disconnect()

again = Client(port, version, client_id, clean=False, connect_properties=expiry)
# [MQTT-3.1.2-4], [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.1.2-5], [MQTT-3.2.2-3] (5.0): the session is
# resumed and CONNACK says so.
check(again.session_present, "reconnection: Session Present 0, expected 1 (session resumed)")
# [MQTT-3.1.2-5] (3.1.1) / 4.1 (5.0): QoS 1 messages for its subscriptions were kept while away.
msg = again.expect("the message published while away")
check(
    (msg.topic, msg.payload, msg.qos) == (topic, b"while away", 1),
    f"expected {topic} b'while away' at QoS 1, got {describe(msg)}",
)
again.disconnect()
print("ok: session resumed")
