//! Harvest's gRPC APIs and event schemas, generated from `proto/`.
//!
//! One module per protobuf package. [`FILE_DESCRIPTOR_SET`] holds every
//! descriptor, for gRPC server reflection.

#![allow(clippy::all, missing_docs, rust_2018_idioms)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("harvest.common.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("harvest.catalog.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("harvest.orders.v1");
    }

    /// How the orders service stores an order; not part of any API.
    pub mod storage {
        pub mod v1 {
            tonic::include_proto!("harvest.orders.storage.v1");
        }
    }
}

pub mod payments {
    pub mod v1 {
        tonic::include_proto!("harvest.payments.v1");
    }
}

pub mod delivery {
    pub mod v1 {
        tonic::include_proto!("harvest.delivery.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("harvest.events.v1");
    }
}

/// Every Harvest protobuf descriptor, encoded, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/harvest_descriptor.bin"));

pub use prost_types::Timestamp;
