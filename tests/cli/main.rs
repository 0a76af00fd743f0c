//! The `poplar` binary as people run it: synth, load, kill -9, re-run; serve and query;
//! verify the audit log. One test binary, so the DataFusion/Delta stack is linked once,
//! with a module per topic.

mod audit;
mod common;
mod load;
mod sql;
