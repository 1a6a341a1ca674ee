//! OpenAI's images API (`/v1/images/generations`, `/edits`, `/variations`) to Google's image
//! models, as Higress does: Imagen's `:predict` for the Gemini API, `generateContent` with image
//! output for Vertex AI. Edits and variations arrive as `multipart/form-data` (what the OpenAI
//! SDKs send) or as JSON with image URLs.

use super::gemini::media_part;
use super::{err, parse, TranslateError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sdk::api::ApiKind;
use serde_json::{json, Map, Value};

/// Prompt of a variation request that names none (Vertex needs text with the image).
pub const VARIATION_PROMPT: &str = "Create variations of the provided image.";

/// The fields of an OpenAI images request ai-proxy uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageRequest {
    /// `model` (before `modelMapping`).
    pub model: String,
    /// `prompt`.
    pub prompt: String,
    /// `size` (`1024x1024`, …).
    pub size: String,
    /// `output_format` (`png`, `jpeg`, `webp`).
    pub output_format: String,
    /// `n`.
    pub n: Option<u64>,
    /// Input images as Gemini parts (`inlineData` or `fileData`).
    pub images: Vec<Value>,
    /// A mask was sent (Vertex image edits take none).
    pub has_mask: bool,
}

impl ImageRequest {
    /// Reads a JSON images request: `image`, `images` and `image_url` as URL strings or
    /// `{"url"}` / `{"image_url": {"url"}}` objects.
    pub fn from_json(v: &Value) -> Result<ImageRequest, TranslateError> {
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut images = Vec::new();
        let mut urls: Vec<&Value> = v
            .get("images")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        urls.extend(v.get("image"));
        urls.extend(v.get("image_url"));
        for u in urls {
            if let Some(url) = url_of(u) {
                images.push(media_part(url)?);
            }
        }
        let has_mask = ["mask", "mask_url"]
            .iter()
            .any(|k| v.get(*k).and_then(url_of).is_some());
        Ok(ImageRequest {
            model: text("model"),
            prompt: text("prompt"),
            size: text("size"),
            output_format: text("output_format"),
            n: v.get("n").and_then(Value::as_u64),
            images,
            has_mask,
        })
    }
}

/// The JSON form of a `multipart/form-data` images request (`content_type` carries the
/// boundary): text fields as strings, `n` as a number, image files as base64 data URLs under
/// `images` (an `image` field holding a URL is kept as that URL), a mask file as `mask`.
pub fn form_to_json(body: &[u8], content_type: &str) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    let mut images = Vec::new();
    for part in multipart_parts(body, content_type)? {
        let text = String::from_utf8_lossy(part.data).trim().to_string();
        let lower = text.to_ascii_lowercase();
        let is_url = ["data:", "http://", "https://"]
            .iter()
            .any(|p| lower.starts_with(p));
        let as_url = || -> Value {
            if is_url {
                return Value::String(text.clone());
            }
            let mime = part
                .content_type
                .filter(|t| !t.is_empty() && *t != "application/octet-stream")
                .unwrap_or_else(|| sniff_mime(part.data));
            Value::String(format!("data:{mime};base64,{}", STANDARD.encode(part.data)))
        };
        match part.name.split('[').next().unwrap_or_default() {
            "n" => {
                if let Ok(n) = text.parse::<u64>() {
                    out.insert("n".into(), n.into());
                }
            }
            "image" if !part.data.is_empty() => images.push(as_url()),
            "mask" if !part.data.is_empty() => {
                out.insert("mask".into(), as_url());
            }
            "image" | "mask" => {}
            name => {
                out.insert(name.to_string(), Value::String(text.clone()));
            }
        }
    }
    if !images.is_empty() {
        out.insert("images".into(), Value::Array(images));
    }
    Ok(Value::Object(out))
}

fn url_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o
            .get("image_url")
            .and_then(|i| i.get("url"))
            .or_else(|| o.get("url"))
            .and_then(Value::as_str),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// The media type of image bytes, from their magic number.
fn sniff_mime(data: &[u8]) -> &'static str {
    if data.starts_with(b"\x89PNG") {
        "image/png"
    } else if data.starts_with(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if data.starts_with(b"GIF8") {
        "image/gif"
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

/// One field of a `multipart/form-data` body.
#[derive(Debug, PartialEq)]
pub struct FormPart<'a> {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// Its `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// Its bytes.
    pub data: &'a [u8],
}

/// Whether a `content-type` is `multipart/form-data`.
pub fn is_multipart(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parameter `name` of a header value (`form-data; name="x"`), unquoted.
fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The fields of a `multipart/form-data` body (RFC 7578).
pub fn multipart_parts<'a>(
    body: &'a [u8],
    content_type: &str,
) -> Result<Vec<FormPart<'a>>, TranslateError> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| err("multipart/form-data without a boundary"))?;
    let delimiter = format!("--{boundary}");
    let close = format!("\r\n--{boundary}");
    let start = find(body, delimiter.as_bytes())
        .ok_or_else(|| err("multipart body without its boundary"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| err("malformed multipart body (no line break after a boundary)"))?;
        let head_end = find(rest, b"\r\n\r\n")
            .ok_or_else(|| err("malformed multipart body (part headers do not end)"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| err("multipart part headers are not UTF-8"))?;
        let after = &rest[head_end + 4..];
        let end = find(after, close.as_bytes())
            .ok_or_else(|| err("multipart body is cut short (no closing boundary)"))?;
        let mut name = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = header_param(v, "name").map(str::to_string);
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim());
            }
        }
        if let Some(name) = name {
            parts.push(FormPart {
                name,
                content_type,
                data: &after[..end],
            });
        }
        rest = &after[end + close.len()..];
    }
}

