//! opencarbon: urban carbon emission prediction from satellite tiles and POIs.

pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod report;
pub mod track;
pub mod train;

pub use error::{Error, Result};
