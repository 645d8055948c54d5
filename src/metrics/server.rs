//! A minimal HTTP endpoint for Prometheus: answers `GET /metrics` and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Longest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves `render()` at `/metrics` on `listener` until the task is dropped.
pub async fn serve<F>(listener: TcpListener, render: Arc<F>)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), answer(&mut stream, peer, &*render))
                    .await;
        });
    }
}

async fn answer<F: Fn() -> String>(
    stream: &mut tokio::net::TcpStream,
    _peer: SocketAddr,
    render: &F,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    // Read until the end of the request head.
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head
        .lines()
        .next()
        .and_then(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("GET")).then(|| it.next()).flatten()
        })
        .unwrap_or("");
    let response = if path == "/metrics" || path.starts_with("/metrics?") {
        let body = render();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            body.len(),
            body
        )
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before an oversized request is fully sent.
        let _ = s.write_all(req).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_and_404() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(serve(l, Arc::new(|| "consort_height 7\n".to_string())));
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("consort_height 7\n"),
            "{ok}"
        );
        let nf = get(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let big = vec![b'a'; MAX_REQUEST];
        let refused = get(addr, &big).await;
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        task.abort();
    }
}
