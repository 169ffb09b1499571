//! TLS material: loading PEM files into rustls configs, and generating a development CA with a
//! server and a client certificate (`ctigate gen-certs`, the demo, the tests).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// TLS setup failed.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material (key does not match, bad CA, …).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Generating a certificate failed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// A server name that is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// Writing generated files failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect();
    let certs = certs.map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Reads the private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, e))
}

fn pem_err(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// A certificate and key rustls refused, said in words an operator acts on.
fn key_err(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::Config("the private key does not belong to the certificate".into())
        }
        e => TlsError::Config(e.to_string()),
    }
}

/// A server config from DER material; with `client_ca`, client certificates are required.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(roots(ca)?)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(key_err)?;
    // Our cipher-suite preference (rustls's, strongest first) wins over the client's.
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// Whether `key` is the private key of the first certificate of `chain`, and of a kind rustls
/// can use.
pub fn check_key_pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), TlsError> {
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(drop)
        .map_err(key_err)
}

/// Whether the CA file `ca` makes a client-certificate verifier (PEM, usable CA certificates).
pub fn client_verifier_from_file(ca: &Path) -> Result<(), TlsError> {
    WebPkiClientVerifier::builder(roots(load_certs(ca)?)?)
        .build()
        .map(drop)
        .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))
}

/// A server config from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let ca = client_ca.map(load_certs).transpose()?;
    server_config(load_certs(cert)?, load_key(key)?, ca)
}

/// A client config trusting `ca`, optionally presenting a client certificate.
pub fn client_config(
    ca: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder().with_root_certificates(roots(ca)?);
    let cfg = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(key_err)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// A client config from PEM files.
pub fn client_config_from_files(
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((load_certs(c)?, load_key(k)?)),
        _ => None,
    };
    client_config(load_certs(ca)?, client)
}

/// A TLS config that can be replaced while in use (the files re-read on SIGHUP): each new
/// connection takes the config current when it starts, established ones keep theirs.
#[derive(Debug)]
pub struct Reloadable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable(self.0.clone())
    }
}

impl<T> Reloadable<T> {
    /// Holds `config`.
    pub fn new(config: Arc<T>) -> Reloadable<T> {
        Reloadable(Arc::new(RwLock::new(config)))
    }

    /// The config to start a connection with.
    pub fn current(&self) -> Arc<T> {
        // A writer cannot panic while holding the lock (it only swaps an `Arc`), so poisoning
        // is impossible; recovering keeps the type honest anyway.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the config for connections started from now on.
    pub fn replace(&self, config: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// What identifies the certificate a PEM file starts with (the leaf of a chain): when it expires
/// and its fingerprint, so a log line can show which certificate is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 of the DER certificate, hex (as `openssl x509 -fingerprint -sha256` shows it,
    /// without the colons).
    pub sha256: String,
}

/// The [`CertInfo`] of the first certificate in a PEM file.
pub fn cert_info(path: &Path) -> Result<CertInfo, TlsError> {
    use sha2::Digest;
    let certs = load_certs(path)?;
    // `load_certs` refuses a file without a certificate, so there is a first one.
    let der = certs.first().ok_or_else(|| TlsError::Pem {
        path: path.to_owned(),
        message: "no CERTIFICATE block found".into(),
    })?;
    let not_after = der_not_after(der).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: format!("not an X.509 certificate: {e}"),
    })?;
    Ok(CertInfo {
        not_after,
        sha256: hex::encode_upper(sha2::Sha256::digest(der.as_ref())),
    })
}

/// When a DER certificate expires, in seconds since the Unix epoch.
pub fn der_not_after(der: &[u8]) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp())
}

/// Parses a server name for verification (DNS name or IP address).
pub fn server_name(s: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(s.to_owned()).map_err(|_| TlsError::ServerName(s.to_owned()))
}

