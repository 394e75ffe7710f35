"""MQTT 5.0 Will Delay Interval: the Will of a connection that ends without DISCONNECT comes
after the delay, not before.

usage: paho_will_delay.py PORT
"""

import socket
import time

import paho.mqtt.client as mqtt

from paho_common import HOST, TIMEOUT, Client, PacketTypes, args, check, describe, fail, props

port, version = args(with_version=False)
topic = "interop/will-delay"
delay = 2

watcher = Client(port, version, "paho-will-watcher")
watcher.subscribe(topic, 1)

# This client is driven by hand (no network thread), so that nothing reconnects it once its
# socket is gone.
doomed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-will-delay", protocol=version)
doomed.will_set(topic, b"late", qos=1, properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay))
connacks = []
doomed.on_connect = lambda _c, _u, _flags, reason, _p: connacks.append(reason)
# The session outlives the connection, so the Will waits for the delay [MQTT-3.1.3-9] rather
# than for the end of the session.
doomed.connect(HOST, port, keepalive=60, clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
deadline = time.monotonic() + TIMEOUT
while not connacks:
    if time.monotonic() >= deadline:
        fail("paho-will-delay: no CONNACK")
    doomed.loop(timeout=0.05)
check(not connacks[0].is_failure, f"paho-will-delay: CONNACK refused: {connacks[0]}")

# The connection ends without DISCONNECT.
sock = doomed.socket()
sock.shutdown(socket.SHUT_RDWR)
sock.close()
closed = time.monotonic()

# [MQTT-3.1.2-8]: the Will is published once the Will Delay Interval has passed (3.1.3.2.2):
# not before it (give or take scheduling), and well within a generous bound after it.
msg = watcher.expect("the Will", timeout=delay + 10)
elapsed = time.monotonic() - closed
check(
    (msg.topic, msg.payload) == (topic, b"late"),
    f"expected the Will {topic} b'late', got {describe(msg)}",
)
check(elapsed >= delay - 0.25, f"the Will came {elapsed:.2f} s after the connection ended, before its {delay} s delay")
check(elapsed <= delay + 5, f"the Will came {elapsed:.2f} s after the connection ended, long after its {delay} s delay")
watcher.disconnect()
print(f"ok: Will after {elapsed:.2f} s (delay {delay} s)")
