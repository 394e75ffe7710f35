//! How `tern sub` prints a message: the payload, `-v` (topic and payload), or `-F FORMAT`.
//!
//! `-F` placeholders (mosquitto_sub's; no field widths):
//!
//! | | |
//! |---|---|
//! | `%%` | a percent sign |
//! | `%t` | the topic |
//! | `%p` | the payload, raw bytes |
//! | `%x` / `%X` | the payload in lower / upper case hex |
//! | `%l` | the payload length in bytes |
//! | `%q` | the QoS |
//! | `%r` | the retain flag, 0 or 1 |
//! | `%m` (or `%i`) | the packet identifier (0 for QoS 0) |
//! | `%c` | the client identifier of this subscriber |
//! | `%U` | the receipt time, Unix seconds with nanoseconds |
//! | `%I` | the receipt time, ISO 8601 in UTC (`2026-12-02T01:02:03+0000`) |
//! | `%j` / `%J` | JSON of the message without / with the payload (as a string, lossy UTF-8) |
//! | `%C` `%D` `%E` `%F` `%R` `%S` `%P` | MQTT 5.0 content type, correlation data (hex), message expiry, payload format, response topic, subscription identifiers, user properties (`name:value`, space separated) |
//!
//! Escapes: `\\`, `\0`, `\a`, `\e`, `\n`, `\r`, `\t`, `\v`. Anything else is printed as is.

use std::time::{SystemTime, UNIX_EPOCH};

use tern_client::Message;

/// How messages are printed.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// The payload (`-v`: the topic, a space, the payload).
    Plain {
        /// `-v`.
        verbose: bool,
    },
    /// `-F`.
    Format(String),
}

impl Output {
    /// Appends `message` as printed to `out`, with a newline unless `no_eol` (`-N`).
    pub(crate) fn render(
        &self,
        message: &Message,
        client_id: &str,
        no_eol: bool,
        out: &mut Vec<u8>,
    ) {
        match self {
            Output::Plain { verbose } => {
                if *verbose {
                    out.extend_from_slice(message.topic().as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(message.payload());
            }
            Output::Format(format) => formatted(format, message, client_id, SystemTime::now(), out),
        }
        if !no_eol {
            out.push(b'\n');
        }
    }
}

/// Renders `format` for `message`, received at `now`.
pub(crate) fn formatted(
    format: &str,
    message: &Message,
    client_id: &str,
    now: SystemTime,
    out: &mut Vec<u8>,
) {
    let mut chars = format.chars();
    let put = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => out.push(b'%'),
                Some('t') => put(out, message.topic()),
                Some('p') => out.extend_from_slice(message.payload()),
                Some('x') => hex(message.payload(), false, out),
                Some('X') => hex(message.payload(), true, out),
                Some('l') => put(out, &message.payload().len().to_string()),
                Some('q') => put(out, &message.qos().as_u8().to_string()),
                Some('r') => out.push(if message.retain() { b'1' } else { b'0' }),
                Some('m' | 'i') => put(out, &packet_id(message).to_string()),
                Some('c') => put(out, client_id),
                Some('U') => {
                    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                    put(out, &format!("{}.{:09}", t.as_secs(), t.subsec_nanos()));
                }
                Some('I') => put(out, &iso8601(now)),
                Some('j') => put(out, &json(message, now, false).to_string()),
                Some('J') => put(out, &json(message, now, true).to_string()),
                Some('C') => put(out, message.content_type().unwrap_or("")),
                Some('D') => {
                    if let Some(data) = message.correlation_data() {
                        hex(data, false, out);
                    }
                }
                Some('E') => {
                    if let Some(e) = message.properties().message_expiry_interval {
                        put(out, &e.to_string());
                    }
                }
                Some('F') => {
                    if let Some(f) = message.properties().payload_format_indicator {
                        put(out, &(f as u8).to_string());
                    }
                }
                Some('R') => put(out, message.response_topic().unwrap_or("")),
                Some('S') => {
                    let ids: Vec<String> = message
                        .subscription_identifiers()
                        .iter()
                        .map(|i| i.to_string())
                        .collect();
                    put(out, &ids.join(","));
                }
                Some('P') => {
                    let props: Vec<String> = message
                        .user_properties()
                        .iter()
                        .map(|(k, v)| format!("{}:{}", k.as_str(), v.as_str()))
                        .collect();
                    put(out, &props.join(" "));
                }
                Some(other) => {
                    out.push(b'%');
                    put(out, other.encode_utf8(&mut [0; 4]));
                }
                None => out.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('\\') => out.push(b'\\'),
                Some('0') => out.push(0),
                Some('a') => out.push(0x07),
                Some('e') => out.push(0x1b),
                Some('n') => out.push(b'\n'),
                Some('r') => out.push(b'\r'),
                Some('t') => out.push(b'\t'),
                Some('v') => out.push(0x0b),
                Some(other) => {
                    out.push(b'\\');
                    put(out, other.encode_utf8(&mut [0; 4]));
                }
                None => out.push(b'\\'),
            },
            c => put(out, c.encode_utf8(&mut [0; 4])),
        }
    }
}

fn packet_id(message: &Message) -> u16 {
    message.publish().packet_id.map_or(0, |id| id.get())
}

fn hex(bytes: &[u8], upper: bool, out: &mut Vec<u8>) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for b in bytes {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
}

fn json(message: &Message, now: SystemTime, payload: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "tst": iso8601(now),
        "topic": message.topic(),
        "qos": message.qos().as_u8(),
        "retain": u8::from(message.retain()),
        "payloadlen": message.payload().len(),
        "mid": packet_id(message),
    });
    if payload {
        value["payload"] = String::from_utf8_lossy(message.payload())
            .into_owned()
            .into();
    }
    value
}

/// `YYYY-MM-DDTHH:MM:SS+0000` (UTC).
pub(crate) fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00+0000");
        // 2000-02-29 12:34:56 UTC, a leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(iso8601(t), "2000-02-29T12:34:56+0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_765_200);
        assert_eq!(iso8601(t), "2027-01-01T01:00:00+0000");
    }
}
