//! Placeholder module; see the parent module for the direction it translates.