/// A development CA with one server and one client certificate, all in PEM.
pub struct DevCerts {
    /// CA certificate.
    pub ca_pem: String,
    /// CA private key.
    pub ca_key_pem: String,
    /// Server certificate (signed by the CA).
    pub server_pem: String,
    /// Server private key.
    pub server_key_pem: String,
    /// Client certificate (signed by the CA), for mTLS.
    pub client_pem: String,
    /// Client private key.
    pub client_key_pem: String,
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

impl DevCerts {
    /// Generates a CA, a server certificate valid for `localhost`, `127.0.0.1`, `::1` and
    /// `extra_names`, and a client certificate named `client_name`.
    pub fn generate(extra_names: &[String], client_name: &str) -> Result<DevCerts, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ctigate development CA");
        dn.push(DnType::OrganizationName, "ctigate");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let now = time::OffsetDateTime::now_utc();
        // Bounded validity: five years for the CA, 397 days for leaves (what browsers accept).
        ca_params.not_before = now - time::Duration::days(1);
        ca_params.not_after = now + time::Duration::days(5 * 365);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(gen_err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        names.extend(extra_names.iter().cloned());
        let mut sp = CertificateParams::new(names).map_err(gen_err)?;
        sp.distinguished_name
            .push(DnType::CommonName, "ctigate server");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.not_before = now - time::Duration::days(1);
        sp.not_after = now + time::Duration::days(397);
        let server_key = KeyPair::generate().map_err(gen_err)?;
        let server_cert = sp.signed_by(&server_key, &issuer).map_err(gen_err)?;

        let mut cp = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        cp.distinguished_name.push(DnType::CommonName, client_name);
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        cp.not_before = now - time::Duration::days(1);
        cp.not_after = now + time::Duration::days(397);
        let client_key = KeyPair::generate().map_err(gen_err)?;
        let client_cert = cp.signed_by(&client_key, &issuer).map_err(gen_err)?;

        Ok(DevCerts {
            ca_pem: ca_cert.pem(),
            ca_key_pem,
            server_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// Writes the files into `dir`: `ca.pem`, `ca.key.pem`, `server.pem`, `server.key.pem`,
    /// `client.pem`, `client.key.pem` (keys readable by the owner only).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let files = [
            ("ca.pem", &self.ca_pem, false),
            ("ca.key.pem", &self.ca_key_pem, true),
            ("server.pem", &self.server_pem, false),
            ("server.key.pem", &self.server_key_pem, true),
            ("client.pem", &self.client_pem, false),
            ("client.key.pem", &self.client_key_pem, true),
        ];
        let mut out = vec![];
        for (name, pem, secret) in files {
            let path = dir.join(name);
            write_file(&path, pem.as_bytes(), secret).map_err(|source| TlsError::Write {
                path: path.clone(),
                source,
            })?;
            out.push(path);
        }
        Ok(out)
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<CertificateDer<'static>> {
        pem_certs(&self.ca_pem)
    }

    /// Server config with this server certificate; with `require_client`, clients must present a
    /// certificate from this CA.
    pub fn server_config(&self, require_client: bool) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(
            pem_certs(&self.server_pem),
            pem_key(&self.server_key_pem)?,
            require_client.then(|| self.ca_der()),
        )
    }

    /// Client config trusting this CA; with `present_cert`, presenting the client certificate.
    pub fn client_config(&self, present_cert: bool) -> Result<Arc<ClientConfig>, TlsError> {
        let client = if present_cert {
            Some((pem_certs(&self.client_pem), pem_key(&self.client_key_pem)?))
        } else {
            None
        };
        client_config(self.ca_der(), client)
    }
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Config(e.to_string()))
}

fn write_file(path: &Path, data: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    opts.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_builds_configs_and_files_load() {
        let certs = DevCerts::generate(&["pbx.example".into()], "crm-connector").unwrap();
        certs.server_config(true).unwrap();
        certs.client_config(true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = certs.write(dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        server_config_from_files(
            &dir.path().join("server.pem"),
            &dir.path().join("server.key.pem"),
            Some(&dir.path().join("ca.pem")),
        )
        .unwrap();
        client_config_from_files(
            &dir.path().join("ca.pem"),
            Some(&dir.path().join("client.pem")),
            Some(&dir.path().join("client.key.pem")),
        )
        .unwrap();
        let e = load_certs(&dir.path().join("server.key.pem")).unwrap_err();
        assert!(e.to_string().contains("server.key.pem"), "{e}");
    }
}
