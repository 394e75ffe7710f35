"""What the paho-mqtt 2.x interop scripts share.

Each script takes the broker's port (and, for some, the protocol version: 311 or 5) as
arguments, exits 0 on success and 1 with a message on stderr on failure. Every wait is for an
event, bounded by TIMEOUT; nothing sleeps for a fixed time.
"""

import queue
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
TIMEOUT = 10.0


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def args(with_version=True):
    """The port, and the protocol version (paho's constant) if the script takes one."""
    usage = f"usage: {sys.argv[0]} PORT" + (" 311|5" if with_version else "")
    if len(sys.argv) != (3 if with_version else 2):
        fail(usage)
    port = int(sys.argv[1])
    if not with_version:
        return port, mqtt.MQTTv5
    versions = {"311": mqtt.MQTTv311, "5": mqtt.MQTTv5}
    if sys.argv[2] not in versions:
        fail(usage)
    return port, versions[sys.argv[2]]


def props(packet_type, **values):
    """Properties of this packet type, e.g. props(PacketTypes.CONNECT, SessionExpiryInterval=60)."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Client:
    """A paho client on its own network thread, with its messages in a queue."""

    def __init__(self, port, version, client_id, clean=True, connect_properties=None, will=None):
        self.version = version
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.lock = threading.Lock()
        kwargs = {}
        if version != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            **kwargs,
        )
        # A lost connection is a failure here, never a silent reconnect.
        self.client.reconnect_delay_set(min_delay=3600, max_delay=3600)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe
        if will is not None:
            self.client.will_set(**will)
        connect = {}
        if version == mqtt.MQTTv5:
            connect["clean_start"] = clean
            if connect_properties is not None:
                connect["properties"] = connect_properties
        self.client.connect(HOST, port, keepalive=60, **connect)
        self.client.loop_start()
        try:
            reason, self.flags = self.connack.get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"{client_id}: no CONNACK within {TIMEOUT} s")
        check(not reason.is_failure, f"{client_id}: CONNACK refused: {reason}")
        self.client_id = client_id

    def _on_connect(self, _client, _userdata, flags, reason, _properties):
        self.connack.put((reason, flags))

    def _on_subscribe(self, _client, _userdata, mid, reasons, _properties):
        with self.lock:
            self.subacks[mid].put(reasons)

    @property
    def session_present(self):
        return self.flags.session_present

    def subscribe(self, topic, qos, properties=None):
        """Subscribes and waits for the SUBACK; fails unless it grants `qos`."""
        with self.lock:
            # Registered under the lock so that the SUBACK cannot come first.
            if properties is None:
                result, mid = self.client.subscribe(topic, qos)
            else:
                result, mid = self.client.subscribe(topic, qos, properties=properties)
            check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.client_id}: subscribe {topic}: {result}")
            done = self.subacks[mid] = queue.Queue()
        try:
            reasons = done.get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"{self.client_id}: no SUBACK for {topic} within {TIMEOUT} s")
        granted = [r.value for r in reasons]
        check(granted == [qos], f"{self.client_id}: SUBACK for {topic}: {granted}, expected [{qos}]")

    def publish(self, topic, payload, qos, retain=False, properties=None):
        """Publishes and, for QoS 1 and 2, waits until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        check(info.rc == mqtt.MQTT_ERR_SUCCESS, f"{self.client_id}: publish to {topic}: {info.rc}")
        info.wait_for_publish(timeout=TIMEOUT)
        check(info.is_published(), f"{self.client_id}: publish to {topic} not acknowledged")

    def expect(self, what, timeout=TIMEOUT):
        """The next message; fails after `timeout` naming `what`."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            fail(f"{self.client_id}: no message ({what}) within {timeout} s")

    def nothing_queued(self):
        try:
            msg = self.messages.get_nowait()
        except queue.Empty:
            return
        fail(f"{self.client_id}: unexpected message {describe(msg)}")

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()


def describe(msg):
    properties = getattr(msg, "properties", None)
    return f"{msg.topic} qos={msg.qos} retain={msg.retain} payload={msg.payload!r} properties={properties}"

