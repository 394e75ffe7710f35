//! `tern sub`: mosquitto_sub on tern-client.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use tern_client::{OutgoingMessage, QoS};

use crate::Failure;
use crate::connection::{self, ConnArgs, parse_qos};
use crate::format::Output;

/// mosquitto_sub's exit status when `-W` expires (`MOSQ_ERR_TIMEOUT`).
pub(crate) const EXIT_TIMEOUT: u8 = 27;

/// `tern sub` flags.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// A topic filter to subscribe to (repeatable).
    #[arg(short = 't', long)]
    topic: Vec<String>,
    /// The maximum QoS asked for.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Print the topic before the payload.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Exit after printing this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit with status 27 after this many seconds from the connection.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Do not print messages with the retain flag (stale ones).
    #[arg(short = 'R', long = "no-stale")]
    no_stale: bool,
    /// Print messages as this format: %t topic, %p payload, %x/%X payload in hex, %l length,
    /// %q QoS, %r retain, %m (%i) packet id, %c client id, %U Unix time, %I ISO 8601 time,
    /// %j/%J JSON, %C %D %E %F %R %S %P MQTT 5.0 properties, %% a percent sign; escapes \n
    /// \t \r \0 \a \e \v \\.
    #[arg(short = 'F', long = "format")]
    format: Option<String>,
    /// No newline after each message.
    #[arg(short = 'N', long = "no-eol")]
    no_eol: bool,
    /// Print only retained messages; exit at the first message without the retain flag.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear each retained message received (publish an empty retained message to its topic).
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E', long = "exit-after-sub")]
    exit_after_sub: bool,
}

/// Runs `tern sub`.
pub(crate) async fn run(args: SubArgs) -> Result<(), Failure> {
    let (builder, url_topic) = args.conn.builder()?;
    let mut filters = args.topic.clone();
    filters.extend(url_topic);
    if filters.is_empty() {
        return Err(Failure::other(
            "a topic filter is needed (-t or -L URL/topic)",
        ));
    }
    for filter in &filters {
        tern_topic::validate_topic_filter(filter)
            .map_err(|e| Failure::other(format!("invalid topic filter {filter:?}: {e}")))?;
    }
    let output = match &args.format {
        Some(f) => Output::Format(f.clone()),
        None => Output::Plain {
            verbose: args.verbose,
        },
    };
    let client = connection::connect(builder, args.conn.version).await?;
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let outcome = async {
        // Printed from the catch-all stream: one line per PUBLISH received, however many
        // filters it matched. The subscription streams are drained and dropped.
        let mut messages = client.messages().map_err(Failure::other)?;
        for filter in &filters {
            let mut sub = client
                .subscribe(filter, args.qos)
                .await
                .map_err(|e| Failure::other(format!("subscribe {filter:?}: {e}")))?;
            if args.conn.debug {
                // mosquitto_sub -d prints a line per SUBACK too.
                eprintln!("Subscribed ({filter}): {}", sub.granted_qos().as_u8());
            }
            tokio::spawn(async move { while sub.recv().await.is_some() {} });
        }
        if args.exit_after_sub {
            return Ok(());
        }
        let mut printed = 0u64;
        let mut line = Vec::new();
        let client_id = client.client_id().to_owned();
        loop {
            let message = tokio::select! {
                m = messages.recv() => match m {
                    Some(m) => m,
                    None => return Err(Failure::other("the connection was lost")),
                },
                () = sleep_until(deadline) => {
                    return Err(Failure { code: EXIT_TIMEOUT, message: "Timed out".into() });
                }
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            if args.retained_only && !message.retain() {
                return Ok(());
            }
            if args.remove_retained && message.retain() {
                client
                    .publish_with(
                        OutgoingMessage::new(message.topic(), bytes::Bytes::new())
                            .retain(true)
                            .qos(QoS::AtLeastOnce),
                    )
                    .await
                    .map_err(|e| Failure::other(format!("removing retained: {e}")))?;
            }
            if args.no_stale && message.retain() {
                continue;
            }
            line.clear();
            output.render(&message, &client_id, args.no_eol, &mut line);
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&line)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // The reader went away (a closed pipe): stop quietly.
                return Ok(());
            }
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
    }
    .await;
    client.disconnect().await;
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
