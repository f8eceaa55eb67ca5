//! The one way edgerun writes a file. A regular target is written under an unpredictable
//! temporary name created exclusively in its directory, fsynced, renamed over the target and
//! the directory fsynced: a failure (a full disk, a crash, an error half-way) leaves the old
//! file or nothing, never a truncated one under the final name. A symlink is followed to its
//! target, so the link stays a link. An existing target that is not a regular file (a device,
//! a FIFO, a socket) is written in place, since renaming over `/dev/null` would replace the
//! device with a file.
//!
//! [`check_distinct`] refuses a set of outputs in which two name the same file, or one names
//! a file the run reads.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// Symlinks followed before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// A file being written. Dropping it without [`OutputFile::commit`] removes the temporary
/// file and leaves the target as it was.
pub struct OutputFile {
    target: PathBuf,
    out: BufWriter<Sink>,
}

enum Sink {
    /// A temporary file in the target's directory, renamed over it on commit.
    Replace(tempfile::NamedTempFile),
    /// A device or FIFO written where it is.
    InPlace(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Replace(f) => f.write(buf),
            Sink::InPlace(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Replace(f) => f.flush(),
            Sink::InPlace(f) => f.flush(),
        }
    }
}

impl OutputFile {
    /// Prepares to write `path`. Fails at once on a directory, a missing parent or a loop of
    /// symlinks, before any work that would be lost.
    pub fn create(path: &Path) -> Result<Self> {
        let target = resolve_links(path)?;
        let sink = match std::fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                return Err(StoreError::io(
                    &target,
                    std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
                ))
            }
            Ok(meta) if !meta.is_file() => Sink::InPlace(
                OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| StoreError::io(&target, e))?,
            ),
            Ok(meta) => Sink::Replace(temporary(&target, Some(meta.permissions().mode()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Sink::Replace(temporary(&target, None)?)
            }
            Err(e) => return Err(StoreError::io(&target, e)),
        };
        Ok(Self {
            target,
            out: BufWriter::with_capacity(1 << 20, sink),
        })
    }

    /// The file that commit replaces (the target of any symlink given).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, fsyncs and moves the file into place, then fsyncs its directory.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let io = |e| StoreError::io(&target, e);
        let sink = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        match sink {
            Sink::InPlace(_) => Ok(()),
            Sink::Replace(temp) => {
                temp.as_file().sync_all().map_err(io)?;
                temp.persist(&target).map_err(|e| io(e.error))?;
                sync_dir(parent_of(&target))
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes `bytes` to `path` through an [`OutputFile`].
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let mut file = OutputFile::create(path)?;
    file.write_all(bytes.as_ref())
        .map_err(|e| StoreError::io(file.target().to_path_buf(), e))?;
    file.commit()
}

/// Fsyncs a directory so a rename inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file beside `target`, created with O_EXCL under a random name. `mode` keeps an
/// existing target's permissions; a new file gets 0666 less the umask, as `File::create` would.
fn temporary(target: &Path, mode: Option<u32>) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(target);
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666));
    let temp = builder
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| StoreError::io(temp.path(), e))?;
    }
    Ok(temp)
}

/// Follows symlinks at `path` (dangling ones too) to the path a write should replace.
pub fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current).map_err(|e| StoreError::io(&current, e))?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent_of(&current).join(link)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(StoreError::io(&current, e)),
        }
    }
    Err(StoreError::io(
        path,
        std::io::Error::other(format!("more than {MAX_LINKS} levels of symlinks")),
    ))
}

/// What a path names, for telling whether two paths are one file: an existing file by device
/// and inode, a file still to be created by its canonical directory and name.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    ToCreate(PathBuf),
    /// A device, FIFO or socket: several outputs may share one (`/dev/null`).
    Shared,
}

