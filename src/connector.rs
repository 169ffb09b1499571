//! A connector client for the gateway's API: the console connector behind `ctigate connect` and
//! `ctigate demo`, and the client the integration tests use.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A connector-side failure.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL is not `wss://host:port/path`.
    #[error("bad URL {0:?}: expected wss://host:port/v1/stream")]
    Url(String),
    /// TCP connect failed.
    #[error("connect {addr}: {source}")]
    Connect {
        /// Address.
        addr: String,
        /// Error.
        source: std::io::Error,
    },
    /// TLS failed.
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    /// TLS name invalid.
    #[error(transparent)]
    Name(#[from] crate::tls::TlsError),
    /// WebSocket failure.
    #[error("WebSocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The gateway refused (an `error` message, then close).
    #[error("refused: {code}: {message}")]
    Refused {
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The connection closed.
    #[error("connection closed ({code} {reason})")]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// A message that is not JSON.
    #[error("malformed message from the gateway: {0}")]
    Json(#[from] serde_json::Error),
}

impl ClientError {
    /// Whether trying again cannot help: the URL or server name is wrong, or the gateway's
    /// certificate is not signed by a trusted CA or not for that name. An expired (or not yet
    /// valid) certificate is not permanent: the gateway re-reads renewed ones on SIGHUP.
    pub fn is_permanent(&self) -> bool {
        use rustls::CertificateError as C;
        match self {
            ClientError::Url(_) | ClientError::Name(_) => true,
            ClientError::Tls(e) => {
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(c)) => !matches!(
                        c,
                        C::Expired
                            | C::ExpiredContext { .. }
                            | C::NotValidYet
                            | C::NotValidYetContext { .. }
                    ),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// What to check when [`ClientError::is_permanent`].
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ClientError::Tls(_) => Some(
                "is --ca the CA that signed the gateway's certificate, and the URL's host a name in it?",
            ),
            ClientError::Name(_) => Some("the URL's host must be a DNS name or an IP address"),
            _ => None,
        }
    }
}

/// A connected client.
pub struct Client {
    ws: WebSocketStream<TlsStream<TcpStream>>,
}

/// Splits `wss://host:port/path`.
pub fn parse_url(url: &str) -> Result<(String, u16, String), ClientError> {
    let rest = url
        .strip_prefix("wss://")
        .ok_or_else(|| ClientError::Url(url.into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = crate::config::split_host_port(hostport)
        .map(|(h, p)| (h.to_string(), p))
        .or_else(|| (!hostport.is_empty()).then(|| (hostport.to_string(), 443)))
        .ok_or_else(|| ClientError::Url(url.into()))?;
    Ok((host, port, path.to_string()))
}

impl Client {
    /// Opens TLS and the WebSocket.
    pub async fn connect(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Client, ClientError> {
        let (host, port, _) = parse_url(url)?;
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        Self::over(url, tcp, tls, &host).await
    }

    /// Opens TLS and the WebSocket over an existing TCP stream (tests tune the socket first).
    pub async fn over(
        url: &str,
        tcp: TcpStream,
        tls: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<Client, ClientError> {
        let name = crate::tls::server_name(host)?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(ClientError::Tls)?;
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        Ok(Client { ws })
    }

    /// Sends `hello` and waits for `welcome` (returned), or fails with the gateway's refusal.
    pub async fn hello(
        &mut self,
        token: &str,
        login_ids: &[String],
        resume: &HashMap<String, u64>,
    ) -> Result<Value, ClientError> {
        self.send(&json!({
            "type": "hello",
            "token": token,
            "login_ids": login_ids,
            "resume": resume,
            "client": concat!("ctigate-connect/", env!("CARGO_PKG_VERSION")),
        }))
        .await?;
        let first = self.recv().await?;
        match first["type"].as_str() {
            Some("welcome") => Ok(first),
            Some("error") => Err(ClientError::Refused {
                code: first["code"].as_str().unwrap_or("").into(),
                message: first["message"].as_str().unwrap_or("").into(),
            }),
            _ => Err(ClientError::Refused {
                code: "unexpected".into(),
                message: first.to_string(),
            }),
        }
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, v: &Value) -> Result<(), ClientError> {
        self.ws.send(Message::text(v.to_string())).await?;
        Ok(())
    }

    /// Sends raw text (tests of malformed input).
    pub async fn send_text(&mut self, t: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(t)).await?;
        Ok(())
    }

    /// The next JSON message; `Closed` when the gateway closes.
    pub async fn recv(&mut self) -> Result<Value, ClientError> {
        loop {
            match self.ws.next().await {
                None => {
                    return Err(ClientError::Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return Err(ClientError::Closed { code, reason });
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next raw text message, unparsed.
    pub async fn recv_raw(&mut self) -> Result<Bytes, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(Bytes::copy_from_slice(t.as_bytes())),
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return Err(ClientError::Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(ClientError::Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// One readable line for a gateway message (the console connector's output).
pub fn render(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("");
    let party = |k: &str| -> String {
        let p = &v[k];
        if p.is_null() {
            return "?".into();
        }
        match p["number"].as_str() {
            Some(n) => n.to_string(),
            None => p["kind"].as_str().unwrap_or("?").to_string(),
        }
    };
    match s("type") {
        "event" => {
            let mut line = format!(
                "{:<22} #{:<5} {:<18}",
                s("login_id"),
                v["seq"].as_u64().unwrap_or(0),
                s("event")
            );
            if v.get("calling").is_some() || v.get("called").is_some() {
                line.push_str(&format!(" {} → {}", party("calling"), party("called")));
            } else if v.get("at").is_some() {
                line.push_str(&format!(" at {}", party("at")));
            }
            if let Some(st) = v["state"].as_str() {
                line.push_str(&format!("  [{st}]"));
            }
            if let Some(d) = v["direction"].as_str() {
                line.push_str(&format!("  {d}"));
            }
            if v.get("associated_called").is_some() {
                line.push_str(&format!("  via {}", party("associated_called")));
            }
            if let Some(a) = v["account"].as_str() {
                // PBX-controlled text: quoted and escaped, so it cannot drive the terminal.
                line.push_str(&format!("  account {a:?}"));
            }
            if let Some(d) = v["user_data"].as_str() {
                line.push_str(&format!("  data {}", hex_text(d)));
            }
            if let Some(n) = v["charging"]["amount"].as_i64() {
                let amount = money(n, v["charging"]["multiplier"].as_str().unwrap_or("one"));
                let currency = v["charging"]["currency"].as_str().unwrap_or("");
                line.push_str(&format!("  charged {amount} {currency:?}"));
            } else if let Some(n) = v["charging"]["units"].as_u64() {
                line.push_str(&format!("  charged {n} units"));
            }
            if let Some(c) = v["call_id"].as_str() {
                let tail: String = c
                    .chars()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                line.push_str(&format!("  call …{tail}"));
            }
            line
        }
        "status" => format!(
            "{:<22} status {} ({})",
            s("login_id"),
            s("status").to_uppercase(),
            s("reason")
        ),
        "result" => {
            if v["ok"].as_bool() == Some(true) {
                format!(
                    "{:<22} {} ok{}",
                    s("login_id"),
                    s("command"),
                    v["call_id"]
                        .as_str()
                        .map(|c| format!(", call {c}"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "{:<22} {} FAILED: {} ({})",
                    s("login_id"),
                    s("command"),
                    v["error"]["code"].as_str().unwrap_or(""),
                    v["error"]["message"].as_str().unwrap_or("")
                )
            }
        }
        "snapshot" => format!(
            "{:<22} snapshot at #{}: {} call(s) up",
            s("login_id"),
            v["seq"].as_u64().unwrap_or(0),
            v["calls"].as_array().map_or(0, Vec::len)
        ),
        "gap" => format!(
            "{:<22} GAP: events #{}..#{} not replayable ({})",
            s("login_id"),
            v["from_seq"].as_u64().unwrap_or(0),
            v["to_seq"].as_u64().unwrap_or(0),
            s("reason")
        ),
        "welcome" => format!(
            "connected as {:?}: {} Login ID(s), {} refused",
            s("connector"),
            v["login_ids"].as_array().map_or(0, Vec::len),
            v["rejected"].as_array().map_or(0, Vec::len)
        ),
        "error" => format!("ERROR {}: {}", s("code"), s("message")),
        _ => v.to_string(),
    }
}

/// A CSTA currency amount in units of `multiplier` as a decimal (`1250`, `oneHundredth` →
/// `12.50`).
fn money(amount: i64, multiplier: &str) -> String {
    let (places, zeros) = match multiplier {
        "oneThousandth" => (3, 0),
        "oneHundredth" => (2, 0),
        "oneTenth" => (1, 0),
        "ten" => (0, 1),
        "hundred" => (0, 2),
        "thousand" => (0, 3),
        _ => (0, 0),
    };
    let scaled = i128::from(amount) * 10_i128.pow(zeros);
    if places == 0 {
        return scaled.to_string();
    }
    let unit = 10_i128.pow(places);
    let sign = if scaled < 0 { "-" } else { "" };
    let (whole, frac) = (scaled.abs() / unit, scaled.abs() % unit);
    format!("{sign}{whole}.{frac:0width$}", width = places as usize)
}

/// Hex-encoded data (CSTA `userData`) as text when it is printable ASCII, else as sent (with
/// control characters escaped: it is the PBX's text).
fn hex_text(hex: &str) -> String {
    match hex::decode(hex) {
        Ok(b) if !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
            format!("{:?}", String::from_utf8_lossy(&b))
        }
        _ => hex.escape_debug().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("wss://127.0.0.1:8443/v1/stream").unwrap(),
            ("127.0.0.1".into(), 8443, "/v1/stream".into())
        );
        assert_eq!(parse_url("wss://gw.example/v1/stream").unwrap().1, 443);
        assert!(parse_url("ws://x:1/").is_err());
    }

    #[test]
    fn renders_events() {
        let v = json!({"type":"event","login_id":"ABC","seq":3,"event":"delivered","state":"alerting","direction":"inbound",
            "calling":{"number":"+4930123","kind":"international"},"called":{"number":"4001","kind":"extension"},"call_id":"FF0001"});
        let line = render(&v);
        assert!(
            line.contains("ABC")
                && line.contains("delivered")
                && line.contains("+4930123 → 4001")
                && line.contains("[alerting]"),
            "{line}"
        );
        let v = json!({"type":"event","login_id":"ABC","seq":4,"event":"delivered",
            "associated_called":{"number":"+4989700100","kind":"international"},
            "user_data":"435553544F4D45523D34373131","account":"SUPPORT-17"});
        let line = render(&v);
        assert!(
            line.contains("via +4989700100")
                && line.contains("data \"CUSTOMER=4711\"")
                && line.contains("account \"SUPPORT-17\""),
            "{line}"
        );
        let v = json!({"type":"event","login_id":"ABC","seq":5,"event":"charging",
            "account":"\u{1b}[2J","charging":{"amount":1250,"currency":"EUR","multiplier":"oneHundredth"}});
        let line = render(&v);
        assert!(line.contains("charged 12.50 \"EUR\""), "{line}");
        assert!(
            !line.contains('\u{1b}'),
            "an escape sequence reached the terminal: {line:?}"
        );
        assert_eq!(money(-5, "oneThousandth"), "-0.005");
        assert_eq!(money(7, "hundred"), "700");
        assert_eq!(money(7, "one"), "7");
        assert_eq!(hex_text("00FF"), "00FF");
        assert_eq!(hex_text("zz"), "zz");
        assert_eq!(hex_text("\u{1b}[2J"), "\\u{1b}[2J");
    }
}
