//! Avatar uploads per second: multipart `uploadAvatar` of a phone-sized photo in a loop per user,
//! which Rally checks, decodes, re-encodes and puts in its media store.

use std::io::Cursor;
use std::time::Duration;

use reqwest::multipart::{Form, Part};

use crate::http::loops_per_second;

/// A 1024x768 JPEG with some detail (a gradient and a grid), about what a phone sends for an avatar.
pub fn photo() -> anyhow::Result<Vec<u8>> {
    let picture = image::RgbImage::from_fn(1024, 768, |x, y| {
        let grid = if x % 64 < 4 || y % 64 < 4 { 255 } else { 0 };
        image::Rgb([(x / 4) as u8, (y / 3) as u8, grid])
    });
    let mut encoded = Cursor::new(Vec::new());
    picture.write_to(&mut encoded, image::ImageFormat::Jpeg)?;
    Ok(encoded.into_inner())
}

/// Uploads/s and failures over `duration`, one loop per token, all to `url`.
pub async fn uploads_per_second(
    url: &str,
    tokens: &[String],
    photo: &[u8],
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    let http = reqwest::Client::new();
    let (url, photo) = (url.to_owned(), photo.to_vec());
    loops_per_second(tokens.to_vec(), duration, move |token| {
        let form = Form::new()
            .text("operations", r#"{"query":"mutation($f: Upload!) { uploadAvatar(file: $f) { avatarUrl } }","variables":{"f":null}}"#)
            .text("map", r#"{"0":["variables.f"]}"#)
            .part("0", Part::bytes(photo.clone()).file_name("me.jpg"));
        let request = http.post(&url).bearer_auth(&token).multipart(form).send();
        async move {
            match request.await {
                Ok(response) => response
                    .text()
                    .await
                    .is_ok_and(|body| body.contains("/media/") && !body.contains("\"errors\"")),
                Err(_) => false,
            }
        }
    })
    .await
}
