//! Protobuf enums by their short names: `IN_TRANSIT` rather than
//! `ORDER_STATE_IN_TRANSIT` in output, and `fruit` (or `FRUIT`) on the
//! command line.

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use harvest_proto::catalog::v1::{Category, Unit};
use harvest_proto::common::v1::{AuditAction, CancelReason, OrderState, SellerKind};
use harvest_proto::delivery::v1::{ShipmentState, Vehicle};
use harvest_proto::payments::v1::{LedgerEntryKind, PaymentState};

/// A protobuf enum whose value names all start with one prefix.
pub trait ProtoEnum: Copy + TryFrom<i32> + Send + Sync + 'static {
    /// What every value's name starts with, e.g. `ORDER_STATE_`.
    const PREFIX: &'static str;

    fn proto_name(self) -> &'static str;

    fn from_proto_name(name: &str) -> Option<Self>;

    fn number(self) -> i32;
}

macro_rules! proto_enums {
    ($($enum:ty => $prefix:literal),* $(,)?) => {$(
        impl ProtoEnum for $enum {
            const PREFIX: &'static str = $prefix;

            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }

            fn from_proto_name(name: &str) -> Option<Self> {
                <$enum>::from_str_name(name)
            }

            fn number(self) -> i32 {
                self as i32
            }
        }
    )*};
}

proto_enums! {
    Category => "CATEGORY_",
    Unit => "UNIT_",
    SellerKind => "SELLER_KIND_",
    OrderState => "ORDER_STATE_",
    CancelReason => "CANCEL_REASON_",
    Vehicle => "VEHICLE_",
    ShipmentState => "SHIPMENT_STATE_",
    PaymentState => "PAYMENT_STATE_",
    LedgerEntryKind => "LEDGER_ENTRY_KIND_",
    AuditAction => "AUDIT_ACTION_",
}

/// The short name of a value as it travels (an `i32`): `IN_TRANSIT`, or
/// `UNKNOWN(9)` for a number this build does not know.
pub fn short_name<E: ProtoEnum>(number: i32) -> String {
    match E::try_from(number) {
        Ok(value) => {
            let name = value.proto_name();
            name.strip_prefix(E::PREFIX).unwrap_or(name).to_owned()
        }
        Err(_) => format!("UNKNOWN({number})"),
    }
}

/// Every value but the unspecified zero.
pub fn known_values<E: ProtoEnum>() -> impl Iterator<Item = E> {
    // Harvest's enums are numbered from 1 without gaps, far below this bound.
    (1..=64).filter_map(|number| E::try_from(number).ok())
}

/// A value from its short name, in any case, with `-` for `_`.
pub fn parse_short_name<E: ProtoEnum>(input: &str) -> Option<E> {
    let name = input.trim().to_ascii_uppercase().replace('-', "_");
    if name.is_empty() || name == "UNSPECIFIED" {
        return None;
    }
    E::from_proto_name(&format!("{}{name}", E::PREFIX))
}

/// A clap parser for a protobuf enum, listing its values in `--help`.
#[derive(Clone, Copy, Debug)]
pub struct EnumParser<E>(PhantomData<E>);

pub fn enum_parser<E: ProtoEnum>() -> EnumParser<E> {
    EnumParser(PhantomData)
}

fn cli_name<E: ProtoEnum>(value: E) -> String {
    short_name::<E>(value.number())
        .to_ascii_lowercase()
        .replace('_', "-")
}

impl<E: ProtoEnum> TypedValueParser for EnumParser<E> {
    type Value = E;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        let text = value.to_string_lossy();
        if let Some(parsed) = parse_short_name::<E>(&text) {
            return Ok(parsed);
        }
        let mut error = clap::Error::new(ErrorKind::InvalidValue).with_cmd(command);
        if let Some(arg) = arg {
            error.insert(
                ContextKind::InvalidArg,
                ContextValue::String(arg.to_string()),
            );
        }
        error.insert(
            ContextKind::InvalidValue,
            ContextValue::String(text.into_owned()),
        );
        error.insert(
            ContextKind::ValidValue,
            ContextValue::Strings(known_values::<E>().map(cli_name).collect()),
        );
        Err(error)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            known_values::<E>().map(|value| PossibleValue::new(cli_name(value))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_the_prefix() {
        assert_eq!(
            short_name::<OrderState>(OrderState::InTransit as i32),
            "IN_TRANSIT"
        );
        assert_eq!(
            short_name::<CancelReason>(CancelReason::BuyerCancelled as i32),
            "BUYER_CANCELLED"
        );
        assert_eq!(
            short_name::<LedgerEntryKind>(LedgerEntryKind::Payout as i32),
            "PAYOUT"
        );
        assert_eq!(short_name::<Category>(0), "UNSPECIFIED");
        assert_eq!(short_name::<OrderState>(99), "UNKNOWN(99)");
    }

    #[test]
    fn parses_short_names_in_any_case() {
        assert_eq!(parse_short_name::<Category>("fruit"), Some(Category::Fruit));
        assert_eq!(parse_short_name::<Vehicle>(" VAN "), Some(Vehicle::Van));
        assert_eq!(
            parse_short_name::<PaymentState>("partially-refunded"),
            Some(PaymentState::PartiallyRefunded)
        );
        assert_eq!(parse_short_name::<Category>("unspecified"), None);
        assert_eq!(parse_short_name::<Category>("CATEGORY_FRUIT"), None);
        assert_eq!(parse_short_name::<Vehicle>("bicycle"), None);
    }

    #[test]
    fn lists_every_known_value_once() {
        let vehicles: Vec<String> = known_values::<Vehicle>().map(cli_name).collect();
        assert_eq!(vehicles, ["tricycle", "van", "truck", "motorcycle"]);
        assert_eq!(known_values::<Category>().count(), 11);
    }
}
