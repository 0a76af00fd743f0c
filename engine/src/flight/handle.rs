//! Statement handles and their parameters. The handle is `poplar.flightsql.v1`'s
//! `StatementHandle` (in `proto/`): stateless, so it outlives nothing on the server, and
//! not a credential (every call is authenticated on its own).

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use deltalake::datafusion::scalar::ScalarValue;
use prost::Message;

pub use poplar_proto::flightsql::v1::StatementHandle;

use crate::EngineError;

pub(super) fn decode_handle(bytes: &[u8]) -> Result<StatementHandle, EngineError> {
    StatementHandle::decode(bytes).map_err(|_| EngineError::InvalidRequest("not a Poplar statement handle".into()))
}

fn bad_params(e: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidRequest(format!("parameters: {e}"))
}

/// The first row of a parameter batch, as positional values for `$1`, `$2`, ….
pub(super) fn decode_params(ipc: &[u8]) -> Result<Vec<ScalarValue>, EngineError> {
    if ipc.is_empty() {
        return Ok(Vec::new());
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None).map_err(bad_params)?;
    for batch in reader {
        let batch = batch.map_err(bad_params)?;
        if batch.num_rows() == 0 {
            continue;
        }
        if batch.num_rows() > 1 {
            return Err(EngineError::InvalidRequest(
                "bind one row of parameters per execution".into(),
            ));
        }
        return batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0).map_err(bad_params))
            .collect();
    }
    Ok(Vec::new())
}

pub(super) fn encode_params(batches: &[RecordBatch]) -> Result<Vec<u8>, EngineError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &first.schema())?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn parameters_round_trip_as_one_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, false),
            Field::new("$2", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["F00001"])),
                Arc::new(Int64Array::from(vec![2024])),
            ],
        )
        .expect("batch");
        let params = decode_params(&encode_params(&[batch]).expect("encode")).expect("decode");
        assert_eq!(
            params,
            vec![ScalarValue::Utf8(Some("F00001".into())), ScalarValue::Int64(Some(2024))]
        );
        assert!(decode_params(b"not arrow").is_err());
        assert!(decode_handle(&[0xff, 0xff]).is_err());
    }
}
