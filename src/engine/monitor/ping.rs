//! Ping addresses (issue #31): a scheduled run tells a ping service that
//! it started, and how it ended, in the conventions of healthchecks.io
//! (also what most self-hosted checkers follow) and Uptime Kuma's push
//! monitors. A ping never delays or fails the backup beyond its deadline:
//! at most [`ATTEMPTS`] tries of [`ATTEMPT_TIMEOUT`] each, all within the
//! deadline the caller gives.
//!
//! The address carries the check's token, so it is never said whole: the
//! errors here name its host only (reqwest's own would print the URL).

use std::time::{Duration, Instant};

use url::Url;

/// Tries per ping.
pub const ATTEMPTS: u32 = 3;
/// How long one try may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// All of one run's pings together, at most.
pub const RUN_DEADLINE: Duration = Duration::from_secs(10);
/// How much of a failure's reason goes with its ping (Uptime Kuma shows
/// it as the heartbeat's message, healthchecks.io keeps up to 100 kB).
const REASON_MAX: usize = 1000;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// The run started.
    Start,
    /// It ended well; a line about it.
    Success(String),
    /// It failed; the plain reason the card shows.
    Failure(String),
    /// A test from the settings.
    Test,
}

/// Which service's conventions the address follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `…/api/push/TOKEN`: `?status=up|down&msg=…`, no start.
    UptimeKuma,
    /// healthchecks.io and the like: `URL`, `URL/start`, `URL/fail`, the
    /// body kept as the ping's log, `?rid=` pairing a start with its end.
    Healthchecks,
}

impl Service {
    pub fn of(url: &Url) -> Service {
        if url.path().contains("/api/push/") {
            Service::UptimeKuma
        } else {
            Service::Healthchecks
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::UptimeKuma => "Uptime Kuma push monitor",
            Service::Healthchecks => "healthchecks.io-style check",
        }
    }
}

/// One HTTP request (its Debug form names the host only: the address
/// carries the token).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub post: bool,
    pub url: Url,
    pub body: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("post", &self.post)
            .field("url", &shown(&self.url))
            .field("body", &self.body)
            .finish()
    }
}

/// Check an address as the administrator gives it: http or https, with a
/// host. Said in words when it is not.
pub fn parse(address: &str) -> Result<Url, String> {
    let url = Url::parse(address.trim()).map_err(|e| {
        format!("That is not a web address ({e}). Copy the ping URL the service shows.")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(
            "A ping address starts with https:// (or http://) and names a server. Copy the ping URL the service shows."
                .into(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("A ping address with a user name or password in it is not taken; use the URL with its token.".into());
    }
    Ok(url)
}

/// The address as it may be shown: its host, never its token.
pub fn shown(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The request a ping is (none: the service has no such ping).
pub fn request(url: &Url, ping: &Ping, run: uuid::Uuid) -> Option<Request> {
    match Service::of(url) {
        Service::UptimeKuma => {
            let (status, msg) = match ping {
                Ping::Start => return None,
                Ping::Success(line) => ("up", line.as_str()),
                Ping::Test => ("up", "persnap: a test from the monitoring settings"),
                Ping::Failure(reason) => ("down", reason.as_str()),
            };
            let mut url = url.clone();
            // Its own pairs are replaced, never appended to.
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "status" && k != "msg" && k != "ping")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair("status", status)
                .append_pair("msg", truncated(msg, REASON_MAX))
                .append_pair("ping", "");
            Some(Request {
                post: false,
                url,
                body: String::new(),
            })
        }
        Service::Healthchecks => {
            let (suffix, body) = match ping {
                Ping::Start => (Some("start"), String::new()),
                Ping::Success(line) => (None, line.clone()),
                Ping::Test => (
                    None,
                    "persnap: a test from the monitoring settings".to_owned(),
                ),
                Ping::Failure(reason) => (Some("fail"), truncated(reason, REASON_MAX).to_owned()),
            };
            let mut url = url.clone();
            if let Some(suffix) = suffix {
                let path = format!("{}/{suffix}", url.path().trim_end_matches('/'));
                url.set_path(&path);
            }
            url.query_pairs_mut().append_pair("rid", &run.to_string());
            Some(Request {
                post: true,
                url,
                body,
            })
        }
    }
}

/// Send `ping` to `url`, trying again after a failure that may pass, and
/// never past `deadline`. The error says what went wrong, naming the host
/// only.
pub fn send(url: &Url, ping: &Ping, run: uuid::Uuid, deadline: Instant) -> Result<(), String> {
    let Some(request) = request(url, ping, run) else {
        return Ok(());
    };
    let host = shown(url);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if attempt > 0 {
            // A moment between tries, within the deadline.
            std::thread::sleep(Duration::from_millis(500).min(left / 2));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = ATTEMPT_TIMEOUT.min(left);
        if timeout.is_zero() {
            break;
        }
        match try_once(&request, timeout) {
            Ok(()) => return Ok(()),
            Err((e, again)) => {
                last = e;
                if !again {
                    return Err(format!("{host} refused the ping: {last}."));
                }
            }
        }
    }
    Err(format!(
        "{host} did not take the ping{}.",
        if last.is_empty() {
            String::new()
        } else {
            format!(" ({last})")
        }
    ))
}

/// One try: the error in words, and whether trying again may help.
fn try_once(request: &Request, timeout: Duration) -> Result<(), (String, bool)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("persnap/", env!("CARGO_PKG_VERSION")))
        // A ping goes where it was set to go, nowhere else.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| (e.without_url().to_string(), false))?;
    let sent = if request.post {
        client
            .post(request.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(request.body.clone())
            .send()
    } else {
        client.get(request.url.clone()).send()
    };
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) if response.status().is_redirection() => Err((
            format!(
                "it answered {} (a redirect, not followed); check the address",
                response.status()
            ),
            false,
        )),
        Ok(response) => {
            let status = response.status();
            Err((
                format!(
                    "it answered {status}{}",
                    if status == reqwest::StatusCode::NOT_FOUND {
                        "; check the address"
                    } else {
                        ""
                    }
                ),
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            ))
        }
        Err(e) if e.is_timeout() => Err((
            format!("no answer within {} s", timeout.as_secs_f32().ceil()),
            true,
        )),
        Err(e) if e.is_connect() => Err(("it could not be reached".to_owned(), true)),
        Err(e) => Err((plain(e.without_url()), true)),
    }
}

