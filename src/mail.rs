//! Outgoing e-mail: the text of every account message, and its delivery —
//! real SMTP through lettre when SMTP_HOST/SMTP_PORT are set, else the
//! message is written to the log so a developer can finish the flow on a
//! laptop.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

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

/// One plain-text message, before it is addressed and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The `Subject:` line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

/// The invitation: a link to choose a password, and the bare token for
/// clients that post it to `accept_url` themselves.
pub fn invite_message(username: &str, invite_url: &str, accept_url: &str, token: &str) -> Message {
    Message {
        subject: "You are invited to the KernelCI API".into(),
        text: format!(
            "Hello {username},\n\nYou have been invited to the KernelCI API.\n\n\
             Open this link to choose your password:\n\n{invite_url}\n\n\
             Or send this invite token to {accept_url} :\n\n{token}\n\n\
             The invite is valid for 7 days.\n"
        ),
    }
}

/// Sent once an invite was accepted.
pub fn welcome_message(username: &str) -> Message {
    Message {
        subject: "Welcome to the KernelCI API".into(),
        text: format!(
            "Hello {username},\n\nWelcome to the KernelCI API: your account is ready and you can log in as '{username}'.\n"
        ),
    }
}

/// The e-mail verification token (for `POST /user/verify`).
pub fn verify_message(username: &str, token: &str) -> Message {
    Message {
        subject: "KernelCI API email verification".into(),
        text: format!(
            "Hello {username},\n\nUse this token with POST /user/verify to verify your e-mail address:\n\n{token}\n\n\
             The token is valid for one hour.\n"
        ),
    }
}

/// Sent once the address was verified.
pub fn verified_message(username: &str) -> Message {
    Message {
        subject: "KernelCI API account verified".into(),
        text: format!("Hello {username},\n\nYour e-mail address has been verified.\n"),
    }
}

/// The password reset token (for `POST /user/reset-password`).
pub fn reset_message(username: &str, token: &str) -> Message {
    Message {
        subject: "KernelCI API password reset".into(),
        text: format!(
            "Hello {username},\n\nUse this token with POST /user/reset-password to choose a new password:\n\n{token}\n\n\
             The token is valid for one hour and can be used once.\n"
        ),
    }
}

/// Sent once a password was reset.
pub fn password_reset_message(username: &str) -> Message {
    Message {
        subject: "KernelCI API password changed".into(),
        text: format!("Hello {username},\n\nYour password has been reset.\n"),
    }
}

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

    /// Sends one message to `to`; returns once the relay accepted it.
    pub fn send(&self, to: &str, message: &Message) -> Result<(), MailError> {
        let (subject, body) = (message.subject.as_str(), message.text.as_str());
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
                let message = lettre::Message::builder()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_message_has_the_link_and_the_token() {
        let m = invite_message(
            "ann",
            "https://k.example/user/accept-invite?token=T.O.K",
            "https://k.example/user/accept-invite",
            "T.O.K",
        );
        assert_eq!(m.subject, "You are invited to the KernelCI API");
        assert_eq!(
            m.text,
            "Hello ann,\n\nYou have been invited to the KernelCI API.\n\n\
             Open this link to choose your password:\n\n\
             https://k.example/user/accept-invite?token=T.O.K\n\n\
             Or send this invite token to https://k.example/user/accept-invite :\n\n\
             T.O.K\n\nThe invite is valid for 7 days.\n"
        );
    }

    #[test]
    fn welcome_message_names_the_login() {
        let m = welcome_message("ann");
        assert_eq!(m.subject, "Welcome to the KernelCI API");
        assert_eq!(
            m.text,
            "Hello ann,\n\nWelcome to the KernelCI API: your account is ready \
             and you can log in as 'ann'.\n"
        );
    }

    #[test]
    fn verify_message_has_the_token_on_its_own_line() {
        let m = verify_message("ann", "T.O.K");
        assert_eq!(m.subject, "KernelCI API email verification");
        assert_eq!(
            m.text,
            "Hello ann,\n\nUse this token with POST /user/verify to verify your \
             e-mail address:\n\nT.O.K\n\nThe token is valid for one hour.\n"
        );
    }

    #[test]
    fn verified_message_confirms() {
        let m = verified_message("ann");
        assert_eq!(m.subject, "KernelCI API account verified");
        assert_eq!(
            m.text,
            "Hello ann,\n\nYour e-mail address has been verified.\n"
        );
    }

    #[test]
    fn reset_message_has_the_token_on_its_own_line() {
        let m = reset_message("ann", "T.O.K");
        assert_eq!(m.subject, "KernelCI API password reset");
        assert_eq!(
            m.text,
            "Hello ann,\n\nUse this token with POST /user/reset-password to choose \
             a new password:\n\nT.O.K\n\nThe token is valid for one hour and can \
             be used once.\n"
        );
    }

    #[test]
    fn password_reset_message_confirms() {
        let m = password_reset_message("ann");
        assert_eq!(m.subject, "KernelCI API password changed");
        assert_eq!(m.text, "Hello ann,\n\nYour password has been reset.\n");
    }
}
