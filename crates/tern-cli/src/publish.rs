//! `tern pub`: mosquitto_pub on tern-client.

use std::io::BufRead;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{ArgGroup, Args};
use tern_client::{Client, Error, OutgoingMessage, PublishToken, QoS};

use crate::Failure;
use crate::connection::{self, ConnArgs, parse_qos};

/// `tern pub` flags.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
#[command(group(ArgGroup::new("source").args(["message", "file", "stdin_line", "stdin_file", "null_message"])))]
pub(crate) struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic to publish to.
    #[arg(short = 't', long)]
    topic: Option<String>,
    /// The message.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Send the whole file as the message.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Send each line of stdin as a message (empty lines are not sent).
    #[arg(short = 'l', long = "stdin-line")]
    stdin_line: bool,
    /// Send the whole of stdin as one message.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Send a zero-length message.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// The QoS.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Retain the message.
    #[arg(short = 'r', long)]
    retain: bool,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Seconds between repeats (decimals allowed).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
}

/// Runs `tern pub`.
pub(crate) async fn run(args: PubArgs) -> Result<(), Failure> {
    let (builder, url_topic) = args.conn.builder()?;
    let topic = args
        .topic
        .clone()
        .or(url_topic)
        .ok_or_else(|| Failure::other("a topic is needed (-t or -L URL/topic)"))?;
    tern_topic::validate_topic_name(&topic)
        .map_err(|e| Failure::other(format!("invalid topic {topic:?}: {e}")))?;
    if !(args.repeat_delay.is_finite() && args.repeat_delay >= 0.0) {
        return Err(Failure::other("--repeat-delay must be a number of seconds"));
    }
    // Read the message before connecting, so that a missing file fails fast.
    let single = if args.stdin_line {
        None
    } else {
        Some(single_payload(&args)?)
    };
    let client = connection::connect(builder, args.conn.version).await?;
    let outcome = match single {
        Some(payload) => {
            let mut result = Ok(());
            for i in 0..args.repeat.max(1) {
                if i > 0 && args.repeat_delay > 0.0 {
                    tokio::time::sleep(std::time::Duration::from_secs_f64(args.repeat_delay)).await;
                }
                result = publish(&client, &args, &topic, payload.clone()).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        None => publish_lines(&client, &args, &topic).await,
    };
    client.disconnect().await;
    outcome.map_err(|e| Failure::other(format!("publish: {e}")))
}

/// The payload of -m, -f, -s or -n.
fn single_payload(args: &PubArgs) -> Result<Bytes, Failure> {
    if let Some(message) = &args.message {
        Ok(Bytes::from(message.clone().into_bytes()))
    } else if let Some(path) = &args.file {
        std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))
    } else if args.stdin_file {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut all)
            .map_err(|e| Failure::other(format!("reading stdin: {e}")))?;
        Ok(Bytes::from(all))
    } else if args.null_message {
        Ok(Bytes::new())
    } else {
        Err(Failure::other(
            "nothing to publish: give one of -m, -f, -l, -s, -n",
        ))
    }
}

/// Queues one message and waits for its acknowledgement.
async fn publish(
    client: &Client,
    args: &PubArgs,
    topic: &str,
    payload: Bytes,
) -> Result<(), Error> {
    enqueue(client, args, topic, payload).await?.await?;
    Ok(())
}

async fn enqueue(
    client: &Client,
    args: &PubArgs,
    topic: &str,
    payload: Bytes,
) -> Result<PublishToken, Error> {
    client
        .enqueue(
            OutgoingMessage::new(topic, payload)
                .qos(args.qos)
                .retain(args.retain),
        )
        .await
}

/// `-l`: each line of stdin, pipelined; every acknowledgement is awaited before returning.
async fn publish_lines(client: &Client, args: &PubArgs, topic: &str) -> Result<(), Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(256);
    // Stdin is read on a blocking thread so that the runtime keeps driving the client.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                return;
            }
        }
    });
    let mut pending = std::collections::VecDeque::new();
    while let Some(line) = rx.recv().await {
        let line = line.map_err(|_| Error::Closed)?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        pending.push_back(enqueue(client, args, topic, Bytes::from(line.to_owned())).await?);
        // Keep the number of outstanding tokens bounded.
        while pending.len() > 1024 {
            if let Some(token) = pending.pop_front() {
                token.await?;
            }
        }
    }
    for token in pending {
        token.await?;
    }
    Ok(())
}
