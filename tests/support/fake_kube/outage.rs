//! The accept loop, with API server outages (`Outage`): each connection is served by hyper
//! until an outage starts (then it is closed); a connection accepted during a `Hang` is read and
//! never answered, one accepted during a `Close` is read and closed. `Unavailable` is answered
//! by the handler (503 to every request).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Outage, Shared};

/// Serves `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let app = axum::Router::new()
        .fallback(super::server::handle)
        .with_state(shared.clone());
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let outage = shared.outage.subscribe();
        tokio::spawn(connection(stream, app.clone(), outage));
    }
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    app: axum::Router,
    mut outage: tokio::sync::watch::Receiver<Outage>,
) {
    let now = *outage.borrow_and_update();
    match now {
        Outage::Hang => {
            // Read whatever comes and answer nothing, until the outage ends or the client
            // gives up.
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    r = stream.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                    r = outage.changed() => if r.is_err() || *outage.borrow() != Outage::Hang { return },
                }
            }
        }
        Outage::Close => {
            // The request is read (briefly), then the connection closes with no answer.
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
            return;
        }
        Outage::None | Outage::Unavailable => {}
    }
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        // Dropping the connection closes it: kept-alive clients meet the outage too.
        _ = outage.wait_for(|o| matches!(o, Outage::Hang | Outage::Close)) => {}
    }
}
