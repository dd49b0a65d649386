//! AWS plumbing for `bedrock`: SigV4 request signing with `aws-sigv4`, and the binary
//! event-stream framing of ConverseStream decoded with `aws-smithy-eventstream`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use switchyard_config::AwsAuth;

use super::{bedrock, StreamTranslate};

/// Signs Bedrock requests (service `bedrock`).
#[derive(Debug)]
pub struct Signer {
    identity: Identity,
    region: String,
}

impl Signer {
    /// Credentials from the config, else from `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub fn new(auth: &AwsAuth, env: &dyn Fn(&str) -> Option<String>) -> Result<Signer, String> {
        let (id, secret, token) = match (&auth.access_key_id, &auth.secret_access_key) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone(), auth.session_token.clone()),
            _ => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => (id, secret, env("AWS_SESSION_TOKEN")),
                _ => {
                    return Err("no AWS credentials: set aws_access_key_id and aws_secret_access_key, \
                                or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .into())
                }
            },
        };
        let identity = Credentials::new(id, secret, token, None, "switchyard").into();
        Ok(Signer { identity, region: auth.region.clone() })
    }

    /// The headers that sign a JSON `POST` of `body` to `url` (`authorization`,
    /// `x-amz-date`, and `x-amz-security-token` with temporary credentials).
    pub fn sign(&self, url: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
        self.sign_at(url, body, SystemTime::now())
    }

    fn sign_at(&self, url: &str, body: &[u8], time: SystemTime) -> Result<Vec<(String, String)>, String> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("bedrock")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let headers = [("content-type", "application/json")];
        let request = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

impl super::Sign for Signer {
    fn sign(&self, url: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
        Signer::sign(self, url, body)
    }
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| h.value().as_string().ok()).map(|s| s.as_str())
}

/// A ConverseStream body: binary event-stream frames decoded across reads, each
/// message handed to the Bedrock translator.
pub struct EventStream {
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    inner: bedrock::StreamTranslator,
}

impl EventStream {
    pub fn new(inner: bedrock::StreamTranslator) -> EventStream {
        EventStream { buf: BytesMut::new(), decoder: MessageFrameDecoder::new(), inner }
    }
}

impl StreamTranslate for EventStream {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match self.decoder.decode_frame(&mut self.buf).map_err(|e| format!("event-stream frame: {e}"))? {
                DecodedFrame::Complete(m) => {
                    let message_type = header(&m, ":message-type").unwrap_or("event");
                    let kind = header(&m, ":event-type").or_else(|| header(&m, ":exception-type")).unwrap_or("");
                    out.extend(self.inner.on_message(message_type, kind, m.payload())?);
                }
                DecodedFrame::Incomplete => return Ok(out),
            }
        }
    }

    fn finish(&mut self) -> Vec<Bytes> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue};

    use super::*;

    fn run(pieces: &[&[u8]]) -> Result<String, String> {
        let mut t = EventStream::new(bedrock::StreamTranslator::new("id".into(), "m".into(), 1));
        let mut out = Vec::new();
        for p in pieces {
            out.extend(t.feed(p)?);
        }
        out.extend(t.finish());
        Ok(String::from_utf8(out.concat()).unwrap())
    }

    fn auth() -> AwsAuth {
        AwsAuth {
            region: "us-west-2".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        }
    }

    #[test]
    fn signatures_name_the_scope_and_are_deterministic_for_a_time() {
        let s = Signer::new(&auth(), &|_| None).unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let url =
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
        let a = s.sign_at(url, b"{}", t).unwrap();
        let auth_header = &a.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth_header.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-west-2/bedrock/aws4_request")
        );
        assert!(auth_header.contains("SignedHeaders=content-type;host;x-amz-date"), "{auth_header}");
        assert!(a.iter().any(|(k, v)| k == "x-amz-date" && v == "20231114T221320Z"));
        assert_eq!(a, s.sign_at(url, b"{}", t).unwrap());
        assert_ne!(a, s.sign_at(url, b"{\"x\":1}", t).unwrap(), "the body is signed");
        // temporary credentials add the session token; none at all is a clear error
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ASIA1".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
            "AWS_SESSION_TOKEN" => Some("tok".to_string()),
            _ => None,
        };
        let from_env = AwsAuth { access_key_id: None, secret_access_key: None, ..auth() };
        let h = Signer::new(&from_env, &env).unwrap().sign_at(url, b"{}", t).unwrap();
        assert!(h.iter().any(|(k, v)| k == "x-amz-security-token" && v == "tok"));
        assert!(Signer::new(&from_env, &|_| None).unwrap_err().contains("no AWS credentials"));
    }

    fn frame(kind: &str, payload: &str) -> Vec<u8> {
        let m = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String(kind.to_string().into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }

    #[test]
    fn event_stream_frames_split_anywhere_become_chunks() {
        let mut body = Vec::new();
        body.extend(frame("messageStart", r#"{"role":"assistant"}"#));
        body.extend(frame("contentBlockDelta", r#"{"delta":{"text":"Hello"},"contentBlockIndex":0}"#));
        body.extend(frame("messageStop", r#"{"stopReason":"end_turn"}"#));
        body.extend(frame("metadata", r#"{"usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#));
        for split in [1, 7, body.len() / 2, body.len() - 1] {
            let text = run(&[&body[..split], &body[split..]]).unwrap();
            assert!(text.contains("\"content\":\"Hello\""), "{text}");
            assert!(text.contains("\"finish_reason\":\"stop\""));
            assert!(text.ends_with("data: [DONE]\n\n"), "split {split}: {text}");
        }
        // a corrupt frame is an error, not a hang
        let mut bad = frame("messageStart", "{}");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(run(&[&bad]).is_err());
    }
}
