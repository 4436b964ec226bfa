//! `TrafficPermission`: which services may reach which. For metrics it decides who may scrape: a
//! permission whose destinations select the metrics endpoint's tags lists the allowed sources.

use super::reader::{Ctx, Obj};

pub type Selector = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq)]
pub struct TrafficPermission {
    pub name: String,
    pub mesh: String,
    pub sources: Vec<Selector>,
    pub destinations: Vec<Selector>,
}

/// Reads the body (`spec` in Kubernetes form, the document in Universal form).
pub fn read(ctx: &mut Ctx<'_>, name: String, mesh: String, mut body: Obj<'_>) -> TrafficPermission {
    let mut side = |body: &mut Obj<'_>, key: &'static str| -> Vec<Selector> {
        let mut out = Vec::new();
        for mut item in body.list(ctx, key) {
            let m = item.string_map(ctx, "match");
            if m.is_empty() {
                ctx.error(
                    &item.field("match"),
                    "is required (e.g. {kuma.io/service: prometheus-server})",
                );
            }
            item.finish(ctx);
            out.push(m);
        }
        out
    };
    let sources = side(&mut body, "sources");
    let destinations = side(&mut body, "destinations");
    body.finish(ctx);
    TrafficPermission {
        name,
        mesh,
        sources,
        destinations,
    }
}

/// Whether `selector` selects something with these tags (`*` matches any value).
pub fn selects(selector: &Selector, tags: &[(String, String)]) -> bool {
    selector
        .iter()
        .all(|(k, v)| v == "*" || tags.iter().any(|(tk, tv)| tk == k && tv == v))
}
