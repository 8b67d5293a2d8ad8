//! Lists: `limit`, `marker` and field filters, and pages that cost their own size.

use std::collections::BTreeMap;

use super::StateApi;
use super::error::{ApiError, ApiResult, bad_request};
use model::{ClusterState, Kind};
use serde_json::{Value, json};

/// True when a list filter `?field=want` matches the field's value (strings exactly, other
/// values by their JSON text, booleans in any case; an absent field matches an empty filter).
pub fn field_matches(value: Option<&Value>, want: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == want,
        Some(Value::Bool(b)) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Some(Value::Null) | None => want.is_empty(),
        Some(other) => want.parse::<Value>().is_ok_and(|w| w == *other),
    }
}

/// A list request's `limit`, `marker` and field filters, checked.
pub struct PageRequest<'a> {
    limit: usize,
    marker: Option<&'a str>,
    filters: Vec<(&'a str, &'a str)>,
}

impl<'a> PageRequest<'a> {
    fn parse(params: &'a BTreeMap<String, String>, filters: &[&str]) -> ApiResult<Self> {
        let limit = match params.get("limit") {
            None => 1000,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=10_000).contains(l))
                .ok_or_else(|| bad_request(Some("limit"), "limit must be 1 to 10000"))?,
        };
        let mut wanted = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "limit" | "marker" => {}
                k if filters.contains(&k) => wanted.push((k, v.as_str())),
                _ => {
                    return Err(bad_request(
                        Some(k),
                        &format!("cannot filter on `{k}`: filters are {}", filters.join(", ")),
                    ));
                }
            }
        }
        Ok(PageRequest {
            limit,
            marker: params.get("marker").map(String::as_str),
            filters: wanted,
        })
    }

    fn matches(&self, v: &Value) -> bool {
        self.filters
            .iter()
            .all(|(k, want)| field_matches(v.get(*k), want))
    }

    fn unknown_marker(&self) -> ApiError {
        let m = self.marker.unwrap_or_default();
        bad_request(Some("marker"), &format!("marker `{m}` is not in this list"))
    }

    /// The page of `views` (the whole list, in order) after the marker, with the marker of
    /// the next page.
    fn page_of(&self, views: impl Iterator<Item = Value>, key: &str) -> Value {
        let mut page = Vec::new();
        let mut more = false;
        for v in views.filter(|v| self.matches(v)) {
            if page.len() == self.limit {
                more = true;
                break;
            }
            page.push(v);
        }
        let next = more
            .then(|| page.last().and_then(|v| v.get("id").cloned()))
            .flatten();
        json!({ key: page, "next_marker": next })
    }
}

/// Applies `limit`, `marker` and field filters to a whole list of views (sorted by the
/// caller).
pub fn paginate(
    items: Vec<Value>,
    params: &BTreeMap<String, String>,
    filters: &[&str],
    key: &str,
) -> ApiResult<Value> {
    let req = PageRequest::parse(params, filters)?;
    let start = match req.marker {
        None => 0,
        Some(m) => {
            items
                .iter()
                .position(|v| v.get("id").and_then(Value::as_str) == Some(m))
                .ok_or_else(|| req.unknown_marker())?
                + 1
        }
    };
    Ok(req.page_of(items.into_iter().skip(start), key))
}

/// One page of a list of `kind`, in list order (by name): the objects after the marker that
/// match the filters. It walks the name index from the marker and views only what it looks
/// at, so a page costs its own size rather than the whole list's (unless filters skip most).
pub fn list_page(
    api: &StateApi,
    st: &ClusterState,
    kind: Kind,
    params: &BTreeMap<String, String>,
    filters: &[&str],
    key: &str,
) -> ApiResult<Value> {
    let req = PageRequest::parse(params, filters)?;
    let ids = st
        .ids_in_list_order(kind, req.marker)
        .ok_or_else(|| req.unknown_marker())?;
    // Hosts and instances: `segment=` takes the segment's name as well as its id (and those
    // listed show it as given).
    let segment = params
        .get("segment")
        .filter(|_| matches!(kind, Kind::Host | Kind::Instance))
        .and_then(|seg| Some((seg, st.resolve(Kind::Segment, seg)?)));
    let views = ids.filter_map(|id| st.get(kind, id)).map(|o| {
        let mut v = api.view_in(Some(st), &o);
        if let Some((seg, id)) = &segment
            && v.get("segment").and_then(Value::as_str) == Some(id.as_str())
        {
            v["segment"] = Value::String((*seg).clone());
        }
        v
    });
    Ok(req.page_of(views, key))
}
