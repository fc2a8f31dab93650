//! The network steps, below PostgreSQL's protocol: is the socket there and
//! listening, does the name resolve, does the port answer, does the server
//! accept TLS. Each finds the first thing wrong and says it in the standard's
//! words ("connection refused"), with the fix for where the DSN points.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::words::Place;
use super::Failure;

/// The socket directory holds `.s.PGSQL.<port>` and a server answers on it.
pub(super) async fn socket(
    place: &Place,
    dir: &Path,
    file: &Path,
    timeout: Duration,
) -> Result<String, Failure> {
    if !dir.is_dir() {
        return Err(Failure::new(
            format!("socket directory {} does not exist", dir.display()),
            place.start_server(),
        ));
    }
    if !file.exists() {
        return Err(Failure::new(
            format!(
                "no socket {} in {}: nothing listens there on port {}",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                dir.display(),
                place.port()
            ),
            format!(
                "{}; or fix the port (the socket file's name carries it)",
                place.start_server()
            ),
        ));
    }
    match tokio::time::timeout(timeout, UnixStream::connect(file)).await {
        Ok(Ok(_)) => Ok(format!("{} accepts connections", file.display())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(Failure::new(
            format!(
                "connection refused on {}: the socket file is there but no server listens (left behind by a stopped server or proxy)",
                file.display()
            ),
            place.start_server(),
        )),
        Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => Err(Failure::new(
            format!("permission denied opening {}", file.display()),
            "run as a user allowed to open the socket (its directory and file permissions decide; \
             e.g. a member of the server's group)"
                .to_string(),
        )),
        Ok(Err(e)) => Err(Failure::new(
            format!("cannot connect to {}: {e}", file.display()),
            place.start_server(),
        )),
        Err(_) => Err(Failure::new(
            format!("{} did not accept a connection within {} s", file.display(), timeout.as_secs_f64()),
            "the server (or proxy) is overloaded or stuck; look at its log".to_string(),
        )),
    }
}

/// The host name resolves to at least one address.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Failure> {
    let lookup = tokio::net::lookup_host((host, port));
    let fix =
        "check the host in the DSN; for Cloud SQL over private IP use the instance's address \
               (gcloud sql instances describe INSTANCE --format='value(ipAddresses)')";
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(Failure::new(
                    format!("host name {host} resolves to no address"),
                    fix.to_string(),
                ))
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(Failure::new(
            format!("host name {host} does not resolve: {e}"),
            fix.to_string(),
        )),
        Err(_) => Err(Failure::new(
            format!(
                "resolving {host} took longer than {} s",
                timeout.as_secs_f64()
            ),
            "check the DNS servers this machine uses (/etc/resolv.conf)".to_string(),
        )),
    }
}

/// The first address that accepts a TCP connection, and the open stream.
pub(super) async fn tcp(
    place: &Place,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(SocketAddr, TcpStream), Failure> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((*addr, stream)),
            Ok(Err(e)) => last = Some((*addr, Some(e))),
            Err(_) => last = Some((*addr, None)),
        }
    }
    let (addr, error) = last.expect("resolve returns at least one address");
    Err(match error {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => Failure::new(
            format!(
                "connection refused by {addr}: nothing listens on port {}",
                addr.port()
            ),
            place.start_server(),
        ),
        Some(e) => Failure::new(format!("cannot connect to {addr}: {e}"), place.no_route()),
        None => Failure::new(
            format!(
                "no answer from {addr} within {} s: packets are dropped or there is no route",
                timeout.as_secs_f64()
            ),
            place.no_route(),
        ),
    })
}

/// PostgreSQL's SSLRequest: `S` means the server will do TLS, `N` that it
/// will not.
pub(super) async fn offers_tls(mut stream: TcpStream, timeout: Duration) -> Result<bool, Failure> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let exchange = async {
        stream.write_all(&SSL_REQUEST).await?;
        stream.read_u8().await
    };
    let not_postgres = "check the port: PostgreSQL (and cloud-sql-proxy) listen on 5432 by default";
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(b'S')) => Ok(true),
        Ok(Ok(b'N')) => Ok(false),
        Ok(Ok(other)) => Err(Failure::new(
            format!("the server answered the TLS request with {other:#04x}: this does not look like PostgreSQL"),
            not_postgres.to_string(),
        )),
        Ok(Err(e)) => Err(Failure::new(
            format!("the connection closed on the TLS request ({e}): this does not look like PostgreSQL"),
            not_postgres.to_string(),
        )),
        Err(_) => Err(Failure::new(
            format!("no answer to the TLS request within {} s", timeout.as_secs_f64()),
            not_postgres.to_string(),
        )),
    }
}
