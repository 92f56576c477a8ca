//! Sellers' payouts, with authentication on: each seller lists what its
//! captured orders paid it out, and nothing of other sellers'.

use harvest_bus::Payload;
use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::payments::v1::{ListPayoutsRequest, ListPayoutsResponse};
use tonic::{Code, Status};

use crate::helpers::TestPayments;

async fn list(
    payments: &TestPayments,
    issuer: &Issuer,
    (role, subject): (Role, &str),
    seller_id: &str,
    page_size: i32,
    page_token: String,
) -> Result<ListPayoutsResponse, Status> {
    let token = issuer.token(role, subject);
    let request = ListPayoutsRequest {
        seller_id: seller_id.to_owned(),
        page_size,
        page_token,
    };
    payments
        .client
        .clone()
        .list_payouts(bearer(request, Some(&token)))
        .await
        .map(tonic::Response::into_inner)
}

fn amounts(page: &ListPayoutsResponse) -> Vec<(String, String, i64)> {
    page.payouts
        .iter()
        .map(|p| (p.order_id.clone(), p.seller_id.clone(), p.amount_fen))
        .collect()
}

/// Two orders delivered and captured, one only authorized: farmer Li was
/// paid out by both captured ones, the Anji co-op by one. Each seller lists
/// its own payouts (its share less the 5 % commission), a page at a time; no
/// seller lists another's; an operator names the seller.
#[tokio::test]
async fn each_seller_lists_its_own_payouts_only() {
    let issuer = harvest_testkit::issuer().expect("an issuer");
    let auth = issuer.config();
    let payments = TestPayments::start_with(move |config| config.auth = auth).await;
    let mut captured = Vec::new();
    for lines in [
        &[("farmer-li", 10_000), ("coop-anji", 5_000)][..],
        &[("farmer-li", 2_000)][..],
    ] {
        let reserved = payments.reserve("approve", lines).await;
        payments
            .wait_event(&reserved.order_id, |p| {
                matches!(p, Payload::PaymentAuthorized(_))
            })
            .await;
        payments.deliver(&reserved).await;
        payments
            .wait_event(&reserved.order_id, |p| {
                matches!(p, Payload::PaymentCaptured(_))
            })
            .await;
        captured.push(reserved.order_id);
    }
    let only_authorized = payments.reserve("approve", &[("farmer-li", 7_000)]).await;
    payments
        .wait_event(&only_authorized.order_id, |p| {
            matches!(p, Payload::PaymentAuthorized(_))
        })
        .await;
    let mut expected_li = [
        (captured[0].clone(), "farmer-li".to_owned(), 9_500),
        (captured[1].clone(), "farmer-li".to_owned(), 1_900),
    ];
    expected_li.sort();

    let li = (Role::Seller, "farmer-li");
    let first = list(&payments, &issuer, li, "", 1, String::new())
        .await
        .expect("its own");
    assert_eq!(amounts(&first), expected_li[..1]);
    assert!(first.payouts[0].at.is_some() && !first.payouts[0].entry_id.is_empty());
    let second = list(
        &payments,
        &issuer,
        li,
        "farmer-li",
        1,
        first.next_page_token,
    )
    .await
    .expect("the next page");
    assert_eq!(amounts(&second), expected_li[1..]);
    assert_eq!(second.next_page_token, "");

    let anji = list(
        &payments,
        &issuer,
        (Role::Seller, "coop-anji"),
        "",
        0,
        String::new(),
    )
    .await
    .expect("its own");
    assert_eq!(
        amounts(&anji),
        [(captured[0].clone(), "coop-anji".to_owned(), 4_750)]
    );

    let refused = list(&payments, &issuer, li, "coop-anji", 0, String::new())
        .await
        .expect_err("another seller's");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let operator = (Role::Operator, "ops-li");
    let of_anji = list(&payments, &issuer, operator, "coop-anji", 0, String::new())
        .await
        .expect("an operator reads any seller's");
    assert_eq!(amounts(&of_anji), amounts(&anji));
    let unnamed = list(&payments, &issuer, operator, "", 0, String::new())
        .await
        .expect_err("whose?");
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");
    let buyer = list(
        &payments,
        &issuer,
        (Role::Buyer, "buyer-1"),
        "farmer-li",
        0,
        String::new(),
    )
    .await
    .expect_err("not a buyer's to read");
    assert_eq!(buyer.code(), Code::PermissionDenied, "{buyer:?}");
    let bad_token = list(&payments, &issuer, li, "", 0, "zz".to_owned())
        .await
        .expect_err("a made-up token");
    assert_eq!(bad_token.code(), Code::InvalidArgument, "{bad_token:?}");
}
