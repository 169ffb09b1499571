//! Link transport: dial or accept, plain TCP or TLS.

use crate::config::{LinkMode, PbxConfig, split_host_port};
use crate::tls::{self, Reloadable, TlsError};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A byte stream to a PBX: TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed stream.
pub type Stream = Box<dyn Io>;

/// Connecting to (or being connected by) a PBX failed.
#[derive(Debug, Error)]
pub enum TransportError {
    /// TCP connect, bind or accept failed.
    #[error("{op} {addr}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (wrong certificate, wrong name, plain TCP peer, …).
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        /// The peer.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address is not usable.
    #[error("bad address {0:?}")]
    Address(String),
    /// Connecting or the TLS handshake took longer than the link's `handshake_timeout_ms` (a peer
    /// that accepts TCP but never answers, e.g. TLS pointed at a plain-TCP port).
    #[error("{op} {addr}: no answer within {ms} ms")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The address or peer.
        addr: String,
        /// The limit.
        ms: u128,
    },
}

impl TransportError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::Io { .. } => "io",
            TransportError::Handshake { .. } => "tls_handshake",
            TransportError::Tls(_) => "tls_config",
            TransportError::Address(_) => "address",
            TransportError::Timeout { .. } => "timeout",
        }
    }
}

/// A connection, TLS handshake done.
pub struct Connected {
    /// The stream.
    pub stream: Stream,
    /// The peer's address.
    pub peer: String,
    /// When the certificate the peer presented expires (seconds since the Unix epoch), if it
    /// presented one.
    pub peer_cert_expiry: Option<i64>,
}

impl Connected {
    fn plain(stream: Stream, peer: String) -> Connected {
        Connected {
            stream,
            peer,
            peer_cert_expiry: None,
        }
    }
}

