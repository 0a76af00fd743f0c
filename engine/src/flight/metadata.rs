//! What Flight SQL clients ask before they query: server information (`GetSqlInfo`) and
//! the types Poplar speaks (`GetXdbcTypeInfo`), built once per server.

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};

use crate::EngineError;

/// The Arrow Flight SQL format version Poplar reports.
const FLIGHT_SQL_ARROW_VERSION: &str = "1.3";

pub(super) fn sql_info() -> Result<SqlInfoData, EngineError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "Poplar");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, FLIGHT_SQL_ARROW_VERSION);
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    Ok(info.build()?)
}

fn xdbc(name: &str, data_type: XdbcDataType, quote: Option<&str>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: None,
        literal_prefix: quote.map(Into::into),
        literal_suffix: quote.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: data_type == XdbcDataType::XdbcVarchar,
        searchable: Searchable::Full,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: None,
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

pub(super) fn xdbc_type_info() -> Result<XdbcTypeInfoData, EngineError> {
    let mut types = XdbcTypeInfoDataBuilder::new();
    for t in [
        xdbc("BIGINT", XdbcDataType::XdbcBigint, None),
        xdbc("INTEGER", XdbcDataType::XdbcInteger, None),
        xdbc("DOUBLE", XdbcDataType::XdbcDouble, None),
        xdbc("VARCHAR", XdbcDataType::XdbcVarchar, Some("'")),
        xdbc("DATE", XdbcDataType::XdbcDate, Some("'")),
        xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some("'")),
    ] {
        types.append(t);
    }
    Ok(types.build()?)
}
