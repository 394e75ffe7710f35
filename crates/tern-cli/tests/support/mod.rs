//! Shared helpers of the `tern` tests: an in-process ternd on a loopback port, the built
//! `tern` binary run as a child process, and waits that are always bounded by a timeout.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use tern_broker::{Broker, BrokerHandle, Config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long any wait may take before the test fails (generous: the machine is shared).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Fails the test if `fut` does not finish within [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A ternd on an ephemeral loopback port, and its address.
pub async fn ternd() -> (BrokerHandle, SocketAddr) {
    ternd_with(Config::with_listeners(["127.0.0.1:0".parse().unwrap()])).await
}

/// A ternd with this configuration, and its first listener's address.
pub async fn ternd_with(config: Config) -> (BrokerHandle, SocketAddr) {
    let broker = Broker::new(config).start().await.expect("ternd starts");
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

/// The `tern` binary with these arguments, stdin closed, stdout and stderr piped.
pub fn tern<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `-h 127.0.0.1 -p PORT` of a broker address.
pub fn host_port(addr: SocketAddr) -> Vec<String> {
    vec![
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
    ]
}

/// Runs `cmd` to its end within the timeout.
pub async fn run(mut cmd: Command) -> Output {
    within("tern to exit", cmd.output())
        .await
        .expect("tern runs")
}

/// Runs `cmd` with `input` on stdin.
pub async fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("tern starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    within("tern to exit", child.wait_with_output())
        .await
        .unwrap()
}

/// The exit status and stderr of an output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `tern sub`, spawned with `-d` and returned once every subscription was
/// acknowledged (its `Subscribed` lines on stderr).
pub struct Sub {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
}

impl Sub {
    /// Spawns `tern sub -d ARGS` and waits for `filters` SUBACKs.
    pub async fn start(args: &[String], filters: usize) -> Sub {
        let mut cmd = tern(["sub", "-d"]);
        cmd.args(args);
        let mut child = cmd.spawn().expect("tern sub starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        within("tern sub to subscribe", async {
            let mut seen = 0;
            let mut line = String::new();
            while seen < filters {
                line.clear();
                let n = stderr.read_line(&mut line).await.unwrap();
                assert!(n > 0, "tern sub ended before subscribing");
                if line.starts_with("Subscribed") {
                    seen += 1;
                }
            }
        })
        .await;
        // Keep draining stderr (debug output) so that the child never blocks on it.
        let stderr = tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut rest).await;
            rest
        });
        Sub {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line of stdout (without its newline).
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        within("a line from tern sub", self.stdout.read_line(&mut line))
            .await
            .unwrap();
        line.trim_end_matches('\n').to_owned()
    }

    /// Waits for the exit status, draining the pipes; returns the rest of stdout.
    pub async fn finish(mut self) -> (Option<i32>, String) {
        use tokio::io::AsyncReadExt;
        let mut rest = String::new();
        let status = within("tern sub to exit", async {
            let (a, status) =
                tokio::join!(self.stdout.read_to_string(&mut rest), self.child.wait());
            a.unwrap();
            status.unwrap()
        })
        .await;
        let _ = within("stderr to close", self.stderr).await;
        (status.code(), rest)
    }
}
