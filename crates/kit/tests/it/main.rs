//! The kit against real Redis: one server and a Redis Cluster.

mod store;
mod tls;
