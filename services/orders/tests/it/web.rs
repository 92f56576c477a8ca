//! Browsers call the orders service with gRPC-Web, over HTTP/1.1, on the
//! same port as native gRPC; CORS lets only the configured origins' pages in.

use bytes::{Buf, Bytes, BytesMut};
use harvest_proto::common::v1::OrderState;
use harvest_proto::orders::v1::{
    CancelOrderRequest, GetOrderRequest, OrderUpdate, WatchOrderRequest,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use crate::helpers::*;

const STOREFRONT: &str = "http://127.0.0.1:8080";

type Http = Client<HttpConnector, Full<Bytes>>;

fn http1() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A browser's preflight for a gRPC-Web call to `method` from `origin`.
async fn preflight(http: &Http, grpc: std::net::SocketAddr, origin: &str) -> Response<Incoming> {
    let request = Request::options(format!(
        "http://{grpc}/harvest.orders.v1.OrdersService/WatchOrder"
    ))
    .header("origin", origin)
    .header("access-control-request-method", "POST")
    .header(
        "access-control-request-headers",
        "authorization,content-type,x-grpc-web,x-user-agent",
    )
    .body(Full::new(Bytes::new()))
    .expect("request");
    http.request(request)
        .await
        .expect("the preflight is answered")
}

/// A gRPC-Web call as a browser's page makes it: one framed message.
async fn call(
    http: &Http,
    grpc: std::net::SocketAddr,
    method: &str,
    message: &impl Message,
) -> Response<Incoming> {
    let encoded = message.encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    framed.extend_from_slice(&encoded);
    let request = Request::post(format!(
        "http://{grpc}/harvest.orders.v1.OrdersService/{method}"
    ))
    .header("origin", STOREFRONT)
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .body(Full::new(Bytes::from(framed)))
    .expect("request");
    http.request(request).await.expect("the call is answered")
}

/// A gRPC-Web answer's frames as they arrive: messages, then the trailers.
struct Frames {
    body: Incoming,
    buffered: BytesMut,
}

enum Frame {
    Message(Bytes),
    Trailers(String),
}

impl Frames {
    fn new(response: Response<Incoming>) -> Frames {
        Frames {
            body: response.into_body(),
            buffered: BytesMut::new(),
        }
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buffered.len() >= 5 {
                let length = u32::from_be_bytes(self.buffered[1..5].try_into().expect("4 bytes"));
                if self.buffered.len() >= 5 + length as usize {
                    let flag = self.buffered.get_u8();
                    self.buffered.advance(4);
                    let payload = self.buffered.split_to(length as usize).freeze();
                    return Some(if flag & 0x80 == 0 {
                        Frame::Message(payload)
                    } else {
                        Frame::Trailers(String::from_utf8_lossy(&payload).into_owned())
                    });
                }
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("the next frame in time")?
                .expect("the body reads");
            if let Ok(data) = frame.into_data() {
                self.buffered.extend_from_slice(&data);
            }
        }
    }

    async fn update(&mut self) -> OrderUpdate {
        match self.next().await {
            Some(Frame::Message(payload)) => OrderUpdate::decode(payload).expect("an update"),
            Some(Frame::Trailers(trailers)) => panic!("the stream ended: {trailers}"),
            None => panic!("the stream ended without trailers"),
        }
    }
}

fn header<'a>(response: &'a Response<Incoming>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ascii"))
        .unwrap_or("")
}

#[tokio::test]
async fn only_the_configured_origins_pages_may_call_from_a_browser() {
    let world = World::with(|config| config.server.web_origins = vec![STOREFRONT.to_owned()]).await;
    let service = world.start().await;
    let http = http1();

    let allowed = preflight(&http, service.grpc_addr, STOREFRONT).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), STOREFRONT);
    let headers = header(&allowed, "access-control-allow-headers").to_owned();
    for needed in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
    ] {
        assert!(headers.contains(needed), "{needed} not in {headers}");
    }

    // Another origin's page gets no permission: its browser sends nothing.
    let refused = preflight(&http, service.grpc_addr, "http://shop.example").await;
    assert_eq!(header(&refused, "access-control-allow-origin"), "");

    // A native gRPC call (no Origin) gets no CORS headers with its answer.
    let native = service
        .client
        .clone()
        .place_order(place_request(
            &harvest_testkit::unique_name(),
            &[("prd_apples", 1)],
        ))
        .await
        .expect("placed");
    for cors in [
        "vary",
        "access-control-allow-origin",
        "access-control-expose-headers",
    ] {
        assert!(
            native.metadata().get(cors).is_none(),
            "{cors} on a native call"
        );
    }

    // Without the setting, no other origin at all.
    let closed_world = World::new().await;
    let closed = closed_world.start().await;
    let refused = preflight(&http, closed.grpc_addr, STOREFRONT).await;
    assert_eq!(header(&refused, "access-control-allow-origin"), "");
    closed.stop().await;
    service.stop().await;
}

#[tokio::test]
async fn a_page_watches_an_order_over_grpc_web_until_it_ends() {
    let world = World::with(|config| config.server.web_origins = vec![STOREFRONT.to_owned()]).await;
    let service = world.start().await;
    let http = http1();
    let order = place(&service.client, &[("prd_apples", 2)]).await;

    let watching = call(
        &http,
        service.grpc_addr,
        "WatchOrder",
        &WatchOrderRequest {
            order_id: order.order_id.clone(),
        },
    )
    .await;
    assert!(watching.status().is_success(), "{}", watching.status());
    assert_eq!(header(&watching, "access-control-allow-origin"), STOREFRONT);
    assert!(
        header(&watching, "content-type").starts_with("application/grpc-web"),
        "{}",
        header(&watching, "content-type")
    );
    assert!(header(&watching, "access-control-expose-headers").contains("grpc-status"));
    let mut frames = Frames::new(watching);
    let first = frames.update().await;
    let placed = first.order.expect("the order");
    assert_eq!(placed.order_id, order.order_id);
    assert_eq!(placed.state(), OrderState::Placed);
    assert!(first.transition.is_none());

    // A step taken elsewhere arrives on the open stream, and the stream
    // ends with its status once the order has ended.
    service
        .client
        .clone()
        .cancel_order(CancelOrderRequest {
            order_id: order.order_id.clone(),
            buyer_id: order.buyer_id.clone(),
            reason: "changed my mind".to_owned(),
        })
        .await
        .expect("cancelled");
    let update = frames.update().await;
    assert_eq!(
        update.order.expect("the order").state(),
        OrderState::Cancelled
    );
    let transition = update.transition.expect("a transition");
    assert_eq!(transition.to(), OrderState::Cancelled);
    match frames.next().await {
        Some(Frame::Trailers(trailers)) => {
            assert!(trailers.contains("grpc-status:0"), "{trailers}");
        }
        Some(Frame::Message(_)) => panic!("an update after the order ended"),
        None => panic!("no trailers"),
    }

    // A call that fails at once carries its status where the page reads it.
    let missing = call(
        &http,
        service.grpc_addr,
        "GetOrder",
        &GetOrderRequest {
            order_id: "ord_00000000000000000000000000".to_owned(),
        },
    )
    .await;
    assert_eq!(header(&missing, "grpc-status"), "5", "NOT_FOUND");
    assert!(!header(&missing, "grpc-message").is_empty());
    service.stop().await;
}
