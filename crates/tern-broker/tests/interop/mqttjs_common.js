// What the MQTT.js interop scripts share. Each script takes the broker's port, the protocol
// version (4 for 3.1.1, 5) and optionally the transport (`mqtt`, the default, or `ws` for MQTT
// over WebSocket on /mqtt) as arguments, exits 0 on success and 1 with a message on stderr on
// failure. Every wait is for an event, bounded by TIMEOUT_MS.

'use strict';

const mqtt = require('mqtt');

const TIMEOUT_MS = 10000;

// The broker's URL without the port's end, set by args().
let baseUrl = null;

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

// The port, the protocol version and the transport; also arms a watchdog for the whole
// script.
function args(script) {
  const [port, version] = process.argv.slice(2, 4).map(Number);
  const transport = process.argv[4] || 'mqtt';
  if (!port || (version !== 4 && version !== 5) || !['mqtt', 'ws'].includes(transport)) {
    fail(`usage: node ${script} PORT 4|5 [mqtt|ws]`);
  }
  baseUrl = transport === 'ws' ? `ws://127.0.0.1:${port}/mqtt` : `mqtt://127.0.0.1:${port}`;
  setTimeout(() => fail(`${script} did not finish within ${3 * TIMEOUT_MS} ms`), 3 * TIMEOUT_MS);
  return { port, version, transport };
}

function describe(topic, payload, packet) {
  const props = packet.properties ? ` properties=${JSON.stringify(packet.properties)}` : '';
  return `${topic} qos=${packet.qos} retain=${packet.retain} payload=${JSON.stringify(String(payload))}${props}`;
}

// A connected client whose messages wait in a queue.
class Client {
  static async connect(port, version, clientId) {
    const client = await within(
      mqtt.connectAsync(baseUrl || `mqtt://127.0.0.1:${port}`, {
        protocolVersion: version,
        clientId,
        clean: true,
        keepalive: 60,
        reconnectPeriod: 0, // a lost connection is a failure, never a silent reconnect
        connectTimeout: TIMEOUT_MS,
      }),
      `${clientId}: CONNACK`,
    );
    return new Client(client, clientId);
  }

  constructor(client, clientId) {
    this.client = client;
    this.clientId = clientId;
    this.queue = [];
    this.waiting = null;
    client.on('message', (topic, payload, packet) => {
      this.queue.push({ topic, payload: String(payload), packet });
      if (this.waiting) this.waiting();
    });
    client.on('error', (e) => fail(`${clientId}: ${e.stack || e}`));
  }

  async subscribe(topic, qos) {
    const granted = await within(this.client.subscribeAsync(topic, { qos }), `${this.clientId}: SUBACK for ${topic}`);
    check(
      granted.length === 1 && granted[0].qos === qos,
      `${this.clientId}: SUBACK for ${topic}: ${JSON.stringify(granted)}, expected QoS ${qos}`,
    );
  }

  // Publishes; for QoS 1 and 2 resolves once the broker acknowledged it.
  async publish(topic, payload, options) {
    await within(this.client.publishAsync(topic, payload, options), `${this.clientId}: acknowledgement of ${topic}`);
  }

  // The next message.
  async expect(what) {
    if (this.queue.length === 0) {
      await within(new Promise((resolve) => (this.waiting = resolve)), `${this.clientId}: ${what}`);
      this.waiting = null;
    }
    return this.queue.shift();
  }

  async end() {
    await within(this.client.endAsync(), `${this.clientId}: disconnect`);
  }
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Runs the script's body; any exception is a failure.
function main(body) {
  body().then(
    () => process.exit(0),
    (e) => fail(e.stack || e),
  );
}

module.exports = { Client, args, check, describe, fail, main };
