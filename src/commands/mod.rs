//! One module per `poplar` subcommand, so each command's flags and behaviour read in one
//! place and `main.rs` stays a table of contents.

pub mod audit;
pub mod cluster;
pub mod demo;
pub mod load;
pub mod measures;
pub mod optout;
pub mod serve;
pub mod sql;
pub mod studies;
pub mod synth;
pub mod users;
