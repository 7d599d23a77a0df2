//! Reaching an API server through an HTTP proxy: the cluster's `proxyUrl`, else `HTTPS_PROXY`/`HTTP_PROXY` and
//! `NO_PROXY` of the environment as curl and Go read them (loopback hosts are never proxied by the environment,
//! as kubectl's rule). The connection is a CONNECT tunnel; TLS to the API server runs end to end inside it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower::{BoxError, ServiceExt as _};

use super::transport::{CONNECT_TIMEOUT, HttpConnector, Resolver, tcp};

/// The largest head of a proxy's answer to CONNECT.
const MAX_ANSWER_HEAD: usize = 8 * 1024;

/// The proxy (its URL, password included) the connections to `cluster` go through: its `proxyUrl`, else the
/// environment's (see [`proxy_for`]).
pub(crate) fn of_cluster(cluster: &kubeauth_core::ClusterDetails) -> Option<String> {
    let uri: Uri = cluster.url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    proxy_for(cluster.proxy_url.as_deref(), host, uri.scheme_str() == Some("https"), |name| std::env::var(name).ok())
}

/// The proxy a cluster at `host` (an `https` one or not) is reached through: `configured` (its `proxyUrl`),
/// else the environment's, unless `NO_PROXY` or a loopback host says direct. `env` reads a variable.
pub(crate) fn proxy_for(
    configured: Option<&str>,
    host: &str,
    https: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    if let Some(url) = configured {
        return Some(url.to_owned());
    }
    let var = |name: &str| env(name).or_else(|| env(&name.to_ascii_lowercase())).filter(|v| !v.trim().is_empty());
    let proxy = if https { var("HTTPS_PROXY") } else { var("HTTP_PROXY") }?;
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let excluded =
        var("NO_PROXY").is_some_and(|list| list.split(',').any(|entry| no_proxy_matches(entry.trim(), host)));
    (!loopback && !excluded).then_some(proxy)
}

/// Whether one `NO_PROXY` entry covers `host`: `*`; the host itself; a domain and its subdomains
/// (`example.com` and `.example.com` both cover `api.example.com`); an IP address; a CIDR block.
fn no_proxy_matches(entry: &str, host: &str) -> bool {
    if entry.is_empty() {
        return false;
    }
    if entry == "*" {
        return true;
    }
    if let Some((network, bits)) = entry.split_once('/')
        && let (Ok(network), Ok(bits), Ok(ip)) =
            (network.parse::<IpAddr>(), bits.parse::<u32>(), host.parse::<IpAddr>())
    {
        return match (network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        };
    }
    // A port in the entry (`example.com:443`) is not told apart: the host decides.
    let domain = entry.trim_start_matches('.');
    let domain = domain.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(domain, |(d, _)| d);
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// A proxy, ready to open tunnels.
pub(crate) struct Proxy {
    /// `http://host:port` of the proxy, what the TCP connection is made to.
    address: Uri,
    /// `Basic …` from the URL's user information.
    authorization: Option<String>,
    /// The URL without user information, for messages.
    shown: String,
    /// When the cluster's addresses are pinned, the one the tunnel goes to (the proxy does not resolve the name).
    pinned: Option<IpAddr>,
    tcp: HttpConnector,
}

impl Proxy {
    /// The proxy of `url` (`http://[user:password@]host[:port]`), tunnelling to `pinned` when given.
    pub(crate) fn new(url: &str, pinned: Option<IpAddr>) -> Result<Self, String> {
        let shown = kubeauth_core::without_userinfo(url);
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("`{shown}` is not an http:// URL (kubeauth speaks to proxies in plain HTTP, then tunnels TLS)")
        })?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
        let address: Uri =
            format!("http://{host_port}/").parse().map_err(|_| format!("`{shown}` has no valid host and port"))?;
        if address.host().is_none_or(str::is_empty) {
            return Err(format!("`{shown}` has no host"));
        }
        let authorization =
            userinfo.map(|u| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(percent_decoded(u))));
        let tcp = tcp(Resolver::System(hyper_util::client::legacy::connect::dns::GaiResolver::new()));
        Ok(Self { address, authorization, shown, pinned, tcp })
    }

    /// A TCP connection to `target` through the proxy: CONNECT, then the bytes are the API server's.
    pub(crate) async fn tunnel(&self, target: &Uri) -> Result<TokioIo<TcpStream>, BoxError> {
        let host = target.host().ok_or("the API server's URL has no host")?;
        let port = target.port_u16().unwrap_or(if target.scheme_str() == Some("https") { 443 } else { 80 });
        let authority = match self.pinned {
            Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
            None => format!("{host}:{port}"),
        };
        let opened = async {
            let mut stream = self.tcp.clone().oneshot(self.address.clone()).await?.into_inner();
            let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
            if let Some(authorization) = &self.authorization {
                request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await?;
            // The answer's head only, a byte at a time: what follows it is the tunnel's.
            let mut head = Vec::with_capacity(128);
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() >= MAX_ANSWER_HEAD {
                    return Err(BoxError::from("its answer to CONNECT is too long"));
                }
                let mut byte = [0u8; 1];
                if stream.read(&mut byte).await? == 0 {
                    return Err("it closed the connection before answering CONNECT".into());
                }
                head.push(byte[0]);
            }
            let status = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
            match status.split(' ').nth(1) {
                Some("200") => Ok(TokioIo::new(stream)),
                _ => Err(format!("it refused the tunnel to {authority}: {}", status.trim()).into()),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(5), opened).await {
            Ok(Ok(io)) => Ok(io),
            Ok(Err(e)) => Err(format!("the proxy {}: {}", self.shown, kubeauth_core::report(&*e)).into()),
            Err(_) => Err(format!("the proxy {} did not open the tunnel in time", self.shown).into()),
        }
    }
}

