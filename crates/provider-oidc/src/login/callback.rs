//! The one-shot loopback listener that receives the browser's redirect (`GET /callback?code=…&state=…`).

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::LoginError;

const DONE: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>kubeauth</title></head>\
<body><h1>Logged in</h1><p>You can close this window and return to the terminal.</p></body></html>";

/// Serves requests until one to `/callback` arrives; returns its `code` when its `state` is `expected_state`.
pub(super) async fn wait(listener: &TcpListener, expected_state: &str, provider: &str) -> Result<String, LoginError> {
    loop {
        let (mut stream, _) = listener.accept().await.map_err(|source| LoginError::Io {
            provider: provider.to_owned(),
            what: "cannot accept the login redirect".into(),
            source,
        })?;
        let Some(target) = read_target(&mut stream).await else { continue };
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else { continue };
        if url.path() != "/callback" {
            let _ = respond(&mut stream, "404 Not Found", "not found").await;
            continue;
        }
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        // The state first: a page that makes the browser request `/callback?error=…` must not end the login.
        if param("state").as_deref() != Some(expected_state) {
            // Not the redirect of this login (a stale tab, or a forged request): keep waiting for the real one.
            let _ = respond(&mut stream, "400 Bad Request", &page("Login failed", "unexpected state")).await;
            tracing::warn!(provider, "ignored a login redirect with the wrong state");
            continue;
        }
        if let Some(error) = param("error") {
            let description = param("error_description").map(|d| format!(": {d}")).unwrap_or_default();
            let _ = respond(&mut stream, "200 OK", &page("Login failed", &format!("{error}{description}"))).await;
            return Err(LoginError::Rejected {
                provider: provider.to_owned(),
                what: "authorization",
                message: format!("{error}{description}"),
            });
        }
        let Some(code) = param("code") else {
            let _ = respond(&mut stream, "400 Bad Request", &page("Login failed", "no code")).await;
            continue;
        };
        let _ = respond(&mut stream, "200 OK", DONE).await;
        return Ok(code);
    }
}

/// The request target of an HTTP/1 request head (at most 16 KiB), or `None` for anything else.
async fn read_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await.ok()?.ok()?;
        if read == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?.to_owned();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Some(target.to_owned()),
        _ => None,
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn page(title: &str, text: &str) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>kubeauth</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        escape(title),
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, target: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn only_the_redirect_with_the_logins_state_ends_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = tokio::spawn(async move { wait(&listener, "the-state", "okta").await });
        // A forged error without the state, and one with a wrong state: ignored.
        assert!(get(addr, "/callback?error=access_denied").await.starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/callback?error=access_denied&state=guess").await.starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/callback?code=stolen&state=guess").await.starts_with("HTTP/1.1 400"));
        assert!(!waiting.is_finished());
        assert!(get(addr, "/callback?code=the-code&state=the-state").await.starts_with("HTTP/1.1 200"));
        assert_eq!(waiting.await.unwrap().unwrap(), "the-code");
    }
}
