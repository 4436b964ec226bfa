//! Typed Envoy resources rendered as Envoy's own JSON (the proto3 JSON mapping with the protos'
//! field names), for the static bootstrap and the SDS files: the same values the control plane
//! sends as protobuf, so a file and a push cannot say different things.

use std::sync::LazyLock;

use anyhow::{Context, Result};
use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, SerializeOptions};
use serde_json::Value;

/// The Envoy API messages a bootstrap or an SDS file can hold, as described by the descriptor
/// set `envoy-types` generated its types from, trimmed and committed beside this file (see
/// `examples/envoy_descriptors.rs` for why it is not found at build time).
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!("envoy-descriptors.bin")[..]).map_err(|e| e.to_string())
});

/// A message as JSON.
pub fn message<M: prost::Message + prost::Name>(m: &M) -> Result<Value> {
    let mut v = to_json(&super::proto::any(m))?;
    if let Value::Object(map) = &mut v {
        map.remove("@type");
    }
    Ok(v)
}

/// A packed message as JSON, with its `@type`.
pub fn to_json(any: &Any) -> Result<Value> {
    let pool = POOL
        .as_ref()
        .map_err(|e| anyhow::anyhow!("Envoy's descriptor set: {e}"))?;
    let name = any
        .type_url
        .rsplit_once('/')
        .map_or(any.type_url.as_str(), |(_, n)| n);
    let descriptor = pool
        .get_message_by_name(name)
        .with_context(|| format!("{name}: not an Envoy API message"))?;
    let message = DynamicMessage::decode(descriptor, any.value.as_slice())
        .with_context(|| format!("decoding {name}"))?;
    if let Some(path) = unknown_field(pool, &message) {
        anyhow::bail!(
            "{name}: field {path} is not in the committed descriptor set \
             (run scripts/update-envoy-descriptors after changing envoy-types)"
        );
    }
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    let mut v = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("rendering {name}"))?;
    integral(&mut v);
    if let Value::Object(map) = &mut v {
        let mut with_type = serde_json::Map::new();
        with_type.insert("@type".into(), Value::String(any.type_url.clone()));
        with_type.append(map);
        *map = with_type;
    }
    Ok(v)
}

/// The path of a field the descriptor set does not know, anywhere in `m`. The JSON mapping
/// drops such fields silently, so a set older than `envoy-types` would write a bootstrap that
/// lacks what the control plane pushes.
/// A packed `Any` is looked into too: typed configs are where most fields live.
fn unknown_field(pool: &DescriptorPool, m: &DynamicMessage) -> Option<String> {
    use prost_reflect::Value as V;
    if let Some(f) = m.unknown_fields().next() {
        return Some(format!("#{}", f.number()));
    }
    if m.descriptor().full_name() == "google.protobuf.Any" {
        let url = m.get_field_by_name("type_url")?;
        let value = m.get_field_by_name("value")?;
        let (V::String(url), V::Bytes(value)) = (url.as_ref(), value.as_ref()) else {
            return None;
        };
        let name = url.rsplit_once('/').map_or(url.as_str(), |(_, n)| n);
        // A type the pool lacks fails the rendering itself, with its name.
        let inner = DynamicMessage::decode(pool.get_message_by_name(name)?, value.as_ref()).ok()?;
        return unknown_field(pool, &inner).map(|p| format!("[{name}].{p}"));
    }
    let nested = |v: &V| match v {
        V::Message(inner) => unknown_field(pool, inner),
        V::List(items) => items.iter().find_map(|i| match i {
            V::Message(inner) => unknown_field(pool, inner),
            _ => None,
        }),
        V::Map(map) => map.values().find_map(|i| match i {
            V::Message(inner) => unknown_field(pool, inner),
            _ => None,
        }),
        _ => None,
    };
    m.fields()
        .find_map(|(field, v)| nested(v).map(|p| format!("{}.{p}", field.name())))
}

/// Writes whole doubles as integers. `google.protobuf.Struct` holds every number as a double,
/// and Envoy reads a YAML `68157440.0` in a runtime layer or node metadata as a string, not the
/// number `68157440` (the runtime key would be ignored).
fn integral(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.is_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(map) => map.values_mut().for_each(integral),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use prost::{Message, Name};

    /// An unknown field (number 9999, a varint) appended to an encoded message: what a field
    /// added to `envoy-types` but missing from a stale descriptor set looks like on the wire.
    fn with_unknown(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.extend([0xf8, 0xf0, 0x04, 0x01]); // key: 9999 << 3 | 0, value: 1
        bytes
    }

    fn listener(hcm: Any) -> Listener {
        Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "hcm".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(hcm)),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn renders_a_message_the_set_knows() {
        let hcm = HttpConnectionManager {
            stat_prefix: "metrics".into(),
            ..Default::default()
        };
        let v = message(&listener(super::super::proto::any(&hcm))).unwrap();
        assert_eq!(
            v["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"],
            "metrics"
        );
    }

    #[test]
    fn refuses_a_field_the_set_does_not_know_even_inside_a_typed_config() {
        let top = Any {
            type_url: Listener::type_url(),
            value: with_unknown(listener(Any::default()).encode_to_vec()),
        };
        let e = to_json(&top).unwrap_err().to_string();
        assert!(
            e.contains("field #9999") && e.contains("update-envoy-descriptors"),
            "{e}"
        );

        let hcm = Any {
            type_url: HttpConnectionManager::type_url(),
            value: with_unknown(HttpConnectionManager::default().encode_to_vec()),
        };
        let e = message(&listener(hcm)).unwrap_err().to_string();
        assert!(
            e.contains("filter_chains.filters.typed_config.[envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager].#9999"),
            "{e}"
        );
    }
}
