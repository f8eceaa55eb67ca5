//! The one way edgerun reads a file whole. Only regular files are read (a path to /dev/zero
//! or a FIFO would be read until memory runs out), and only up to a limit stated per kind of
//! file, checked before anything is allocated.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{Result, StoreError};

/// Limit for metadata: config.json, manifest.json, a shard index, tokenizer.json, pooling
/// configs, profiles and scenarios. The largest real tokenizer.json files are about 20 MB.
pub const METADATA_LIMIT: u64 = 64 << 20;
/// Limit for an input tensor file (`--input`): a batch of images or token ids.
pub const INPUT_LIMIT: u64 = 1 << 30;

/// Opens `path` for reading if it is a regular file, with its size.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let meta = file.metadata().map_err(|e| StoreError::io(path, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(StoreError::NotRegular {
            path: path.to_path_buf(),
            why: format!("is {kind}, not a regular file"),
        });
    }
    Ok((file, meta.len()))
}

/// Reads the regular file `path` whole, refusing it above `limit` bytes.
pub fn read_bounded(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let too_large = |size| StoreError::TooLarge {
        path: path.to_path_buf(),
        what,
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // A file that grows while it is read is still cut at the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// As [`read_bounded`] for UTF-8 text.
pub fn read_text(path: &Path, what: &'static str, limit: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, what, limit)?).map_err(|_| StoreError::Json {
        path: path.to_path_buf(),
        why: format!("the {what} is not UTF-8 text"),
    })
}

/// Reads a metadata file (see [`METADATA_LIMIT`]).
pub fn read_metadata(path: &Path, what: &'static str) -> Result<String> {
    read_text(path, what, METADATA_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        for path in ["/dev/zero", "/dev/null", "/tmp"] {
            let err = read_bounded(Path::new(path), "config", METADATA_LIMIT).unwrap_err();
            assert!(
                matches!(err, StoreError::NotRegular { .. }),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn a_file_over_its_limit_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; 100]).unwrap();
        let err = read_bounded(&path, "config", 99).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooLarge {
                    size: 100,
                    limit: 99,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read_bounded(&path, "config", 100).unwrap().len(), 100);
    }
}
