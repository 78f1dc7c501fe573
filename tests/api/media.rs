//! Avatars: multipart uploads, checks, re-encoding and the cacheable media route.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{Backend, Session, TestApp};
use crate::on_every_backend;

on_every_backend!(
    an_avatar_is_reencoded_without_metadata_and_served_cacheable,
    a_phone_photo_is_taken_and_stored_upright,
    a_new_avatar_replaces_the_old_one,
    non_pictures_and_oversized_uploads_are_refused,
    uploads_are_rate_limited_per_user,
    an_avatar_original_may_have_fewer_pixels_than_an_event_picture,
    media_answers_byte_ranges,
    racing_uploads_leave_only_the_pictures_shown,
    pictures_nothing_shows_are_swept_after_an_hour,
);

const UPLOAD: &str = r#"{"query":"mutation($f: Upload!) { uploadAvatar(file: $f) { avatarUrl } }","variables":{"f":null}}"#;

async fn upload(app: &TestApp, session: &Session, bytes: Vec<u8>, name: &str) -> (u16, Value) {
    let form = Form::new()
        .text("operations", UPLOAD)
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", Part::bytes(bytes).file_name(name.to_owned()));
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&session.access)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// A JPEG carrying an EXIF segment with a recognisable secret.
fn jpeg_with_exif(width: u32, height: u32) -> Vec<u8> {
    let mut encoded = Cursor::new(Vec::new());
    DynamicImage::new_rgb8(width, height)
        .write_to(&mut encoded, ImageFormat::Jpeg)
        .expect("encode");
    let jpeg = encoded.into_inner();
    let payload = b"Exif\0\0GPS-SECRET-48.8584N-2.2945E";
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(
        &u16::try_from(payload.len() + 2)
            .expect("short")
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `jpeg` with an EXIF segment (big-endian TIFF, one IFD entry) recording `orientation`, as a
/// phone writes it; built here byte by byte, not by the code under test.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    exif.extend_from_slice(&1u16.to_be_bytes());
    // Tag 0x0112 (Orientation), type 3 (SHORT), count 1, the value left-aligned in 4 bytes.
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(exif.len() + 2).expect("short").to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A phone's default photo (24 megapixels, 5712 x 4284 as the sensor reads it) of a portrait
/// scene, with EXIF orientation 6 (turn 90 degrees clockwise to show it): it is taken as an avatar,
/// and stored upright, 384 x 512, with the sensor's top-left corner (painted red) at the top right.
async fn a_phone_photo_is_taken_and_stored_upright(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let mut sensor = image::RgbImage::new(5712, 4284);
    for y in 0..1000 {
        for x in 0..1000 {
            sensor.put_pixel(x, y, image::Rgb([255, 0, 0]));
        }
    }
    let mut encoded = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(sensor)
        .write_to(&mut encoded, ImageFormat::Jpeg)
        .expect("encode");
    let photo = with_orientation(&encoded.into_inner(), 6);
    let (status, body) = upload(&app, &ann, photo, "IMG_0001.jpg").await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["uploadAvatar"]["avatarUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("taken: {body}"))
        .to_owned();
    let served = app.http.get(app.url(&url)).send().await.expect("sent");
    let bytes = served.bytes().await.expect("bytes");
    let stored = image::load_from_memory(&bytes)
        .expect("a picture")
        .to_rgb8();
    assert_eq!((stored.width(), stored.height()), (384, 512), "upright");
    let red = |x: u32, y: u32| {
        let [r, g, b] = stored.get_pixel(x, y).0;
        r > 200 && g < 60 && b < 60
    };
    assert!(
        red(stored.width() - 10, 10),
        "the sensor's top-left is at the top right"
    );
    assert!(!red(10, 10), "and not at the top left");
}

async fn an_avatar_is_reencoded_without_metadata_and_served_cacheable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let wes = app.signup("wes").await;
    let original = jpeg_with_exif(1200, 600);
    assert!(original.windows(10).any(|w| w == b"GPS-SECRET"));
    let (status, body) = upload(&app, &wes, original, "me.jpg").await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["uploadAvatar"]["avatarUrl"]
        .as_str()
        .expect("avatarUrl")
        .to_owned();
    assert!(url.starts_with("/media/"), "{url}");

    let served = app.http.get(app.url(&url)).send().await.expect("sent");
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert!(
        served.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );
    let etag = served.headers()["etag"].clone();
    let bytes = served.bytes().await.expect("bytes");
    assert!(
        !bytes.windows(10).any(|w| w == b"GPS-SECRET"),
        "metadata survived"
    );
    let picture = image::load_from_memory(&bytes).expect("a picture");
    assert_eq!((picture.width(), picture.height()), (512, 256));

    let revalidated = app
        .http
        .get(app.url(&url))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(revalidated.status(), 304);
    let me = app.gql_as(&wes, "{ me { avatarUrl } }", json!({})).await;
    assert_eq!(me.data()["me"]["avatarUrl"], url.as_str());
}

async fn a_new_avatar_replaces_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let xia = app.signup("xia").await;
    let mut png = Cursor::new(Vec::new());
    DynamicImage::new_rgba8(64, 64)
        .write_to(&mut png, ImageFormat::Png)
        .expect("encode");
    let (_, first) = upload(&app, &xia, png.into_inner(), "a.png").await;
    let first = first["data"]["uploadAvatar"]["avatarUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(
        first.ends_with(".png"),
        "transparent pictures stay PNG: {first}"
    );
    let (_, second) = upload(&app, &xia, jpeg_with_exif(32, 32), "b.jpg").await;
    let second = second["data"]["uploadAvatar"]["avatarUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(
        app.http
            .get(app.url(&second))
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url(&first))
            .send()
            .await
            .expect("sent")
            .status(),
        404
    );
    for junk in [
        "/media/../../etc/passwd",
        "/media/nothing.png",
        "/media/0193a0b0-0000-7000-8000-000000000000.png",
    ] {
        assert_eq!(
            app.http
                .get(app.url(junk))
                .send()
                .await
                .expect("sent")
                .status(),
            404,
            "{junk}"
        );
    }
}

