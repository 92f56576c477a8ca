//! Couriers, shipments and assignments.

use harvest_proto::common::v1::OrderLine;
use harvest_proto::delivery::v1::{Assignment, Courier, Shipment, ShipmentState, Vehicle};
use serde_json::{Value, json};

use super::catalog::{json_pickup_point, pickup_point};
use super::{
    Align, Block, Table, address, join_present, json_address, json_point, json_time, point,
    present, time, yes_no,
};
use crate::enums::short_name;

pub fn courier_json(courier: &Courier) -> Value {
    json!({
        "courier_id": courier.courier_id,
        "name": courier.name,
        "home_county": courier.home_county,
        "home_province": courier.home_province,
        "region": courier.region,
        "vehicle": short_name::<Vehicle>(courier.vehicle),
        "cold_chain": courier.cold_chain,
        "capacity": courier.capacity,
        "load": courier.load,
        "available": courier.available,
        "location": json_point(courier.location.as_ref()),
        "registered_at": json_time(courier.registered_at.as_ref()),
        "partner_id": courier.partner_id,
    })
}

pub fn couriers_json(couriers: &[Courier]) -> Value {
    json!({ "couriers": couriers.iter().map(courier_json).collect::<Vec<_>>() })
}

pub fn couriers_human(couriers: &[Courier]) -> String {
    if couriers.is_empty() {
        return "no couriers\n".to_owned();
    }
    let mut table = Table::new(&[
        ("COURIER", Align::Left),
        ("NAME", Align::Left),
        ("REGION", Align::Left),
        ("VEHICLE", Align::Left),
        ("LOAD", Align::Right),
        ("AVAILABLE", Align::Left),
    ]);
    for courier in couriers {
        table.row(vec![
            courier.courier_id.clone(),
            courier.name.clone(),
            courier.region.clone(),
            short_name::<Vehicle>(courier.vehicle),
            format!("{}/{}", courier.load, courier.capacity),
            yes_no(courier.available),
        ]);
    }
    table.render()
}

pub fn courier_human(courier: &Courier) -> String {
    Block::new()
        .field("Courier", courier.courier_id.as_str())
        .field("Name", courier.name.as_str())
        .field(
            "Home",
            join_present(&[&courier.home_county, &courier.home_province]),
        )
        .field("Region", courier.region.as_str())
        .field(
            "Vehicle",
            short_name::<Vehicle>(courier.vehicle)
                + if courier.cold_chain {
                    ", cold chain"
                } else {
                    ""
                },
        )
        .field("Load", format!("{} of {}", courier.load, courier.capacity))
        .field("Available", yes_no(courier.available))
        .maybe("Location", point(courier.location.as_ref()))
        .field("Registered", time(courier.registered_at.as_ref()))
        .maybe(
            "Partner",
            (!courier.partner_id.is_empty()).then(|| courier.partner_id.clone()),
        )
        .render()
}

fn line_json(line: &OrderLine) -> Value {
    json!({ "product_id": line.product_id, "quantity": line.quantity })
}

