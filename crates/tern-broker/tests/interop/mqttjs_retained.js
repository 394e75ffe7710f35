// A retained message from MQTT.js reaches a later MQTT.js subscriber; an empty retained message
// deletes it.
//
// usage: node mqttjs_retained.js PORT 4|5

'use strict';

const { Client, args, check, describe, main } = require('./mqttjs_common.js');

main(async () => {
  const { port, version } = args('mqttjs_retained.js');
  const topic = 'interop/mqttjs-retained';
  const pub = await Client.connect(port, version, `mqttjs-retained-pub-${version}`);
  await pub.publish(topic, 'kept', { qos: 1, retain: true });

  // [MQTT-3.3.1-5]: stored; [MQTT-3.3.1-6] (3.1.1) / [MQTT-3.3.1-9] (5.0): sent to a new
  // subscription, with RETAIN 1.
  const late = await Client.connect(port, version, `mqttjs-retained-late-${version}`);
  await late.subscribe(topic, 1);
  let m = await late.expect('the retained message');
  check(
    m.topic === topic && m.payload === 'kept' && m.packet.qos === 1 && m.packet.retain,
    `expected the retained ${topic} "kept" at QoS 1, got ${describe(m.topic, m.payload, m.packet)}`,
  );
  await late.end();

  // [MQTT-3.3.1-10], [MQTT-3.3.1-11] (3.1.1) / [MQTT-3.3.1-6], [MQTT-3.3.1-7] (5.0): an empty
  // retained message deletes it and is not stored itself.
  await pub.publish(topic, '', { qos: 1, retain: true });
  const later = await Client.connect(port, version, `mqttjs-retained-later-${version}`);
  await later.subscribe(topic, 1);
  // A retained message would have come with the subscription, before this live one.
  await pub.publish(topic, 'live', { qos: 1 });
  m = await later.expect('the live message');
  check(
    m.payload === 'live' && !m.packet.retain,
    `expected the live "live" with RETAIN 0 (nothing retained), got ${describe(m.topic, m.payload, m.packet)}`,
  );

  await later.end();
  await pub.end();
  console.log(`ok: MQTT.js v${version} retained, then deleted`);
});