async fn non_pictures_and_oversized_uploads_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_upload_bytes = 64 * 1024;
        c.max_image_pixels = 1_000_000;
    })
    .await;
    let yan = app.signup("yan").await;
    let (_, text) = upload(&app, &yan, b"#!/bin/sh\necho hi\n".to_vec(), "evil.png").await;
    assert_eq!(
        text["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{text}"
    );
    assert_eq!(text["errors"][0]["extensions"]["field"], "file");

    // 2000 x 1000 is within the byte limit (a flat JPEG is small) but over the pixel limit.
    let (_, huge) = upload(&app, &yan, jpeg_with_exif(2000, 1000), "big.jpg").await;
    assert_eq!(huge["errors"][0]["extensions"]["field"], "file", "{huge}");
    assert!(
        huge["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("pixels")
    );

    let (status, big) = upload(&app, &yan, vec![0u8; 200 * 1024], "big.png").await;
    assert_eq!(status, 413, "{big}");
    assert_eq!(big["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // Nothing changed, and the server still serves.
    let me = app.gql_as(&yan, "{ me { avatarUrl } }", json!({})).await;
    assert_eq!(me.data()["me"]["avatarUrl"], json!(null));
}

/// A PNG of `side` x `side` black pixels (tiny when compressed, big when decoded).
fn black_png(side: u32) -> Vec<u8> {
    let mut encoded = Cursor::new(Vec::new());
    DynamicImage::new_luma8(side, side)
        .write_to(&mut encoded, ImageFormat::Png)
        .expect("encode");
    encoded.into_inner()
}

async fn uploads_are_rate_limited_per_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.uploads_per_minute = 2).await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    for _ in 0..2 {
        let (status, body) = upload(&app, &ann, black_png(64), "a.png").await;
        assert_eq!(status, 200);
        assert!(body["errors"].is_null(), "{body}");
    }
    let (_, refused) = upload(&app, &ann, black_png(64), "a.png").await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{refused}"
    );
    let (_, other) = upload(&app, &bob, black_png(64), "b.png").await;
    assert!(
        other["errors"].is_null(),
        "another user's uploads are their own: {other}"
    );
}

/// An avatar is stored at 512 px, so its original may have at most (8 x 512)^2 pixels; an event
/// picture (1600 px) may be larger. A 4200 x 4200 all-black PNG (a few KB, 17.6 MP decoded) is too
/// much for an avatar and fine for an event.
async fn an_avatar_original_may_have_fewer_pixels_than_an_event_picture(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    // More pixels than any phone photo (26 million), fewer than the configured limit (40 million).
    let big = black_png(5100);
    assert!(big.len() < 200_000, "compressed small: {}", big.len());
    let (_, refused) = upload(&app, &ann, big.clone(), "big.png").await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["field"], "file",
        "{refused}"
    );
    let event =
        crate::common::fixtures::create_event(&app, &ann, "Gallery", "2030-01-01T20:00:00Z").await;
    let body = upload_event_image(&app, &ann, &event["id"], big).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["uploadEventImage"]["imageUrl"].is_string());
}

