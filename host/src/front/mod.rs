//! The attendee front: what a browser talks to.
//!
//! Policy: each submodule is a composable piece (a router or a service with
//! its state passed in, never global state) so the server can stack
//! authentication and the API routes in front of it.

pub mod assets;
