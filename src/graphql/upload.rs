//! Uploads: the bytes of a multipart file argument, read once for every mutation that takes one.

use async_graphql::{Context, Upload};

use crate::error::{Error, Result};

/// The content of the upload `argument` (the argument's name, for the error).
pub fn read(ctx: &Context<'_>, file: &Upload, argument: &str) -> Result<Vec<u8>> {
    let upload = file
        .value(ctx)
        .map_err(|_| Error::bad_input(argument, "the upload is missing"))?;
    Ok(upload.content.to_vec())
}
