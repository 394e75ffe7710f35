// MQTT.js connects, subscribes, and its QoS 1 and QoS 2 messages come back once each.
//
// usage: node mqttjs_roundtrip.js PORT 4|5 [mqtt|ws]

'use strict';

const { Client, args, check, describe, main } = require('./mqttjs_common.js');

main(async () => {
  const { port, version, transport } = args('mqttjs_roundtrip.js');
  const topic = 'interop/mqttjs';
  const sub = await Client.connect(port, version, `mqttjs-sub-${version}`);
  await sub.subscribe(topic, 2);
  const pub = await Client.connect(port, version, `mqttjs-pub-${version}`);

  for (const qos of [1, 2]) {
    await pub.publish(topic, `at qos ${qos}`, { qos });
    const m = await sub.expect(`the QoS ${qos} message`);
    // [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): delivered at min(publish QoS, granted 2).
    check(
      m.topic === topic && m.payload === `at qos ${qos}` && m.packet.qos === qos && !m.packet.retain,
      `expected ${topic} "at qos ${qos}" at QoS ${qos}, got ${describe(m.topic, m.payload, m.packet)}`,
    );
  }
  // Once each: the next message from the same publisher on the same topic comes next (4.6).
  await pub.publish(topic, 'fence', { qos: 1 });
  const m = await sub.expect('the fence');
  check(m.payload === 'fence', `expected the fence, got ${describe(m.topic, m.payload, m.packet)}`);

  await pub.end();
  await sub.end();
  console.log(`ok: MQTT.js v${version} QoS 1 and 2 round trip over ${transport}`);
});