/// The expiry of the first (leaf) certificate of a TLS peer's chain.
fn leaf_expiry(chain: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Option<i64> {
    tls::der_not_after(chain?.first()?).ok()
}

/// How a link gets its connection.
pub enum Transport {
    /// The gateway dials.
    Dial {
        /// `host:port`.
        addr: String,
        /// TLS client config and the name to verify.
        tls: Option<(Reloadable<rustls::ClientConfig>, ServerName<'static>)>,
    },
    /// The PBX dials us.
    Accept {
        /// Address to listen on.
        addr: String,
        /// Bound lazily, kept across connections.
        listener: Option<TcpListener>,
        /// TLS server config.
        tls: Option<Reloadable<rustls::ServerConfig>>,
    },
}

/// The replaceable TLS config inside a transport, kept by the gateway for reloads.
#[derive(Clone)]
pub enum TlsHandle {
    /// A dialing link's client config.
    Client(Reloadable<rustls::ClientConfig>),
    /// An accepting link's server config.
    Server(Reloadable<rustls::ServerConfig>),
}

impl Transport {
    /// Builds the transport of a PBX config, loading its TLS material.
    pub fn from_config(p: &PbxConfig) -> Result<Transport, TransportError> {
        match p.mode {
            LinkMode::Dial => Ok(Transport::Dial {
                addr: p.address.clone(),
                tls: client_tls(p)?.map(|(c, n)| (Reloadable::new(c), n)),
            }),
            LinkMode::Accept => Ok(Transport::Accept {
                addr: p.address.clone(),
                listener: None,
                tls: server_tls(p)?.map(Reloadable::new),
            }),
        }
    }

    /// The transport's TLS config, to replace it later ([`Transport::reload`]); `None` without TLS.
    pub fn tls_handle(&self) -> Option<TlsHandle> {
        match self {
            Transport::Dial { tls, .. } => tls.as_ref().map(|(c, _)| TlsHandle::Client(c.clone())),
            Transport::Accept { tls, .. } => tls.clone().map(TlsHandle::Server),
        }
    }

    /// Re-reads the TLS files of `p` into `handle`, for connections made from now on. On error
    /// the config in use stays.
    pub fn reload(handle: &TlsHandle, p: &PbxConfig) -> Result<(), TransportError> {
        match handle {
            TlsHandle::Client(c) => {
                if let Some((cfg, _)) = client_tls(p)? {
                    c.replace(cfg);
                }
            }
            TlsHandle::Server(s) => {
                if let Some(cfg) = server_tls(p)? {
                    s.replace(cfg);
                }
            }
        }
        Ok(())
    }

    /// A dialing transport with an explicit TLS client config (demo and tests).
    pub fn dial(
        addr: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    ) -> Transport {
        Transport::Dial {
            addr,
            tls: tls.map(|(c, n)| (Reloadable::new(c), n)),
        }
    }

    /// An accepting transport with an explicit TLS server config (demo and tests).
    pub fn accept(addr: String, tls: Option<Arc<rustls::ServerConfig>>) -> Transport {
        Transport::Accept {
            addr,
            listener: None,
            tls: tls.map(Reloadable::new),
        }
    }

    /// True when TLS is configured.
    pub fn is_tls(&self) -> bool {
        match self {
            Transport::Dial { tls, .. } => tls.is_some(),
            Transport::Accept { tls, .. } => tls.is_some(),
        }
    }

    /// Waits for the next connection. Returns the stream and the peer address. Dialing (TCP and
    /// TLS) and an accepted connection's TLS handshake each get at most `limit`; waiting for a
    /// PBX to connect does not.
    pub async fn connect(&mut self, limit: Duration) -> Result<Connected, TransportError> {
        match self {
            Transport::Dial { addr, tls } => {
                let tls = tls
                    .as_ref()
                    .map(|(c, n)| (TlsConnector::from(c.current()), n.clone()));
                tokio::time::timeout(limit, Transport::dial_once(addr.clone(), tls))
                    .await
                    .map_err(|_| TransportError::Timeout {
                        op: "connect",
                        addr: addr.clone(),
                        ms: limit.as_millis(),
                    })?
            }
            Transport::Accept { .. } => {
                let tls = self.tls_acceptor();
                let (tcp, peer) = self.accept_tcp().await?;
                accept_handshake(tls, tcp, peer.to_string(), limit).await
            }
        }
    }

    /// Accept mode: the next TCP connection (binding the listener on first use). Not for dial
    /// mode, where it fails with [`TransportError::Address`].
    pub async fn accept_tcp(&mut self) -> Result<(TcpStream, SocketAddr), TransportError> {
        let Transport::Accept { addr, listener, .. } = self else {
            return Err(TransportError::Address("not an accepting transport".into()));
        };
        if listener.is_none() {
            let l =
                TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|source| TransportError::Io {
                        op: "bind",
                        addr: addr.clone(),
                        source,
                    })?;
            *listener = Some(l);
        }
        let Some(l) = listener.as_ref() else {
            return Err(TransportError::Address(addr.clone()));
        };
        let (tcp, peer) = l.accept().await.map_err(|source| TransportError::Io {
            op: "accept",
            addr: addr.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        Ok((tcp, peer))
    }

    /// Accept mode: the TLS acceptor, when TLS is configured.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        match self {
            Transport::Accept { tls, .. } => tls.as_ref().map(|t| TlsAcceptor::from(t.current())),
            Transport::Dial { .. } => None,
        }
    }

    /// One TCP connect and TLS handshake.
    async fn dial_once(
        addr: String,
        tls: Option<(TlsConnector, ServerName<'static>)>,
    ) -> Result<Connected, TransportError> {
        let tcp = TcpStream::connect(addr.as_str())
            .await
            .map_err(|source| TransportError::Io {
                op: "connect",
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| addr.clone(), |a| a.to_string());
        match tls {
            None => Ok(Connected::plain(Box::new(tcp), peer)),
            Some((connector, name)) => {
                let s = connector.connect(name, tcp).await.map_err(|source| {
                    TransportError::Handshake {
                        addr: peer.clone(),
                        source,
                    }
                })?;
                let peer_cert_expiry = leaf_expiry(s.get_ref().1.peer_certificates());
                Ok(Connected {
                    stream: Box::new(s),
                    peer,
                    peer_cert_expiry,
                })
            }
        }
    }
}

/// The client config of a dialing `[[pbx]]` with TLS, from its files, and the name to verify.
fn client_tls(
    p: &PbxConfig,
) -> Result<Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>, TransportError> {
    if !p.tls {
        return Ok(None);
    }
    let ca = p
        .tls_ca
        .as_deref()
        .ok_or_else(|| TransportError::Address("tls_ca missing".into()))?;
    let cfg = tls::client_config_from_files(ca, p.tls_cert.as_deref(), p.tls_key.as_deref())?;
    let host = match &p.tls_server_name {
        Some(n) => n.clone(),
        None => split_host_port(&p.address)
            .map(|(h, _)| h.to_string())
            .ok_or_else(|| TransportError::Address(p.address.clone()))?,
    };
    Ok(Some((cfg, tls::server_name(&host)?)))
}

/// The server config of an accepting `[[pbx]]` with TLS, from its files.
fn server_tls(p: &PbxConfig) -> Result<Option<Arc<rustls::ServerConfig>>, TransportError> {
    if !p.tls {
        return Ok(None);
    }
    let (cert, key) = p
        .tls_cert
        .as_deref()
        .zip(p.tls_key.as_deref())
        .ok_or_else(|| TransportError::Address("tls_cert/tls_key missing".into()))?;
    Ok(Some(tls::server_config_from_files(
        cert,
        key,
        p.tls_client_ca.as_deref(),
    )?))
}

/// Completes an accepted connection: its TLS handshake, if TLS is configured, within `limit`.
pub async fn accept_handshake(
    tls: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: String,
    limit: Duration,
) -> Result<Connected, TransportError> {
    match tls {
        None => Ok(Connected::plain(Box::new(tcp), peer)),
        Some(acceptor) => {
            let s = tokio::time::timeout(limit, acceptor.accept(tcp))
                .await
                .map_err(|_| TransportError::Timeout {
                    op: "TLS handshake with",
                    addr: peer.clone(),
                    ms: limit.as_millis(),
                })?
                .map_err(|source| TransportError::Handshake {
                    addr: peer.clone(),
                    source,
                })?;
            // With `tls_client_ca` the PBX presents a certificate; without, there is none.
            let peer_cert_expiry = leaf_expiry(s.get_ref().1.peer_certificates());
            Ok(Connected {
                stream: Box::new(s),
                peer,
                peer_cert_expiry,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{DevCerts, server_name};

    /// TLS dialed at a port that accepts TCP but never speaks (a plain-TCP PBX port) fails with a
    /// timeout instead of hanging the link.
    #[tokio::test]
    async fn a_silent_peer_times_out_the_tls_handshake() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let certs = DevCerts::generate(&[], "t").unwrap();
        let mut t = Transport::dial(
            addr,
            Some((
                certs.client_config(false).unwrap(),
                server_name("localhost").unwrap(),
            )),
        );
        let e = t.connect(Duration::from_millis(200)).await.err().unwrap();
        assert_eq!(e.kind(), "timeout");
        assert!(e.to_string().contains("no answer within 200 ms"), "{e}");
        hold.abort();
    }

    /// A reload re-reads the link's TLS files for new connections: a PBX whose certificate the
    /// old CA did not sign is refused before and accepted after; a file that does not parse
    /// leaves the loaded CA in use.
    #[tokio::test]
    async fn a_reload_re_reads_the_ca_for_new_connections() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let old = DevCerts::generate(&[], "t").unwrap();
        let renewed = DevCerts::generate(&[], "t").unwrap();
        old.write(dir.path()).unwrap();
        // The PBX presents a certificate of the new CA.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(renewed.server_config(false).unwrap());
        let pbx = tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let a = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = a.accept(tcp).await {
                        let _ = s.write_all(b"x").await;
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                });
            }
        });
        let ca = dir.path().join("ca.pem");
        let toml = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n[[pbx]]\nname = \"p\"\nprotocol = \"csta-xml\"\nmode = \"dial\"\naddress = \"localhost:{port}\"\ntls_ca = {ca:?}\n"
        );
        let cfg = crate::config::Config::parse(&toml).unwrap();
        let p = &cfg.pbx[0];
        let mut t = Transport::from_config(p).unwrap();
        let h = t.tls_handle().unwrap();
        let limit = Duration::from_secs(5);
        let e = t.connect(limit).await.err().unwrap();
        assert_eq!(e.kind(), "tls_handshake", "{e}");
        renewed.write(dir.path()).unwrap();
        Transport::reload(&h, p).unwrap();
        let c = t.connect(limit).await.unwrap();
        // The renewed server certificate is valid for 397 days.
        let left = c.peer_cert_expiry.unwrap() - (crate::model::now_ms() / 1000) as i64;
        assert!((396 * 86_400..=398 * 86_400).contains(&left), "{left}");
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = Transport::reload(&h, p).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        t.connect(limit).await.unwrap();
        pbx.abort();
    }
}
