//! An endpoint's way to the hub, used only by the CLI: the REST client
//! ([`hub_client`]), logging in ([`login`]), and `ferry -setup`
//! ([`register`]), which registers the endpoint by auth-code exchange or a
//! setup key and writes its files through ferry-endpoint.
//!
//! The daemon, the mover and the hub do not link this crate, so none of
//! them links the HTTP client.

pub mod hub_client;
pub mod login;
pub mod register;