/// The Imagen `:predict` body for an image generation (Gemini API).
pub fn to_imagen_request(req: &ImageRequest) -> Value {
    let mut body = json!({"instances": [{"prompt": req.prompt}]});
    if let Some(n) = req.n.filter(|n| *n > 0) {
        body["parameters"] = json!({"sampleCount": n});
    }
    body
}

/// The OpenAI images answer for an Imagen `:predict` answer (`b64_json` per prediction).
pub fn from_imagen_response(body: &[u8]) -> Result<Value, TranslateError> {
    let v: Value = parse(body, "Imagen answer is not JSON")?;
    let predictions = v
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or_else(|| err("Imagen answer without predictions"))?;
    let data: Vec<Value> = predictions
        .iter()
        .filter_map(|p| p.get("bytesBase64Encoded").and_then(Value::as_str))
        .map(|b64| json!({ "b64_json": b64 }))
        .collect();
    Ok(json!({"created": 0, "data": data}))
}

/// Vertex's `aspectRatio` and `imageSize` for an OpenAI `size` (1:1 and 1k by default).
pub fn vertex_size(size: &str) -> (&'static str, &'static str) {
    match size {
        "1792x1024" => ("16:9", "2k"),
        "1024x1792" => ("9:16", "2k"),
        "2048x2048" => ("1:1", "2k"),
        "4096x4096" => ("1:1", "4k"),
        "1536x1024" => ("3:2", "2k"),
        "1024x1536" => ("2:3", "2k"),
        "1024x768" | "1365x1024" => ("4:3", "1k"),
        "768x1024" | "1024x1365" => ("3:4", "1k"),
        "1280x1024" => ("5:4", "1k"),
        "1024x1280" => ("4:5", "1k"),
        "2560x1080" => ("21:9", "2k"),
        _ => ("1:1", "1k"),
    }
}