/// `uploadEventImage` of `bytes` (a PNG) for `event`, as `session`; the response body.
async fn upload_event_image(
    app: &TestApp,
    session: &Session,
    event: &Value,
    bytes: Vec<u8>,
) -> Value {
    let operations = json!({
        "query": "mutation($id: ID!, $f: Upload!) { uploadEventImage(id: $id, file: $f) { imageUrl } }",
        "variables": { "id": event, "f": null },
    });
    let form = Form::new()
        .text("operations", operations.to_string())
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", Part::bytes(bytes).file_name("picture.png"));
    app.http
        .post(app.url("/graphql"))
        .bearer_auth(&session.access)
        .multipart(form)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// The keys of every public picture in the media store.
async fn stored_pictures(app: &TestApp) -> Vec<String> {
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let mut keys = app
        .state
        .media
        .keys_written_before("", later)
        .await
        .expect("the store lists");
    keys.retain(|key| !key.starts_with("private/"));
    keys.sort();
    keys
}

/// The media key at the end of a picture's URL.
fn key_of(url: &Value) -> String {
    let url = url.as_str().expect("a picture URL");
    url.rsplit_once("/media/")
        .expect("a media URL")
        .1
        .to_owned()
}

/// Uploads that race each other, or race the deletion of their event, leave exactly the pictures
/// that something shows in the store: each upload deletes the picture it replaced, and an upload
/// that lost its event deletes its own.
async fn racing_uploads_leave_only_the_pictures_shown(backend: Backend) {
    use futures_util::future::join_all;
    let app = TestApp::spawn_with(backend, |c| c.uploads_per_minute = 1_000).await;
    let ann = app.signup("ann").await;
    let answers =
        join_all((0..8).map(|_| upload(&app, &ann, jpeg_with_exif(64, 64), "a.jpg"))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
    }
    let me = app.gql_as(&ann, "{ me { avatarUrl } }", json!({})).await;
    let avatar = key_of(&me.data()["me"]["avatarUrl"]);
    assert_eq!(
        stored_pictures(&app).await,
        std::slice::from_ref(&avatar),
        "one avatar stored"
    );

    let event =
        crate::common::fixtures::create_event(&app, &ann, "Gallery", "2030-01-01T20:00:00Z").await;
    let answers =
        join_all((0..8).map(|_| upload_event_image(&app, &ann, &event["id"], black_png(64)))).await;
    for body in &answers {
        assert!(body["errors"].is_null(), "{body}");
    }
    let shown = app
        .gql_as(
            &ann,
            "query($id: ID!) { event(id: $id) { imageUrl } }",
            json!({ "id": event["id"] }),
        )
        .await;
    let mut expected = vec![avatar.clone(), key_of(&shown.data()["event"]["imageUrl"])];
    expected.sort();
    assert_eq!(
        stored_pictures(&app).await,
        expected,
        "one event picture stored"
    );

    let uploads =
        join_all((0..6).map(|_| upload_event_image(&app, &ann, &event["id"], black_png(64))));
    let deletion =
        crate::common::fixtures::delete_event(&app, &ann, event["id"].as_str().expect("id"));
    let (answers, ()) = tokio::join!(uploads, deletion);
    for body in &answers {
        let code = &body["errors"][0]["extensions"]["code"];
        assert!(code.is_null() || code == "NOT_FOUND", "{body}");
    }
    assert_eq!(
        stored_pictures(&app).await,
        [avatar],
        "the deleted event left no picture behind"
    );
}

async fn media_answers_byte_ranges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ray = app.signup("ray").await;
    let (status, body) = upload(&app, &ray, jpeg_with_exif(300, 200), "me.jpg").await;
    assert_eq!(status, 200, "{body}");
    let url = app.url(
        body["data"]["uploadAvatar"]["avatarUrl"]
            .as_str()
            .expect("url"),
    );
    let whole = app.http.get(&url).send().await.expect("sent");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let whole = whole.bytes().await.expect("bytes");
    let size = whole.len();
    assert!(size > 200, "a real JPEG: {size} bytes");

    let get = |range: &'static str| app.http.get(&url).header("range", range).send();
    let part = get("bytes=0-99").await.expect("sent");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-99/{size}").as_str()
    );
    assert_eq!(part.headers()["content-length"], "100");
    assert_eq!(part.bytes().await.expect("bytes"), whole[..100]);

    let tail = get("bytes=-10").await.expect("sent");
    assert_eq!(tail.status(), 206);
    let expected = format!("bytes {}-{}/{size}", size - 10, size - 1);
    assert_eq!(tail.headers()["content-range"], expected.as_str());
    assert_eq!(tail.bytes().await.expect("bytes"), whole[size - 10..]);

    let rest = app
        .http
        .get(&url)
        .header("range", format!("bytes={}-", size - 5))
        .send()
        .await
        .expect("sent");
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.bytes().await.expect("bytes"), whole[size - 5..]);

    // Past the end: 416 with the size; several ranges or nonsense: the whole picture.
    let beyond = app
        .http
        .get(&url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .expect("sent");
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let nothing = get("bytes=-0").await.expect("sent");
    assert_eq!(nothing.status(), 416, "the last zero bytes");
    assert_eq!(
        nothing.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    // A range that ends past the object gets what there is.
    let clamped = get("bytes=5-99999999").await.expect("sent");
    assert_eq!(clamped.status(), 206);
    let expected = format!("bytes 5-{}/{size}", size - 1);
    assert_eq!(clamped.headers()["content-range"], expected.as_str());
    assert_eq!(clamped.bytes().await.expect("bytes"), whole[5..]);
    let head = app.http.head(&url).send().await.expect("sent");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert!(
        head.bytes().await.expect("bytes").is_empty(),
        "HEAD has no body"
    );
    for ignored in ["bytes=0-1,5-6", "bytes=9-2", "lines=1-2"] {
        let response = get(ignored).await.expect("sent");
        assert_eq!(response.status(), 200, "{ignored}");
        assert_eq!(response.bytes().await.expect("bytes"), whole, "{ignored}");
    }
    let absent = app
        .http
        .get(app.url(&format!("/media/{}.jpg", uuid::Uuid::now_v7())))
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("sent");
    assert_eq!(absent.status(), 404);
}

/// The hourly sweep job run for `moment`, under its own ledger name; how many objects it deleted.
async fn sweep(app: &TestApp, name: &'static str, moment: chrono::DateTime<chrono::Utc>) -> u64 {
    app.run_hourly(name, rally::jobs::service::Work::SweepPhotos, moment)
        .await
}

/// A picture stored by an upload whose instance died before the write that puts it on its row is
/// shown by nothing: the hourly sweep deletes it once it is an hour old, and keeps every picture an
/// account or an event shows, and whatever in the store is not a top-level picture. A store where
/// most pictures are shown by nothing is likely another database's too: nothing is swept then.
async fn pictures_nothing_shows_are_swept_after_an_hour(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let (_, body) = upload(&app, &ann, jpeg_with_exif(64, 64), "a.jpg").await;
    let avatar = key_of(&body["data"]["uploadAvatar"]["avatarUrl"]);
    let event =
        crate::common::fixtures::create_event(&app, &ann, "Gallery", "2030-01-01T20:00:00Z").await;
    let body = upload_event_image(&app, &ann, &event["id"], black_png(64)).await;
    let image = key_of(&body["data"]["uploadEventImage"]["imageUrl"]);
    let put = |key: String| {
        let media = app.state.media.clone();
        async move {
            media
                .put_raw(&key, jpeg_with_exif(16, 16))
                .await
                .expect("stored");
            key
        }
    };
    let stray = put(format!("{}.jpg", uuid::Uuid::now_v7())).await;
    let others = vec![
        put(format!("archive/{}.jpg", uuid::Uuid::now_v7())).await,
        put("README.txt".to_owned()).await,
    ];
    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };
    let kept = sorted([vec![avatar.clone(), image.clone()], others].concat());
    assert_eq!(
        stored_pictures(&app).await,
        sorted([kept.clone(), vec![stray.clone()]].concat())
    );

    // Now, the stray is under an hour old: it may be an upload on its way to its row.
    assert_eq!(sweep(&app, "sweep-now", chrono::Utc::now()).await, 0);
    assert!(stored_pictures(&app).await.contains(&stray));

    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(sweep(&app, "sweep-later", later).await, 1, "the stray only");
    assert_eq!(stored_pictures(&app).await, kept);
    for key in [&avatar, &image] {
        let served = app
            .http
            .get(app.url(&format!("/media/{key}")))
            .send()
            .await
            .expect("sent");
        assert_eq!(served.status(), 200, "{key}");
    }

    // 21 pictures this database knows nothing of, against its 2: another database's.
    let mut foreign = Vec::new();
    for _ in 0..21 {
        foreign.push(put(format!("{}.jpg", uuid::Uuid::now_v7())).await);
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(3);
    assert_eq!(sweep(&app, "sweep-shared", later).await, 0);
    assert_eq!(
        stored_pictures(&app).await,
        sorted([kept, foreign].concat()),
        "nothing swept"
    );
}
