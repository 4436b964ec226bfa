//! Envoy's RBAC filter for the TrafficPermissions that select the endpoint: only the permitted
//! identities pass; others get 403.

use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};

use super::proto;
use crate::effective::{Allowed, Effective};

/// The RBAC filter, when TrafficPermissions select this endpoint.
pub fn http_filter(e: &Effective) -> Option<HttpFilter> {
    let allowed = e.allowed.as_ref()?;
    let principals: Vec<Principal> = allowed
        .iter()
        .map(|a| {
            let matcher = match a {
                Allowed::Service(s) => proto::exact(format!("spiffe://{}/{s}", e.mesh)),
                Allowed::AnyInMesh => proto::prefix(format!("spiffe://{}/", e.mesh)),
            };
            Principal {
                identifier: Some(principal::Identifier::Authenticated(
                    principal::Authenticated {
                        principal_name: Some(matcher),
                    },
                )),
            }
        })
        .collect();
    let mut policies = std::collections::HashMap::new();
    // An ALLOW rule set with no policy admits no one (a policy needs one principal at least).
    if !principals.is_empty() {
        policies.insert(
            "traffic-permissions".to_owned(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(permission::Rule::Any(true)),
                }],
                principals,
                ..Default::default()
            },
        );
    }
    let filter = RbacFilter {
        rules: Some(Rbac {
            action: rbac::Action::Allow as i32,
            policies,
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(HttpFilter {
        name: "envoy.filters.http.rbac".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(proto::any(&filter))),
        ..Default::default()
    })
}
