//! Harvest's domain vocabulary: money, quantities, regions, identifiers and
//! dates, as types that can only be built valid.
//!
//! Every service parses what arrives from the outside (gRPC requests, events)
//! into these types at the edge, so the code behind it never sees an invalid
//! amount, a negative quantity or an id that would break a Redis key.

#![forbid(unsafe_code)]

mod date;
pub mod delivery_code;
mod id;
mod money;
mod province;
mod quantity;
mod region;
mod secret;
mod text;

pub use date::{Date, DateError};
pub use id::{Id, IdError, deterministic_id, new_id, shipment_id};
pub use money::{Fen, FenError};
pub use province::{Province, default_region_of_province, provinces};
pub use quantity::{Quantity, QuantityError};
pub use region::{Region, RegionError, Regions};
pub use secret::Secret;
pub use text::{
    NOT_A_PAGE_TOKEN, TextError, cause_chain, clean_text, decode_id_page_token, decode_page_token,
    encode_page_token, page_size,
};
