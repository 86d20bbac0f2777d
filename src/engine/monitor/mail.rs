//! Failure mail (issue #31), through lettre: STARTTLS or TLS, never a
//! connection in the clear, with the user and password the administrator
//! set. Errors are said in words (the server's name and what to check),
//! never with the password.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::settings::{Mail, MailSecurity};
use crate::schedule::Secret;

/// How long the server has for each step.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub body: String,
}

/// Check an address as the administrator types it.
pub fn parse_address(address: &str) -> Result<Mailbox, String> {
    address
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("{address} is not an e-mail address ({e})."))
}

/// Send `letter` to everyone `mail` names. The error says what to check.
pub fn send(mail: &Mail, password: Option<&Secret>, letter: &Letter) -> Result<(), String> {
    let from = parse_address(&mail.from)?;
    let mut message = Message::builder()
        .from(from)
        .subject(&letter.subject)
        .header(ContentType::TEXT_PLAIN);
    if mail.to.is_empty() {
        return Err("No recipient is set.".into());
    }
    for to in &mail.to {
        message = message.to(parse_address(to)?);
    }
    let message = message
        .body(letter.body.clone())
        .map_err(|e| format!("The message could not be made ({e})."))?;

    let mut tls = TlsParameters::builder(mail.server.clone());
    if let Some(ca) = &mail.ca_file {
        check_ca_file(ca)?;
        let pem = std::fs::read(ca).map_err(|e| {
            format!(
                "The certificate authority file {} cannot be read ({e}).",
                ca.display()
            )
        })?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("{} is not a PEM certificate ({e}).", ca.display()))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls
        .build()
        .map_err(|e| format!("TLS could not be set up ({e})."))?;
    let mut transport = SmtpTransport::builder_dangerous(&mail.server)
        .port(mail.port)
        .timeout(Some(TIMEOUT))
        .tls(match mail.security {
            MailSecurity::Starttls => Tls::Required(tls),
            MailSecurity::Tls => Tls::Wrapper(tls),
        });
    if let Some(user) = &mail.user {
        let password = password.map(|p| p.0.clone()).unwrap_or_default();
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    let server = format!("{}:{}", mail.server, mail.port);
    transport
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| said(&server, mail, &e))
}

/// A failure to send, in words.
fn said(server: &str, mail: &Mail, e: &lettre::transport::smtp::Error) -> String {
    let detail = detail(e);
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_timeout() {
        format!(
            "The mail server {server} did not answer within {} s. Check the server and port, and that this machine may reach it. (Details: {detail})",
            TIMEOUT.as_secs()
        )
    } else if detail.contains("certificate") {
        format!(
            "The mail server {server}'s certificate is not trusted, or names another server: nothing was sent. Check the server's name; for a certificate from your own authority, set --mail-ca. (Details: {detail})"
        )
    } else if mail.security == MailSecurity::Tls
        && (detail.contains("corrupt message") || detail.contains("InvalidContentType"))
    {
        format!(
            "The mail server {server} does not speak TLS from the first byte on this port: it may expect STARTTLS (usually port 587, --mail-security starttls). (Details: {detail})"
        )
    } else if e.is_tls() {
        format!(
            "A secure connection to the mail server {server} could not be made: its certificate is not trusted, names another server, or it does not speak {}. Check the server's name and the security setting; for a certificate from your own authority, set --mail-ca. (Details: {detail})",
            match mail.security {
                MailSecurity::Starttls => "STARTTLS on this port",
                MailSecurity::Tls => "TLS on this port",
            }
        )
    } else if code.starts_with("535") || code.starts_with("534") || code.starts_with("530") {
        format!(
            "The mail server {server} refused the user name or password. Set them again. (Details: {detail})"
        )
    } else if e.is_permanent() {
        format!(
            "The mail server {server} refused the message. Check the sender and recipient addresses, and that the user may send as the sender. (Details: {detail})"
        )
    } else if e.is_transient() {
        format!(
            "The mail server {server} could not take the message now; it may next time. (Details: {detail})"
        )
    } else if e.is_client() && detail.contains("STARTTLS") {
        format!(
            "The mail server {server} does not offer STARTTLS, so nothing was sent in the clear. Use its TLS port (465) or a server that protects the connection. (Details: {detail})"
        )
    } else {
        format!(
            "The mail server {server} could not be reached or did not take the message. Check the server and port. (Details: {detail})"
        )
    }
}

/// lettre's words already hold every source's.
fn detail(e: &lettre::transport::smtp::Error) -> String {
    e.to_string()
}

/// Refuse a certificate authority file anybody but the administrators
/// could change: whoever could would be trusted to speak for the mail
/// server, and be handed its password.
pub fn check_ca_file(ca: &std::path::Path) -> Result<(), String> {
    if !crate::fsutil::is_root() {
        return Ok(());
    }
    crate::sys::admin_only(ca, false)
        .and_then(|()| {
            ca.parent()
                .map_or(Ok(()), crate::fsutil::admin_only_folder)
        })
        .map_err(|e| {
            format!(
                "The certificate authority file {} must be the administrator's alone ({e}); whoever could change it could read the mail password. {}",
                ca.display(),
                crate::sys::ADMIN_ONLY_FIX
            )
        })
}
