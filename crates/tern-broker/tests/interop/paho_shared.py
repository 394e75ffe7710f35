"""MQTT 5.0 shared subscription: two members of `$share/g/...` share the messages, each
message going to exactly one of them.

usage: paho_shared.py PORT
"""

from paho_common import Client, args, check, describe

port, version = args(with_version=False)
topic = "interop/shared"
fence = "interop/shared-fence"
count = 20

members = []
for n in (1, 2):
    member = Client(port, version, f"paho-shared-{n}")
    member.subscribe(f"$share/g/{topic}", 1)
    # A plain subscription: the fence reaches both, after everything published before it.
    member.subscribe(fence, 1)
    members.append(member)

pub = Client(port, version, "paho-shared-pub")
sent = [f"m{i}".encode() for i in range(count)]
for payload in sent:
    pub.publish(topic, payload, 1)
pub.publish(fence, b"fence", 1)

received = []
for member in members:
    got = []
    while True:
        msg = member.expect(f"the shared messages, then the fence; so far {got}")
        if msg.topic == fence:
            break
        check(msg.topic == topic, f"{member.client_id}: unexpected {describe(msg)}")
        got.append(msg.payload)
    received.append(got)
    member.nothing_queued()

everything = received[0] + received[1]
# 4.8.2: each message of a shared subscription goes to one session of the group only.
check(
    sorted(everything) == sorted(sent),
    f"each of the {count} messages should reach exactly one member; got {received}",
)
# Both members take part (the broker delivers round robin).
check(all(received), f"one member got nothing: {received}")

pub.disconnect()
for member in members:
    member.disconnect()
print(f"ok: shared {len(received[0])} / {len(received[1])}")
