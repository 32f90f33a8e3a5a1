//! The welcome mail through SES v2: the user name and the sign-in URL, nothing else.

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sesv2::Client;

use super::{call, classify, AwsError, Budget, ErrorKind, Retry};

#[derive(Clone)]
pub struct Mailer {
    client: Client,
    sender: String,
}

/// The mail's parts. Built from the user name, the URL and the first name only, so
/// no credential can end up in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Whether a first name is plainly a name: letters, combining marks, spaces, `'`,
/// `-`, `.`; at most 64 characters. Anything else (a URL, digits, symbols) could
/// turn the greeting into a message from someone else: it gets a neutral one.
pub fn plain_name(n: &str) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    let n = n.trim();
    !n.is_empty()
        && n.chars().count() <= 64
        && n.chars().any(char::is_alphabetic)
        && n.chars().all(|c| {
            matches!(c, ' ' | '\'' | '-' | '.')
                || crate::event::is_letter(c)
                || matches!(
                    get_general_category(c),
                    G::NonspacingMark
                        | G::SpacingMark
                        | G::EnclosingMark
                )
        })
        // "a.b" reads as a domain: a name has no dot between two letters.
        && !n
            .as_bytes()
            .windows(3)
            .any(|w| w[1] == b'.' && w[0].is_ascii_alphanumeric() && w[2].is_ascii_alphanumeric())
}

pub fn compose(user_name: &str, signin_url: &str, first_name: Option<&str>) -> Welcome {
    let hello = first_name
        .filter(|n| plain_name(n))
        .map(|n| format!("Hello {},", n.trim()))
        .unwrap_or_else(|| "Hello,".into());
    let text = format!(
        "{hello}\n\nYour AWS account is ready.\n\nUser name: {user_name}\nSign-in URL: {signin_url}\n\n\
         Your initial password is handed over separately by your administrator; you will be asked \
         to choose a new one at your first sign-in, then to set up MFA.\n"
    );
    let html = format!(
        "<p>{}</p><p>Your AWS account is ready.</p><p>User name: <b>{}</b><br>Sign-in URL: \
         <a href=\"{url}\">{url}</a></p><p>Your initial password is handed over separately by your \
         administrator; you will be asked to choose a new one at your first sign-in, then to set up MFA.</p>",
        escape(&hello),
        escape(user_name),
        url = escape(signin_url),
    );
    Welcome {
        subject: "Your AWS account is ready".into(),
        text,
        html,
    }
}

/// The key-rotation notice (contract section 11): a new key waits in the
/// employee's secret, the old one stops working on `deadline`. Built from the
/// user name and the date only: no key id, no key, nothing from the event.
pub fn compose_new_key(user_name: &str, deadline: &str) -> Welcome {
    let text = format!(
        "Hello,\n\nA new AWS access key has been issued for your user {user_name} and stored \
         where your credentials are kept; ask your administrator if you do not know where.\n\n\
         Please switch your tools to the new key. The previous key stops working on {deadline}.\n"
    );
    let html = format!(
        "<p>Hello,</p><p>A new AWS access key has been issued for your user <b>{}</b> and stored \
         where your credentials are kept; ask your administrator if you do not know where.</p>\
         <p>Please switch your tools to the new key. The previous key stops working on <b>{}</b>.</p>",
        escape(user_name),
        escape(deadline),
    );
    Welcome {
        subject: "A new AWS access key is waiting for you".into(),
        text,
        html,
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

impl Mailer {
    pub fn new(client: Client, sender: String) -> Self {
        Mailer { client, sender }
    }

    /// Sends one mail. Retried only on throttling: a mail whose fate is unknown is
    /// not sent again within this run (a redelivery may repeat it, never skip it).
    pub async fn send(&self, to: &str, w: &Welcome, b: &Budget) -> Result<(), AwsError> {
        let content = |s: &str| {
            Content::builder()
                .data(s)
                .charset("UTF-8")
                .build()
                .map_err(|e| AwsError::new("SendEmail", ErrorKind::Fatal, e.to_string()))
        };
        let message = Message::builder()
            .subject(content(&w.subject)?)
            .body(
                Body::builder()
                    .text(content(&w.text)?)
                    .html(content(&w.html)?)
                    .build(),
            )
            .build();
        let email = EmailContent::builder().simple(message).build();
        let dest = Destination::builder().to_addresses(to).build();
        call(b, Retry::ThrottleOnly, || async {
            self.client
                .send_email()
                .from_email_address(&self.sender)
                .destination(dest.clone())
                .content(email.clone())
                .send()
                .await
                .map_err(|e| classify("SendEmail", e))
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://acme.signin.aws.amazon.com/console";

    #[test]
    fn mail_holds_name_and_url_and_nothing_else_from_the_event() {
        let w = compose("jane.doe", URL, Some("Jane"));
        assert!(w.text.starts_with("Hello Jane,"));
        assert!(w.text.contains("User name: jane.doe"));
        assert!(w.text.contains(URL));
        assert!(w.html.contains("Hello Jane,"));
    }

    #[test]
    fn only_plain_names_are_greeted_by_name() {
        for ok in [
            "Jane",
            "Zoë",
            "Anne-Marie",
            "O'Brien",
            "J. R.",
            "José María",
            "李",
            "Nguyễn",
        ] {
            assert!(plain_name(ok), "{ok}");
            assert!(compose("u", URL, Some(ok))
                .text
                .starts_with(&format!("Hello {ok},")));
        }
        for bad in [
            "<Jane>",
            "evil.example.com",
            "https://evil.example.com",
            "Jane 2",
            "Call +1 555",
            "",
            "   ",
            "a&b",
            "Jane: reset at x",
            &"a".repeat(65),
        ] {
            assert!(!plain_name(bad), "{bad}");
            let w = compose("u", URL, Some(bad));
            assert!(w.text.starts_with("Hello,\n"), "{bad}: {}", w.text);
            if !bad.trim().is_empty() {
                assert!(!w.text.contains(bad) && !w.html.contains(bad), "{bad}");
            }
        }
        assert!(compose("u", URL, None).text.starts_with("Hello,\n"));
    }
}

#[cfg(test)]
mod new_key_tests {
    use super::*;

    #[test]
    fn the_new_key_notice_names_the_user_and_the_date_and_no_key() {
        let m = compose_new_key("jane.doe", "2026-12-14");
        assert!(m.text.contains("jane.doe") && m.text.contains("2026-12-14"));
        assert!(m.html.contains("<b>jane.doe</b>"));
        assert!(!m.text.contains("AKIA") && !m.html.contains("AKIA"));
        let m = compose_new_key("<x>", "d");
        assert!(m.html.contains("&lt;x&gt;") && !m.html.contains("<x>"));
    }
}
