//! Poplar's own protocol: the `.proto` files under `proto/`, compiled at build time.
//!
//! - `poplar.flightsql.v1`: what a Flight SQL statement handle carries;
//! - `poplar.measures.v1`: the measures service population health teams and the dashboard
//!   read;
//! - `poplar.studies.v1`: approved studies, their runs and held outputs;
//! - `poplar.governance.v1`: the stewards' console (feeds, opt-outs, audit, users).
//!
//! A new service goes in a `.proto` file beside these, is listed in `build.rs`, and gets a
//! module here; the engine implements the generated server trait (see the README's
//! layout section).

/// The encoded `FileDescriptorSet` of every Poplar `.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/poplar_descriptors.bin"));

pub mod flightsql {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/poplar.flightsql.v1.rs"));
    }
}

pub mod measures {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/poplar.measures.v1.rs"));
    }
}

pub mod studies {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/poplar.studies.v1.rs"));
    }
}

pub mod governance {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/poplar.governance.v1.rs"));
    }
}

#[cfg(test)]
mod tests {
    use super::flightsql::v1::StatementHandle;
    use prost::Message;

    #[test]
    fn a_handle_round_trips() {
        let handle = StatementHandle {
            sql: "SELECT 1".into(),
            params: vec![1, 2, 3],
        };
        let bytes = handle.encode_to_vec();
        assert_eq!(StatementHandle::decode(bytes.as_slice()).ok(), Some(handle));
    }

    #[test]
    fn the_descriptor_set_names_the_package() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("descriptors");
        assert!(set.file.iter().any(|f| f.package() == "poplar.flightsql.v1"));
        assert!(set.file.iter().any(|f| f.package() == "poplar.measures.v1"));
        assert!(set.file.iter().any(|f| f.package() == "poplar.studies.v1"));
        assert!(set.file.iter().any(|f| f.package() == "poplar.governance.v1"));
    }
}