/// An error with every source, without the address.
fn plain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: uuid::Uuid = uuid::Uuid::from_u128(0x1234);

    #[test]
    fn healthchecks_gets_start_success_and_fail_with_one_run_id() {
        let url = parse("https://hc-ping.com/5e7c3b1a-0000-4000-8000-abcdefabcdef").unwrap();
        let start = request(&url, &Ping::Start, RUN).unwrap();
        assert!(start.post);
        assert_eq!(
            start.url.as_str(),
            format!("https://hc-ping.com/5e7c3b1a-0000-4000-8000-abcdefabcdef/start?rid={RUN}")
        );
        let ok = request(&url, &Ping::Success("Backup verified".into()), RUN).unwrap();
        assert_eq!(ok.url.path(), "/5e7c3b1a-0000-4000-8000-abcdefabcdef");
        assert_eq!(ok.body, "Backup verified");
        let long = "é".repeat(2000);
        let fail = request(&url, &Ping::Failure(long), RUN).unwrap();
        assert!(fail.url.path().ends_with("/fail"));
        assert_eq!(fail.url.query(), Some(format!("rid={RUN}").as_str()));
        assert!(fail.body.len() <= REASON_MAX && fail.body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn uptime_kuma_gets_up_and_down_with_the_reason_and_no_start() {
        let url = parse("http://kuma.lan:3001/api/push/AbC123?status=up&msg=OK&ping=").unwrap();
        assert_eq!(Service::of(&url), Service::UptimeKuma);
        assert_eq!(request(&url, &Ping::Start, RUN), None);
        let down = request(&url, &Ping::Failure("The disk is full & gone".into()), RUN).unwrap();
        assert!(!down.post);
        let pairs: Vec<(String, String)> = down
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("status".to_owned(), "down".to_owned()),
                ("msg".to_owned(), "The disk is full & gone".to_owned()),
                ("ping".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn addresses_are_shown_without_their_token_and_checked() {
        let url = parse("https://hc-ping.com/secret-token").unwrap();
        assert_eq!(shown(&url), "https://hc-ping.com");
        let url = parse("http://127.0.0.1:8123/ping/secret-token").unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:8123");
        assert!(parse("ftp://example.com/x").is_err());
        assert!(parse("hc-ping.com/x").is_err());
        assert!(parse("https://user:pw@example.com/x").is_err());
    }

    #[test]
    fn a_refused_connection_is_said_by_host_within_the_deadline() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = parse(&format!("http://127.0.0.1:{port}/ping/secret-token")).unwrap();
        let started = Instant::now();
        let e = send(&url, &Ping::Test, RUN, started + Duration::from_secs(3)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
    }
}
