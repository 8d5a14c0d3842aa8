//! The Eclipse Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`, Debian package
//! mosquitto-clients) against our broker: MQTT 3.1.1 and 5 at QoS 0/1/2, a retained message,
//! persistent session resume with a fixed client id, and the will on abrupt loss (not on a clean
//! DISCONNECT).
//!
//! These tests fail (never skip) when the tools are missing: `.ci/run` installs them.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{start_broker, within};

/// Output format of received messages: topic, QoS, retain flag, payload.
const FORMAT: &str = "%t|%q|%r|%p";

fn command(tool: &str) -> Command {
    let mut command = Command::new(tool);
    command.kill_on_drop(true).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

fn spawn(tool: &str, args: &[&str]) -> Child {
    match command(tool).args(args).spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && tool == "stdbuf" => {
            panic!("stdbuf is not installed: install coreutils")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "{tool} is not installed: install the mosquitto command-line clients \
             (`apt-get install -y mosquitto-clients`; .ci/run does this) to run the interop tests"
        ),
        Err(error) => panic!("cannot run {tool}: {error}"),
    }
}

/// Runs a tool to completion (bounded) and fails the test unless it exits successfully.
async fn run(tool: &str, args: &[&str]) -> String {
    let child = spawn(tool, args);
    let output = within(&format!("{tool} {args:?}"), child.wait_with_output()).await.expect("tool output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{tool} {args:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

/// Takes a child's stdout and reads it until a line containing `marker` (bounded), returning the
/// rest of the stream; a child that exits first fails the test.
async fn lines_until(
    child: &mut Child,
    marker: &str,
    what: &str,
) -> tokio::io::Lines<BufReader<tokio::process::ChildStdout>> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    within(&format!("{what} to print {marker:?}"), async {
        loop {
            let line = lines.next_line().await.expect("read stdout");
            let line = line.unwrap_or_else(|| panic!("{what} exited before printing {marker:?}"));
            if line.contains(marker) {
                break;
            }
        }
    })
    .await;
    lines
}

/// A running `mosquitto_sub` whose subscription the broker has acknowledged.
struct Subscriber {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Subscriber {
    /// Starts `mosquitto_sub` with debug output and waits for its SUBACK, so that whatever is
    /// published afterwards must reach it.
    async fn start(args: &[&str]) -> Subscriber {
        // stdbuf would report a missing mosquitto_sub only as an early exit: check it by name.
        let probe = spawn("mosquitto_sub", &["--help"]).wait_with_output();
        within("mosquitto_sub --help", probe).await.expect("mosquitto_sub runs");
        // mosquitto_sub's stdout is block-buffered on a pipe, which would hold the SUBACK line
        // back until exit; stdbuf (coreutils) makes it line-buffered.
        let mut all_args = vec!["-oL", "mosquitto_sub", "-d", "-F", FORMAT];
        all_args.extend_from_slice(args);
        let mut child = spawn("stdbuf", &all_args);
        let lines = lines_until(&mut child, "received SUBACK", &format!("mosquitto_sub {args:?}")).await;
        Subscriber { child, lines }
    }

    /// Collects the formatted message lines until the tool exits (it stops by itself: `-C`).
    async fn messages(mut self) -> Vec<String> {
        let mut messages = Vec::new();
        within("mosquitto_sub to receive its messages and exit", async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                // Debug lines ("Client ... received PUBLISH", "Subscribed (mid: 1): 2") have no
                // '|'; message lines follow FORMAT, and the test payloads have none either.
                if line.contains('|') {
                    messages.push(line);
                }
            }
        })
        .await;
        let status = within("mosquitto_sub to exit", self.child.wait()).await.expect("wait");
        assert!(status.success(), "mosquitto_sub failed ({status}); got {messages:?}");
        messages
    }
}

async fn publish_and_receive_at_every_qos(version: &str) {
    let broker = start_broker().await;
    let port = broker.local_addr().port().to_string();
    let topic_filter = format!("mosquitto/{version}/#");
    let subscriber = Subscriber::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        version,
        "-q",
        "2",
        "-t",
        &topic_filter,
        "-C",
        "3",
        "-W",
        "10",
    ])
    .await;
    for qos in ["0", "1", "2"] {
        let topic = format!("mosquitto/{version}/qos{qos}");
        let payload = format!("hello at qos {qos}");
        run(
            "mosquitto_pub",
            &["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", qos, "-t", &topic, "-m", &payload],
        )
        .await;
    }
    let messages = subscriber.messages().await;
    let expected: Vec<String> = ["0", "1", "2"]
        .iter()
        .map(|qos| format!("mosquitto/{version}/qos{qos}|{qos}|0|hello at qos {qos}"))
        .collect();
    assert_eq!(messages, expected);
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn mosquitto_v311_publishes_and_receives_at_qos_0_1_2() {
    publish_and_receive_at_every_qos("mqttv311").await;
}

#[tokio::test]
async fn mosquitto_v5_publishes_and_receives_at_qos_0_1_2() {
    publish_and_receive_at_every_qos("mqttv5").await;
}

async fn retained_message_reaches_a_later_subscriber(version: &str) {
    let broker = start_broker().await;
    let port = broker.local_addr().port().to_string();
    let topic = format!("mosquitto/retained/{version}");
    run(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-q",
            "1",
            "-r",
            "-t",
            &topic,
            "-m",
            "last known value",
        ],
    )
    .await;
    // The subscriber connects only now; the retained message is sent on its subscribe.
    let output = run(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-q",
            "1",
            "-t",
            &topic,
            "-C",
            "1",
            "-W",
            "10",
            "-F",
            FORMAT,
        ],
    )
    .await;
    assert_eq!(output.trim_end(), format!("{topic}|1|1|last known value"));
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn mosquitto_v311_retained_message_reaches_a_later_subscriber() {
    retained_message_reaches_a_later_subscriber("mqttv311").await;
}

