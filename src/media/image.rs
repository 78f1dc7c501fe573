//! Upload checks and re-encoding: only real PNG, JPEG, GIF or WebP pictures within the size and pixel
//! limits are accepted; each is decoded, turned upright (the orientation a camera recorded in EXIF),
//! scaled down to fit and encoded afresh, so no metadata (EXIF location, comments) of the original
//! survives.

use std::sync::OnceLock;

use tokio::sync::{Semaphore, SemaphorePermit};

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::error::{Error, Result};

/// Bounds on what an upload may be.
#[derive(Clone, Copy, Debug)]
pub struct ImageLimits {
    /// Largest encoded file, in bytes.
    pub max_bytes: usize,
    /// Largest decoded picture, in pixels.
    pub max_pixels: u64,
}

/// An encoded picture ready to store.
pub struct Picture {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// `png` (pictures with transparency) or `jpg`.
    pub extension: &'static str,
    /// Width after scaling.
    pub width: u32,
    /// Height after scaling.
    pub height: u32,
}

/// How many pictures decode at once: half the cores, at least one (a decode is CPU- and
/// memory-heavy; a burst of uploads waits its turn instead of multiplying the memory).
fn decodes() -> &'static Semaphore {
    static DECODES: OnceLock<Semaphore> = OnceLock::new();
    DECODES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Semaphore::new((cores / 2).max(1))
    })
}

/// A turn among the decodes (held until dropped).
pub async fn decode_turn() -> Result<SemaphorePermit<'static>> {
    decodes()
        .acquire()
        .await
        .map_err(|_| Error::internal(anyhow::anyhow!("the decode semaphore is closed")))
}

/// Pixels of the largest photo a phone takes by default (24 megapixels, 5712 x 4284, and a
/// little more): always accepted, whatever the picture is stored at.
const PHONE_PHOTO_PIXELS: u64 = 25_000_000;

/// Largest original kept for a picture stored at `max_side`: eight times its side each way (more
/// detail than that is thrown away by the scaling, so accepting it only costs memory), and never
/// less than a phone's photo, up to the configured limit.
fn pixel_cap(limits: ImageLimits, max_side: u32) -> ImageLimits {
    let needed = (u64::from(max_side) * 8).pow(2).max(PHONE_PHOTO_PIXELS);
    ImageLimits {
        max_pixels: limits.max_pixels.min(needed),
        ..limits
    }
}

/// Checks and re-encodes `bytes` on the blocking pool, scaled to fit in `max_side` x `max_side`.
/// `field` names the upload argument in validation errors. At most half the cores decode at once,
/// and an original may have at most `pixel_cap` pixels for its `max_side`.
pub async fn prepare_picture(
    bytes: Vec<u8>,
    limits: ImageLimits,
    max_side: u32,
    field: &'static str,
) -> Result<Picture> {
    let limits = pixel_cap(limits, max_side);
    let _turn = decode_turn().await?;
    tokio::task::spawn_blocking(move || prepare_blocking(&bytes, limits, max_side, field)).await?
}

fn prepare_blocking(
    bytes: &[u8],
    limits: ImageLimits,
    max_side: u32,
    field: &'static str,
) -> Result<Picture> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::bad_input(
            field,
            format!("the file is larger than {} bytes", limits.max_bytes),
        ));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(Error::internal)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) => {}
        _ => {
            return Err(Error::bad_input(
                field,
                "the file is not a PNG, JPEG, GIF or WebP picture",
            ));
        }
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|_| Error::bad_input(field, "the picture cannot be read"))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::bad_input(
            field,
            format!("the picture has more than {} pixels", limits.max_pixels),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(Error::internal)?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let unreadable = |_| Error::bad_input(field, "the picture cannot be read");
    // Upright as the camera meant it: the orientation a phone records in EXIF is applied to the
    // pixels, since re-encoding drops the metadata that carried it.
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    let mut scaled = if decoded.width() > max_side || decoded.height() > max_side {
        decoded.thumbnail(max_side, max_side)
    } else {
        decoded
    };
    // Turned after scaling (the box is square, so the result is the same): turning the original
    // would take a second buffer of its full size.
    scaled.apply_orientation(orientation);
    encode(scaled)
}

/// Renders `original` blurred for `level` (0 sharp .. 10 unrecognisable) as a JPEG, at most
/// `max_side` px, on the blocking pool. The caller holds a [`decode_turn`].
pub async fn render_blurred(original: bytes::Bytes, level: i32, max_side: u32) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let decoded = image::load_from_memory(&original).map_err(Error::internal)?;
        let scaled = decoded.thumbnail(max_side, max_side);
        let sigma = level.clamp(0, 10) as f32 * 2.5;
        let blurred = if sigma > 0.0 {
            DynamicImage::ImageRgb8(image::imageops::fast_blur(&scaled.to_rgb8(), sigma))
        } else {
            DynamicImage::ImageRgb8(scaled.to_rgb8())
        };
        Ok(encode(blurred)?.bytes)
    })
    .await?
}

fn encode(picture: DynamicImage) -> Result<Picture> {
    let (width, height) = (picture.width(), picture.height());
    let mut out = Cursor::new(Vec::new());
    let extension = if picture.color().has_alpha() {
        picture
            .to_rgba8()
            .write_to(&mut out, ImageFormat::Png)
            .map_err(Error::internal)?;
        "png"
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        picture
            .to_rgb8()
            .write_with_encoder(encoder)
            .map_err(Error::internal)?;
        "jpg"
    };
    Ok(Picture {
        bytes: out.into_inner(),
        extension,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ImageLimits = ImageLimits {
        max_bytes: 1 << 20,
        max_pixels: 1_000_000,
    };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(width, height)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn a_picture_is_reencoded_and_scaled() {
        let picture = prepare_blocking(&png(1000, 500), LIMITS, 256, "file").unwrap();
        assert_eq!((picture.width, picture.height), (256, 128));
        assert_eq!(picture.extension, "jpg");
        assert!(picture.bytes.starts_with(&[0xFF, 0xD8]));
    }

    #[test]
    fn text_is_not_a_picture() {
        let err = prepare_blocking(b"hello, world", LIMITS, 256, "file")
            .err()
            .unwrap();
        assert!(matches!(err, Error::BadInput { ref field, .. } if field == "file"));
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        let err = prepare_blocking(&png(2000, 1000), LIMITS, 256, "file")
            .err()
            .unwrap();
        assert!(matches!(err, Error::BadInput { ref message, .. } if message.contains("pixels")));
    }
}
