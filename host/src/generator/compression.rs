//! Compressing the scrape: Envoy's own compressor filter, first in the chain, so it encodes the
//! filter's answer (a local reply passes back through the filters before the one that sent it).
//! Only when the scraper asks (`Accept-Encoding: gzip`, as Prometheus does); both formats.

use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3::Gzip;
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::{Compressor, compressor};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};

use super::proto;

/// How the metrics endpoint's answers are encoded on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// As they are.
    None,
    /// gzip when the scraper accepts it (Envoy's compressor, zlib level 1: see BENCHMARKS.md).
    #[default]
    Gzip,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            other => Err(format!("{other:?}: none or gzip")),
        }
    }
}

/// The compressor filter, or none.
pub fn http_filter(c: Compression) -> Option<HttpFilter> {
    if c == Compression::None {
        return None;
    }
    let gzip = Gzip {
        // Level 1 (BEST_SPEED): a scrape is compressed once and read once; the wire gains
        // little from more, Envoy's CPU pays for it on every scrape.
        compression_level: 1,
        ..Default::default()
    };
    let filter = Compressor {
        compressor_library: Some(TypedExtensionConfig {
            name: "envoy.compression.gzip.compressor".into(),
            typed_config: Some(proto::any(&gzip)),
        }),
        response_direction_config: Some(compressor::ResponseDirectionConfig {
            common_config: Some(compressor::CommonDirectionConfig {
                // Both formats the filter answers in (a prefix: parameters follow).
                content_type_matcher: vec![
                    proto::prefix("text/plain"),
                    proto::prefix("application/openmetrics-text"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(HttpFilter {
        name: "envoy.filters.http.compressor".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(proto::any(&filter))),
        ..Default::default()
    })
}