#[tokio::test]
async fn mosquitto_v5_retained_message_reaches_a_later_subscriber() {
    retained_message_reaches_a_later_subscriber("mqttv5").await;
}

async fn persistent_session_resumes(version: &str) {
    let broker = start_broker().await;
    let port = broker.local_addr().port().to_string();
    let client_id = format!("mosquitto-persistent-{version}");
    let topic = format!("mosquitto/persist/{version}");
    // -c keeps the session after disconnect (for v5 mosquitto_sub then asks for a session that
    // never expires); -E exits as soon as the subscription is acknowledged.
    run(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-c",
            "-i",
            &client_id,
            "-q",
            "1",
            "-t",
            &topic,
            "-E",
        ],
    )
    .await;
    for sequence in 0..3 {
        let payload = format!("while away {sequence}");
        run(
            "mosquitto_pub",
            &["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1", "-t", &topic, "-m", &payload],
        )
        .await;
    }
    // Reconnecting with the same id and -c resumes the session, whose queue holds the three
    // messages (a fresh session subscribing now would get none: they are not retained).
    let output = run(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-c",
            "-i",
            &client_id,
            "-q",
            "1",
            "-t",
            &topic,
            "-C",
            "3",
            "-W",
            "10",
            "-F",
            FORMAT,
        ],
    )
    .await;
    let expected: Vec<String> = (0..3).map(|sequence| format!("{topic}|1|0|while away {sequence}")).collect();
    assert_eq!(output.lines().collect::<Vec<_>>(), expected);
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn mosquitto_v311_persistent_session_resumes_with_queued_messages() {
    persistent_session_resumes("mqttv311").await;
}

#[tokio::test]
async fn mosquitto_v5_persistent_session_resumes_with_queued_messages() {
    persistent_session_resumes("mqttv5").await;
}

/// Starts `mosquitto_pub -l` (publish stdin lines) with a will, waits until its CONNACK, and
/// returns it with stdin held open so it stays connected.
async fn connected_publisher_with_will(
    port: &str,
    version: &str,
    will_topic: &str,
    will_payload: &str,
) -> Child {
    let args = [
        "-oL",
        "mosquitto_pub",
        "-d",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-V",
        version,
        "-t",
        "mosquitto/will/data",
        "-l",
        "--will-topic",
        will_topic,
        "--will-payload",
        will_payload,
        "--will-qos",
        "1",
    ];
    let mut child = match Command::new("stdbuf")
        .args(args)
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!("cannot run stdbuf mosquitto_pub (install mosquitto-clients): {error}"),
    };
    // Its later output is not needed: the stream is dropped here, as before it was at return.
    let _rest = lines_until(&mut child, "received CONNACK", &format!("mosquitto_pub {args:?}")).await;
    child
}

async fn will_follows_abrupt_loss_only(version: &str) {
    let broker = start_broker().await;
    let port = broker.local_addr().port().to_string();
    let will_topic = format!("mosquitto/will/{version}");
    // Two messages will reach the subscriber: the will of the killed publisher, then a sentinel
    // published after the cleanly closed publisher is gone. A will wrongly sent on the clean
    // DISCONNECT would arrive before the sentinel and break the expected list.
    let subscriber = Subscriber::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        version,
        "-q",
        "1",
        "-t",
        &will_topic,
        "-C",
        "2",
        "-W",
        "10",
    ])
    .await;

    let mut killed = connected_publisher_with_will(&port, version, &will_topic, "killed").await;
    // SIGKILL: the TCP connection drops without a DISCONNECT, an abnormal loss.
    killed.start_kill().expect("kill mosquitto_pub");
    within("the killed mosquitto_pub to exit", killed.wait()).await.expect("wait");

    let mut clean = connected_publisher_with_will(&port, version, &will_topic, "clean").await;
    // Closing stdin ends `-l`: mosquitto_pub sends DISCONNECT and exits.
    drop(clean.stdin.take());
    let status = within("the clean mosquitto_pub to exit", clean.wait()).await.expect("wait");
    assert!(status.success(), "mosquitto_pub -l exits cleanly on end of input ({status})");

    run(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1", "-t", &will_topic, "-m", "sentinel"],
    )
    .await;
    let messages = subscriber.messages().await;
    assert_eq!(messages, vec![format!("{will_topic}|1|0|killed"), format!("{will_topic}|1|0|sentinel")]);
    broker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn mosquitto_v311_will_is_published_on_abrupt_loss_and_not_on_disconnect() {
    will_follows_abrupt_loss_only("mqttv311").await;
}

#[tokio::test]
async fn mosquitto_v5_will_is_published_on_abrupt_loss_and_not_on_disconnect() {
    will_follows_abrupt_loss_only("mqttv5").await;
}

#[tokio::test]
async fn mosquitto_tools_are_installed() {
    // A direct check, so a missing install shows up by name and not only as a failing interop test.
    let output = spawn("mosquitto_pub", &["--help"]).wait_with_output();
    let output = tokio::time::timeout(Duration::from_secs(10), output).await.expect("bounded").expect("ran");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mosquitto_pub"), "unexpected mosquitto_pub --help output: {text}");
}
