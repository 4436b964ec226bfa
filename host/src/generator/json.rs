//! Typed Envoy resources rendered as Envoy's own JSON (the proto3 JSON mapping with the protos'
//! field names), for the static bootstrap and the SDS files: the same values the control plane
//! sends as protobuf, so a file and a push cannot say different things.

use std::sync::LazyLock;

use anyhow::{Context, Result};
use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

/// Every Envoy API message, as described by the descriptor set `envoy-types` generated its
/// types from (copied by `build.rs`).
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/envoy-descriptors.bin"))[..])
        .map_err(|e| e.to_string())
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
