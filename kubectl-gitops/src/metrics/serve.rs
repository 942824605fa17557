//! `--serve`: `/metrics` (the format the scraper's `Accept` prefers) and `/healthz` over
//! HTTP/1.1, until SIGINT or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shared::{Error, Result};

use super::{Exporter, Format};

pub async fn serve(addr: SocketAddr, exporter: Arc<Exporter>) -> Result<i32> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::refused(format!("--serve {addr}: cannot listen: {e}"))
            .hint("choose another address or port (port 0 picks a free one)")
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    // One line a supervisor or a test can read the port from (with port 0).
    eprintln!("serving http://{bound}/metrics and http://{bound}/healthz");
    let mut stop = std::pin::pin!(stop_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        crate::log::info(2, format!("accepting a connection: {e}"));
                        continue;
                    }
                };
                let exporter = exporter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(exporter.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = &mut stop => return Ok(0),
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn answer(
    exporter: Arc<Exporter>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let response = match (req.uri().path(), readable) {
        ("/metrics", true) => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let (body, content_type) = exporter.scrape(Format::negotiate(accept));
            reply(StatusCode::OK, content_type, body)
        }
        ("/healthz", true) => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        ("/metrics" | "/healthz", false) => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET or HEAD\n".into(),
            );
            r.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the exporter serves /metrics and /healthz\n".into(),
        ),
    };
    Ok(response)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}