/// The Vertex `generateContent` body that answers an images request with image parts.
pub fn to_vertex_image_request(
    req: &ImageRequest,
    api: ApiKind,
    safety_settings: Option<&Value>,
) -> Result<Value, TranslateError> {
    match api {
        ApiKind::ImageEdits if req.has_mask => {
            return Err(err("mask is not supported for Vertex image edits"))
        }
        ApiKind::ImageEdits | ApiKind::ImageVariations if req.images.is_empty() => {
            return Err(err("missing image in request"))
        }
        ApiKind::ImageEdits | ApiKind::ImageGenerations if req.prompt.is_empty() => {
            return Err(err("missing prompt in request"))
        }
        _ => {}
    }
    let prompt = match (api, req.prompt.as_str()) {
        (ApiKind::ImageVariations, "") => VARIATION_PROMPT,
        (_, p) => p,
    };
    let mut parts = req.images.clone();
    parts.push(json!({ "text": prompt }));
    let mime = match req.output_format.as_str() {
        "jpeg" | "jpg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    };
    let (ratio, size) = vertex_size(&req.size);
    let mut body = Map::new();
    body.insert("contents".into(), json!([{"role": "user", "parts": parts}]));
    if let Some(s) = safety_settings {
        body.insert("safetySettings".into(), s.clone());
    }
    body.insert(
        "generationConfig".into(),
        json!({
            "temperature": 1.0,
            "maxOutputTokens": 32768,
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {
                "aspectRatio": ratio,
                "imageSize": size,
                "imageOutputOptions": {"mimeType": mime},
                "personGeneration": "ALLOW_ALL",
            },
        }),
    );
    Ok(Value::Object(body))
}

/// The OpenAI images answer for a Vertex `generateContent` answer: every inline image part that
/// is not a thought, with the token usage.
pub fn from_vertex_image_response(body: &[u8]) -> Result<Value, TranslateError> {
    let v: Value = parse(body, "Vertex answer is not JSON")?;
    let candidates = v
        .get("candidates")
        .and_then(Value::as_array)
        .ok_or_else(|| err("Vertex answer without candidates"))?;
    let data: Vec<Value> = candidates
        .iter()
        .filter_map(|c| c.pointer("/content/parts").and_then(Value::as_array))
        .flatten()
        .filter(|p| p.get("thought") != Some(&Value::Bool(true)))
        .filter_map(|p| p.pointer("/inlineData/data").and_then(Value::as_str))
        .filter(|d| !d.is_empty())
        .map(|b64| json!({ "b64_json": b64 }))
        .collect();
    let count = |key: &str| {
        v.pointer(&format!("/usageMetadata/{key}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(json!({
        "created": 0,
        "data": data,
        "usage": {
            "total_tokens": count("totalTokenCount"),
            "input_tokens": count("promptTokenCount"),
            "output_tokens": count("candidatesTokenCount"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn form() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nadd a hat\r\n",
        );
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndall-e-2\r\n",
        );
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n1792x1024\r\n",
        );
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat.png\"\r\nContent-Type: application/octet-stream\r\n\r\n\x89PNG\r\n\x1a\n\x00--X\r\n");
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = form();
        let parts = multipart_parts(&body, CT).unwrap();
        assert_eq!(parts.len(), 4);
        // Binary data with CRLF and a boundary-like prefix inside survives.
        assert_eq!(parts[3].data, b"\x89PNG\r\n\x1a\n\x00--X");
        let v = form_to_json(&form(), CT).unwrap();
        assert_eq!(v["images"][0], "data:image/png;base64,iVBORw0KGgoALS1Y");
        let req = ImageRequest::from_json(&v).unwrap();
        assert_eq!(req.prompt, "add a hat");
        assert_eq!(req.model, "dall-e-2");
        assert_eq!(
            req.images,
            vec![json!({"inlineData": {"mimeType": "image/png",
                "data": STANDARD.encode(b"\x89PNG\r\n\x1a\n\x00--X")}})]
        );
        for (ct, body) in [
            ("multipart/form-data", &form()[..]),
            (
                CT,
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            ),
            (CT, b"nothing"),
        ] {
            assert!(multipart_parts(body, ct).is_err(), "{ct}");
        }
    }

    #[test]
    fn vertex_image_requests_as_higress_builds_them() {
        let req = ImageRequest::from_json(&form_to_json(&form(), CT).unwrap()).unwrap();
        let safety = json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]);
        let body = to_vertex_image_request(&req, ApiKind::ImageEdits, Some(&safety)).unwrap();
        assert_eq!(
            body["contents"][0]["parts"][1],
            json!({"text": "add a hat"})
        );
        assert!(body["contents"][0]["parts"][0]["inlineData"].is_object());
        assert_eq!(body["safetySettings"], safety);
        assert_eq!(
            body["generationConfig"]["imageConfig"],
            json!({"aspectRatio": "16:9", "imageSize": "2k",
                "imageOutputOptions": {"mimeType": "image/png"}, "personGeneration": "ALLOW_ALL"})
        );
        assert_eq!(
            body["generationConfig"]["responseModalities"],
            json!(["TEXT", "IMAGE"])
        );
        // Variations get a default prompt; edits need one, and no mask.
        let json_req = ImageRequest::from_json(&json!({"model": "m",
            "image": {"image_url": {"url": "https://x.test/a.webp"}}}))
        .unwrap();
        let v = to_vertex_image_request(&json_req, ApiKind::ImageVariations, None).unwrap();
        assert_eq!(
            v["contents"][0]["parts"],
            json!([{"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a.webp"}},
                {"text": VARIATION_PROMPT}])
        );
        assert!(to_vertex_image_request(&json_req, ApiKind::ImageEdits, None).is_err());
        let masked = ImageRequest::from_json(&json!({"prompt": "p",
            "image": "data:image/png;base64,AAAA", "mask": "data:image/png;base64,AAAA"}))
        .unwrap();
        let e = to_vertex_image_request(&masked, ApiKind::ImageEdits, None).unwrap_err();
        assert!(e.0.contains("mask"), "{e}");
        let none = ImageRequest::from_json(&json!({"prompt": "p"})).unwrap();
        assert!(to_vertex_image_request(&none, ApiKind::ImageVariations, None).is_err());
        assert!(to_vertex_image_request(&none, ApiKind::ImageGenerations, None).is_ok());
    }

    #[test]
    fn answers_in_openai_images_shape() {
        let imagen = br#"{"predictions":[{"bytesBase64Encoded":"QUJD","mimeType":"image/png"},{"bytesBase64Encoded":"REVG","mimeType":"image/png"}]}"#;
        assert_eq!(
            from_imagen_response(imagen).unwrap(),
            json!({"created": 0, "data": [{"b64_json": "QUJD"}, {"b64_json": "REVG"}]})
        );
        let vertex = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking","thought":true},{"inlineData":{"mimeType":"image/png","data":"WFla"}},{"text":"here"}]}}],
            "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1290,"totalTokenCount":1293}}"#;
        assert_eq!(
            from_vertex_image_response(vertex).unwrap(),
            json!({"created": 0, "data": [{"b64_json": "WFla"}],
                "usage": {"total_tokens": 1293, "input_tokens": 3, "output_tokens": 1290}})
        );
        assert!(from_imagen_response(b"{}").is_err());
        assert!(from_vertex_image_response(b"<html>").is_err());
        let req = ImageRequest::from_json(&json!({"prompt": "a cat", "n": 2})).unwrap();
        assert_eq!(
            to_imagen_request(&req),
            json!({"instances": [{"prompt": "a cat"}], "parameters": {"sampleCount": 2}})
        );
    }
}
