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

pub fn compose(user_name: &str, signin_url: &str, first_name: Option<&str>) -> Welcome {
    let hello = first_name
        .map(|n| format!("Hello {n},"))
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

    #[test]
    fn mail_holds_name_and_url_and_escapes_html() {
        let w = compose(
            "jane.doe",
            "https://acme.signin.aws.amazon.com/console",
            Some("<Jane>"),
        );
        assert!(w.text.contains("User name: jane.doe"));
        assert!(w
            .text
            .contains("https://acme.signin.aws.amazon.com/console"));
        assert!(w.html.contains("&lt;Jane&gt;") && !w.html.contains("<Jane>"));
    }
}