fn lines_text(lines: &[OrderLine]) -> String {
    lines
        .iter()
        .map(|line| format!("{} × {}", line.product_id, line.quantity))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn shipment_json(shipment: &Shipment) -> Value {
    json!({
        "shipment_id": shipment.shipment_id,
        "order_id": shipment.order_id,
        "region": shipment.region,
        "state": short_name::<ShipmentState>(shipment.state),
        "courier_id": shipment.courier_id,
        "pickup_point": json_pickup_point(shipment.pickup_point.as_ref()),
        "pickup_by": json_time(shipment.pickup_by.as_ref()),
        "ship_to": json_address(shipment.ship_to.as_ref()),
        "lines": shipment.lines.iter().map(line_json).collect::<Vec<_>>(),
        "cold_chain": shipment.cold_chain,
        "failure_reason": shipment.failure_reason,
        "created_at": json_time(shipment.created_at.as_ref()),
        "updated_at": json_time(shipment.updated_at.as_ref()),
    })
}

pub fn shipment_human(shipment: &Shipment) -> String {
    Block::new()
        .field("Shipment", shipment.shipment_id.as_str())
        .field("Order", shipment.order_id.as_str())
        .field("State", short_name::<ShipmentState>(shipment.state))
        .maybe("Failure", present(&shipment.failure_reason))
        .field(
            "Courier",
            present(&shipment.courier_id).unwrap_or_else(|| "-".to_owned()),
        )
        .field("Region", shipment.region.as_str())
        .maybe("Pickup", pickup_point(shipment.pickup_point.as_ref()))
        .field("Pickup by", time(shipment.pickup_by.as_ref()))
        .maybe("Ship to", address(shipment.ship_to.as_ref()))
        .maybe("Goods", present(&lines_text(&shipment.lines)))
        .field("Cold chain", yes_no(shipment.cold_chain))
        .field("Created", time(shipment.created_at.as_ref()))
        .field("Updated", time(shipment.updated_at.as_ref()))
        .render()
}

pub fn assignment_json(assignment: &Assignment) -> Value {
    json!({
        "shipment": assignment.shipment.as_ref().map(shipment_json),
        "assigned_at": json_time(assignment.assigned_at.as_ref()),
    })
}

const ASSIGNMENT_COLUMNS: [(&str, Align); 6] = [
    ("ASSIGNED", Align::Left),
    ("SHIPMENT", Align::Left),
    ("ORDER", Align::Left),
    ("STATE", Align::Left),
    ("PICKUP", Align::Left),
    ("PICKUP BY", Align::Left),
];

fn assignment_row(assignment: &Assignment) -> Vec<String> {
    let shipment = assignment.shipment.clone().unwrap_or_default();
    vec![
        time(assignment.assigned_at.as_ref()),
        shipment.shipment_id,
        shipment.order_id,
        short_name::<ShipmentState>(shipment.state),
        shipment
            .pickup_point
            .map(|point| point.name)
            .unwrap_or_default(),
        time(shipment.pickup_by.as_ref()),
    ]
}

/// A courier's open assignments, as one table.
pub fn assignments_human(assignments: &[Assignment]) -> String {
    if assignments.is_empty() {
        return "no open assignments\n".to_owned();
    }
    let mut table = Table::new(&ASSIGNMENT_COLUMNS);
    for assignment in assignments {
        table.row(assignment_row(assignment));
    }
    table.render()
}

/// One assignment as it arrives on a followed stream: the columns of
/// [`assignments_human`], space-separated, since later widths are unknown.
pub fn assignment_line(assignment: &Assignment) -> String {
    assignment_row(assignment).join("  ")
}

#[cfg(test)]
mod tests {
    use harvest_proto::Timestamp;
    use harvest_proto::common::v1::{GeoPoint, PickupPoint};

    use super::*;

    fn shipment() -> Shipment {
        Shipment {
            shipment_id: "shp_1".to_owned(),
            order_id: "ord_1".to_owned(),
            region: "east".to_owned(),
            pickup_point: Some(PickupPoint {
                pickup_point_id: "pp_fengqi".to_owned(),
                name: "Fengqi village square".to_owned(),
                location: None,
                seller_id: "coop-luochuan".to_owned(),
                origin: None,
            }),
            ship_to: None,
            lines: vec![OrderLine {
                product_id: "prd_apples".to_owned(),
                quantity: 3,
            }],
            cold_chain: false,
            state: ShipmentState::Assigned.into(),
            courier_id: "courier-li".to_owned(),
            pickup_by: Some(Timestamp {
                seconds: 1_748_937_600,
                nanos: 0,
            }),
            failure_reason: String::new(),
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn shipment_block() {
        assert_eq!(
            shipment_human(&shipment()),
            "\
Shipment    shp_1
Order       ord_1
State       ASSIGNED
Courier     courier-li
Region      east
Pickup      Fengqi village square (pp_fengqi)
Pickup by   2025-06-03T08:00:00Z
Goods       prd_apples × 3
Cold chain  no
Created     -
Updated     -
"
        );
        let json = shipment_json(&shipment());
        assert_eq!(json["state"], "ASSIGNED");
        assert_eq!(json["pickup_point"]["name"], "Fengqi village square");
        assert_eq!(json["lines"][0]["quantity"], 3);
        assert_eq!(json["ship_to"], Value::Null);
    }

    #[test]
    fn courier_block() {
        let courier = Courier {
            courier_id: "courier-li".to_owned(),
            name: "Li Qiang".to_owned(),
            home_county: "Luochuan".to_owned(),
            home_province: "Shaanxi".to_owned(),
            region: "north".to_owned(),
            vehicle: Vehicle::Van.into(),
            cold_chain: true,
            capacity: 8,
            load: 2,
            available: true,
            location: Some(GeoPoint {
                latitude: 35.76,
                longitude: 109.43,
            }),
            registered_at: None,
            partner_id: "express-anji".to_owned(),
        };
        let text = courier_human(&courier);
        assert!(text.contains("Partner     express-anji\n"), "{text}");
        assert!(text.contains("Vehicle     VAN, cold chain\n"), "{text}");
        assert!(text.contains("Load        2 of 8\n"), "{text}");
        assert!(text.contains("Home        Luochuan, Shaanxi\n"), "{text}");
        assert!(text.contains("Location    35.7600, 109.4300\n"), "{text}");
        let json = courier_json(&courier);
        assert_eq!(json["vehicle"], "VAN");
        assert_eq!(json["capacity"], 8);
    }

    #[test]
    fn assignments_as_table_and_lines() {
        let assignment = Assignment {
            shipment: Some(shipment()),
            assigned_at: Some(Timestamp {
                seconds: 1_748_764_800,
                nanos: 0,
            }),
        };
        assert_eq!(
            assignments_human(std::slice::from_ref(&assignment)),
            "\
ASSIGNED              SHIPMENT  ORDER  STATE     PICKUP                 PICKUP BY
2025-06-01T08:00:00Z  shp_1     ord_1  ASSIGNED  Fengqi village square  2025-06-03T08:00:00Z
"
        );
        assert_eq!(
            assignment_line(&assignment),
            "2025-06-01T08:00:00Z  shp_1  ord_1  ASSIGNED  Fengqi village square  2025-06-03T08:00:00Z"
        );
        assert_eq!(assignments_human(&[]), "no open assignments\n");
        assert_eq!(
            assignment_json(&assignment)["shipment"]["shipment_id"],
            "shp_1"
        );
    }
}