/// `%xx` escapes of a URL's user information, decoded.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Opens the API server's TCP connections: directly, or through the cluster's proxy.
#[derive(Clone)]
pub(crate) struct Connect {
    pub(crate) direct: HttpConnector,
    pub(crate) proxy: Option<Arc<Proxy>>,
}

impl tower::Service<Uri> for Connect {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: Uri) -> Self::Future {
        match self.proxy.clone() {
            None => {
                let connecting = self.direct.call(target);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some(proxy) => Box::pin(async move { proxy.tunnel(&target).await }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_environment_chooses_the_proxy_as_curl_and_go_do() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("http_proxy", "http://plain.corp:8080"),
            ("no_proxy", "internal.corp, .svc,10.0.0.0/8,fd00::/8,exact.example.com:443"),
        ]);
        let via = |host: &str, https: bool| proxy_for(None, host, https, &vars);
        assert_eq!(via("api.eks.amazonaws.com", true).as_deref(), Some("http://proxy.corp:3128"));
        assert_eq!(via("api.eks.amazonaws.com", false).as_deref(), Some("http://plain.corp:8080"));
        for direct in
            ["internal.corp", "k8s.internal.corp", "kubernetes.default.svc", "10.1.2.3", "fd00::1", "exact.example.com"]
        {
            assert_eq!(via(direct, true), None, "{direct}");
        }
        assert_eq!(via("notinternal.corp", true).as_deref(), Some("http://proxy.corp:3128"));
        for loopback in ["127.0.0.1", "::1", "localhost"] {
            assert_eq!(via(loopback, true), None, "loopback is never proxied by the environment");
        }
        assert_eq!(proxy_for(Some("http://p:1"), "127.0.0.1", true, &vars).as_deref(), Some("http://p:1"));
        assert_eq!(
            proxy_for(None, "a.example.com", true, env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")])),
            None
        );
    }

    #[test]
    fn proxy_urls_are_checked_and_never_shown_with_their_password() {
        let proxy = Proxy::new("http://me:s%40cret@proxy.corp:3128", None).unwrap();
        assert_eq!(proxy.shown, "http://***@proxy.corp:3128");
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("me:s@cret"));
        assert_eq!(proxy.authorization.as_deref(), Some(expected.as_str()));
        let refused = Proxy::new("https://me:pw@proxy.corp", None).err().unwrap();
        assert!(refused.contains("is not an http:// URL") && !refused.contains("pw"), "{refused}");
    }
}