fn identity(path: &Path) -> Result<Identity> {
    let target = resolve_links(path)?;
    match std::fs::metadata(&target) {
        Ok(meta) if meta.is_file() || meta.is_dir() => Ok(Identity::Inode(meta.dev(), meta.ino())),
        Ok(_) => Ok(Identity::Shared),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = std::fs::canonicalize(parent_of(&target))
                .map_err(|e| StoreError::io(parent_of(&target), e))?;
            Ok(Identity::ToCreate(
                dir.join(target.file_name().unwrap_or_default()),
            ))
        }
        Err(e) => Err(StoreError::io(&target, e)),
    }
}

/// One path of a command, with the flag that named it for the message.
#[derive(Clone, Debug)]
pub struct NamedPath<'a> {
    pub flag: &'a str,
    pub path: &'a Path,
}

/// Refuses `outputs` in which two name the same file, or one names a file of `inputs` (a
/// model's own files, an input tensor file, a profile). Devices and FIFOs may be shared.
pub fn check_distinct(outputs: &[NamedPath], inputs: &[NamedPath]) -> Result<()> {
    let ids = outputs
        .iter()
        .map(|o| identity(o.path))
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in outputs.iter().enumerate() {
        if ids[i] == Identity::Shared {
            continue;
        }
        if let Some(b) = outputs[..i].iter().zip(&ids).find(|(_, id)| **id == ids[i]) {
            return Err(StoreError::OutputClash {
                path: a.path.to_path_buf(),
                flag: a.flag.to_string(),
                other: b.0.flag.to_string(),
            });
        }
        for input in inputs {
            if let Ok(Identity::Inode(dev, ino)) = identity(input.path) {
                if ids[i] == Identity::Inode(dev, ino) {
                    return Err(StoreError::OutputClash {
                        path: a.path.to_path_buf(),
                        flag: a.flag.to_string(),
                        other: input.flag.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_a_regular_file_whole_and_keeps_its_mode() {
        let d = dir();
        let path = d.path().join("out.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_and_no_temporary() {
        let d = dir();
        let path = d.path().join("out.bin");
        std::fs::write(&path, "old").unwrap();
        let mut file = OutputFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_planted_link_at_the_old_temporary_name_is_not_followed() {
        let d = dir();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = d.path().join("out.safetensors");
        std::os::unix::fs::symlink(&victim, d.path().join("out.safetensors.tmp")).unwrap();
        write_file(&path, b"data").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn a_symlink_target_is_written_and_the_link_kept() {
        let d = dir();
        let real = d.path().join("real");
        let link = d.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        write_file(&link, b"through").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"through");
    }

    #[test]
    fn a_device_is_written_in_place() {
        write_file(Path::new("/dev/null"), b"gone").unwrap();
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(!meta.is_file(), "/dev/null must stay a device");
    }

    #[test]
    fn a_full_device_reports_the_error() {
        let err = write_file(Path::new("/dev/full"), vec![0u8; 1 << 21]).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
    }

    #[test]
    fn a_directory_is_refused() {
        let d = dir();
        assert!(OutputFile::create(d.path()).is_err());
    }

    #[test]
    fn link_loops_are_refused() {
        let d = dir();
        let a = d.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        assert!(write_file(&a, b"x").is_err());
    }

    #[test]
    fn clashing_outputs_and_inputs_are_refused() {
        let d = dir();
        let out = d.path().join("out");
        let same = d.path().join("./out");
        let input = d.path().join("in");
        std::fs::write(&input, "x").unwrap();
        let named = |flag, path| NamedPath { flag, path };
        assert!(check_distinct(&[named("--output", &out), named("--report", &same)], &[]).is_err());
        assert!(check_distinct(&[named("--output", &input)], &[named("--input", &input)]).is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        assert!(check_distinct(&[named("--output", &link)], &[named("--input", &input)]).is_err());
        check_distinct(
            &[
                named("--output", &out),
                named("--report", Path::new("/dev/null")),
            ],
            &[named("--input", &input)],
        )
        .unwrap();
        check_distinct(
            &[
                named("--output", Path::new("/dev/null")),
                named("--report", Path::new("/dev/null")),
            ],
            &[],
        )
        .unwrap();
    }
}
