//! opencarbon: urban carbon emission prediction from satellite tiles and POIs.

pub mod cli;
pub mod data;
pub mod error;
pub mod metrics;
pub mod models;
pub mod track;

pub use error::{Error, Result};
