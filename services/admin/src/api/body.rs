//! Request bodies: JSON parsed with the path of the field at fault in the error
//! (`{"error": "...", "field": "period"}`), whatever the Content-Type.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Most bytes a request body may have (a policy object is a few hundred).
pub const MAX_BODY: usize = 64 * 1024;

/// Parses `raw` as JSON into `T`, or 422 naming the field (unknown, missing, wrong type).
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    parse_at_most(raw, MAX_BODY)
}

/// [`parse`] with room for `max` bytes (a whole policy file).
pub fn parse_at_most<T: DeserializeOwned>(raw: &[u8], max: usize) -> Result<T, ApiError> {
    if raw.len() > max {
        return Err(ApiError::invalid(
            "",
            format!("the request body is larger than {max} bytes"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        // serde names missing and unknown fields in its message, not in the path.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| inner.split_once(p))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let field = match (path.as_str(), named) {
            ("." | "", name) => name.unwrap_or_default(),
            (p, Some(name)) if !p.ends_with(name.as_str()) => format!("{p}.{name}"),
            (p, _) => p.to_owned(),
        };
        ApiError::invalid(field, format!("invalid request body: {inner}"))
    })
}
