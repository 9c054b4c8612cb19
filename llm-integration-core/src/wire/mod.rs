//! Wire shapes: the JSON the gateway itself writes to clients, kept apart
//! from the domain model.

pub mod errors;
