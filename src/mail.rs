//! Outgoing e-mail: real SMTP through lettre when SMTP_HOST/SMTP_PORT are
//! set, else the message is written to the log so a developer can finish
//! the flow on a laptop.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::config::{Config, Smtp, SmtpSecurity};

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where mail goes.
pub enum Mailer {
    /// A relay.
    Smtp {
        transport: Box<SmtpTransport>,
        from: Mailbox,
    },
    /// No relay configured: messages are logged.
    Log { from: String },
}

/// Why a message did not go out (the account change stands regardless).
#[derive(Debug)]
pub struct MailError(pub String);

impl Mailer {
    /// Builds the mailer from the configuration.
    pub fn from_config(cfg: &Config) -> Result<Mailer, MailError> {
        match &cfg.smtp {
            None => Ok(Mailer::Log {
                from: cfg.email_sender.clone(),
            }),
            Some(smtp) => Mailer::smtp(smtp),
        }
    }

    fn smtp(smtp: &Smtp) -> Result<Mailer, MailError> {
        let from: Mailbox = smtp.sender.parse().map_err(|e| {
            MailError(format!(
                "EMAIL_SENDER '{}' is not an address: {e}",
                smtp.sender
            ))
        })?;
        let tls = || {
            TlsParameters::new(smtp.host.clone())
                .map_err(|e| MailError(format!("TLS setup for {}: {e}", smtp.host)))
        };
        let mut builder = SmtpTransport::builder_dangerous(smtp.host.as_str())
            .port(smtp.port)
            .timeout(Some(SMTP_TIMEOUT));
        builder = match smtp.security {
            SmtpSecurity::None => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
        };
        if !smtp.password.is_empty() {
            builder =
                builder.credentials(Credentials::new(smtp.sender.clone(), smtp.password.clone()));
        }
        Ok(Mailer::Smtp {
            transport: Box::new(builder.build()),
            from,
        })
    }

    /// Whether messages really leave the machine.
    pub fn is_real(&self) -> bool {
        matches!(self, Mailer::Smtp { .. })
    }

    /// Sends one plain-text message; returns once the relay accepted it.
    pub fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        match self {
            Mailer::Log { from } => {
                eprintln!(
                    "kci-lite: mail (no SMTP_HOST configured)\n  From: {from}\n  To: {to}\n  Subject: {subject}\n{}",
                    body.lines()
                        .map(|l| format!("  | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = to
                    .parse()
                    .map_err(|e| MailError(format!("bad recipient: {e}")))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body.to_string())
                    .map_err(|e| MailError(format!("cannot build message: {e}")))?;
                transport
                    .send(&message)
                    .map(|_| ())
                    .map_err(|e| MailError(format!("SMTP delivery failed: {e}")))
            }
        }
    }
}
