//! `Content-Type` parsing: the media kind, the `charset` and other parameters (`boundary`).

/// How a payload is to be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// Declared JSON (`application/json`, `application/*+json`, `text/json`).
    Json,
    /// Declared `application/x-www-form-urlencoded`.
    Form,
    /// HL7 v2 ER7 (`x-application/hl7-v2+er7`, `application/hl7-v2`, `application/edi-hl7`).
    Hl7,
    /// `multipart/*` (the boundary travels in [`Base::boundary`]).
    ///
    /// [`Base::boundary`]: super::Base::boundary
    Multipart,
    /// Anything else: JSON if it looks like and parses as JSON, else text.
    Sniff,
}

/// Parses a `Content-Type` into the media kind and the lowercase `charset` parameter.
pub(crate) fn media_type(content_type: Option<&str>) -> (Media, Option<String>) {
    let Some(ct) = content_type else {
        return (Media::Sniff, None);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    let media = if essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Media::Json
    } else if essence == "application/x-www-form-urlencoded" {
        Media::Form
    } else if matches!(
        essence.as_str(),
        "x-application/hl7-v2+er7" | "application/hl7-v2" | "application/edi-hl7" | "text/hl7"
    ) {
        Media::Hl7
    } else if essence.starts_with("multipart/") {
        Media::Multipart
    } else {
        Media::Sniff
    };
    (media, charset)
}

/// A `Content-Type` parameter (`boundary`), unquoted.
pub(crate) fn ct_param(content_type: Option<&str>, name: &str) -> Option<String> {
    content_type?.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}
