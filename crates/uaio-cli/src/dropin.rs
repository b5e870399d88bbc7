//! The drop-in library, carried inside this binary, and `uaio run`.
//!
//! `build.rs` builds the `uaio-capi` cdylib (soname `libaio.so.1`) and this
//! module includes its bytes. Before the program starts, the library is
//! written once to a private directory named after a hash of its bytes:
//! `$XDG_RUNTIME_DIR/uaio-<hash>/`, else `$TMPDIR` (or `/tmp`)
//! `/uaio-<uid>-<hash>/`, else `~/.cache/uaio/<hash>/` (the first whose file
//! system allows executable mappings). The directory is created with mode
//! 0700 and must be a directory owned by this user that nobody else can
//! write to; the file is written under a temporary name and renamed into
//! place, so a concurrent `uaio run` never sees half a library. The
//! directory holds `libaio.so.1` and `libaio.so.1t64` (a symbolic link to
//! it: programs linked on distributions after the 64-bit `time_t`
//! transition ask for that name; both names are one file, so the dynamic
//! loader maps it once).
//!
//! A file, not a memfd: `LD_PRELOAD` and `LD_LIBRARY_PATH` must stay valid
//! in every child the program forks and executes, whatever descriptors it
//! closes.
//!
//! `UAIO_LIBAIO=PATH` replaces the built-in library: the directory then
//! holds the two names as symbolic links to `PATH`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

/// The library built by `build.rs`.
static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libaio.so"));

/// A hash of [`LIBRARY`] (16 hex digits), computed by `build.rs`.
const LIBRARY_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/libaio.hash"));

/// The names the library is installed under.
pub const NAMES: [&str; 2] = ["libaio.so.1", "libaio.so.1t64"];

/// Size in bytes and hash of the built-in library.
pub fn built_in() -> (usize, &'static str) {
    (LIBRARY.len(), LIBRARY_HASH)
}

/// An installed library: the directory to put first on `LD_LIBRARY_PATH`
/// and the file to preload.
#[derive(Debug)]
pub struct Installed {
    /// Holds both [`NAMES`].
    pub dir: PathBuf,
    /// The library itself (a regular file, symbolic links resolved).
    pub file: PathBuf,
}

/// Installs the library (built-in or `UAIO_LIBAIO`), or says why not.
pub fn install() -> Result<Installed, String> {
    match std::env::var_os("UAIO_LIBAIO") {
        Some(p) if !p.is_empty() => {
            let file =
                Path::new(&p).canonicalize().map_err(|e| format!("UAIO_LIBAIO={}: {e}", Path::new(&p).display()))?;
            // Refused here rather than by the dynamic loader in the
            // program (which then failed with its own words, or ran without
            // it).
            if let Err(why) = shared_library(&file) {
                return Err(format!("UAIO_LIBAIO={}: {why}", Path::new(&p).display()));
            }
            let dir = private_dir(&format!("link-{:016x}", fnv1a(file.as_os_str().as_encoded_bytes())))?;
            for name in NAMES {
                place_link(&dir, name, &file)?;
            }
            Ok(Installed { dir, file })
        }
        _ => {
            let dir = private_dir(LIBRARY_HASH)?;
            let file = dir.join(NAMES[0]);
            place_file(&file, LIBRARY)?;
            place_link(&dir, NAMES[1], Path::new(NAMES[0]))?;
            Ok(Installed { dir, file })
        }
    }
}

/// The ELF header fields `uaio run` looks at: the first 64 bytes.
fn elf_header(path: &Path) -> std::io::Result<Option<[u8; 64]>> {
    use std::io::Read;
    let mut h = [0u8; 64];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut h)?;
    Ok((n == 64 && h[..4] == *b"\x7fELF").then_some(h))
}

/// Whether `file` is a 64-bit little-endian ELF shared object, as a
/// replacement of the library must be.
fn shared_library(file: &Path) -> Result<(), String> {
    if !file.is_file() {
        return Err("not a regular file".into());
    }
    let h = elf_header(file).map_err(|e| e.to_string())?.ok_or("not an ELF file")?;
    // ELFCLASS64, ELFDATA2LSB, ET_DYN.
    if h[4] != 2 || h[5] != 1 || u16::from_le_bytes([h[16], h[17]]) != 3 {
        return Err("not a 64-bit little-endian ELF shared object".into());
    }
    Ok(())
}

/// Why the program at `path` will not load the drop-in library, if it is
/// an ELF program that will not: a static program (no dynamic loader), a
/// 32-bit one (the 64-bit library is skipped), or a set-user or set-group
/// ID one the loader runs in secure mode (it ignores `LD_LIBRARY_PATH` and
/// `LD_PRELOAD`). Such a program runs on the kernel's AIO; `uaio run` says
/// so rather than let it pass for a run on uaio.
fn why_not_loaded(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let h = elf_header(path).ok()??;
    if h[4] == 1 {
        return Some("is a 32-bit program (uaio's library is 64-bit)".into());
    }
    if h[4] != 2 || h[5] != 1 {
        return None;
    }
    let md = std::fs::metadata(path).ok()?;
    // SAFETY: getuid(2) and getgid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if (md.mode() & 0o4000 != 0 && md.uid() != uid) || (md.mode() & 0o2000 != 0 && md.gid() != gid) {
        return Some(
            "is set-user or set-group ID: the dynamic loader ignores LD_LIBRARY_PATH and LD_PRELOAD for it".into(),
        );
    }
    // Program headers: is there a PT_INTERP (a dynamic loader)?
    let phoff = u64::from_le_bytes(h[0x20..0x28].try_into().ok()?);
    let (phentsize, phnum) =
        (u16::from_le_bytes([h[0x36], h[0x37]]) as u64, u16::from_le_bytes([h[0x38], h[0x39]]) as u64);
    let f = std::fs::File::open(path).ok()?;
    let mut interp = false;
    for i in 0..phnum {
        let mut t = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut t, phoff + i * phentsize).ok()?;
        interp |= u32::from_le_bytes(t) == 3;
    }
    (!interp).then(|| "is statically linked (no dynamic loader loads libraries into it)".into())
}

/// The program `cmd` names, found on `PATH` as `exec` finds it.
fn program_path(cmd: &OsString) -> Option<PathBuf> {
    let p = Path::new(cmd);
    if p.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Some(p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(p)).find(|c| c.is_file())
}

/// `uaio lib`: installs the library and prints its directory (or file).
pub fn print_location(file: bool) -> ExitCode {
    match install() {
        Ok(i) => {
            println!("{}", if file { i.file.display() } else { i.dir.display() });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uaio lib: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bit `fd` is set when standard descriptor `fd` (0, 1, 2) was closed as
/// the process started. Rust's runtime then opens `/dev/null` on it before
/// `main`, and a program `uaio run` starts would find that file where it
/// would find nothing without uaio.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Notes which standard descriptors are closed (in [`CLOSED_AT_START`]);
/// runs from `.init_array`, before Rust's runtime fills them.
extern "C" fn note_closed_standard_descriptors() {
    let mut closed = 0;
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the number is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STANDARD_DESCRIPTORS: extern "C" fn() = note_closed_standard_descriptors;

/// Closes again, in the program's process before it is executed, the
/// standard descriptors that were closed when `uaio` started.
fn keep_closed_standard_descriptors(c: &mut std::process::Command) {
    let closed = CLOSED_AT_START.load(Ordering::Relaxed);
    if closed == 0 {
        return;
    }
    // SAFETY: between fork and exec, only close(2), which is
    // async-signal-safe, of numbers this process's runtime filled.
    unsafe {
        c.pre_exec(move || {
            for fd in 0..3 {
                if closed & (1 << fd) != 0 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

/// `uaio run`: executes `command` with the library first on the library
/// path and preloaded; `backend` sets `UAIO_BACKEND`. Returns only if the
/// program could not be started, except with `stats` (`Some`, with the
/// JSON file to write if any): the program then runs as a child, and its
/// exit status is returned after the statistics are printed.
pub fn run(backend: Option<&str>, verbose: bool, stats: Option<Option<PathBuf>>, command: &[OsString]) -> ExitCode {
    let lib = match install() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("uaio run: cannot install the drop-in library: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `first`, then the entries already there but `first` (a `uaio run`
    // inside another would list it twice): colon-separated, and for
    // LD_PRELOAD also space-separated.
    let prepend = |var: &str, first: &Path| {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut v = first.as_os_str().as_bytes().to_vec();
        let old = std::env::var_os(var).unwrap_or_default();
        let split = |b: &u8| *b == b':' || (var == "LD_PRELOAD" && b.is_ascii_whitespace());
        for entry in old.as_bytes().split(split).filter(|e| !e.is_empty() && *e != first.as_os_str().as_bytes()) {
            v.push(b':');
            v.extend_from_slice(entry);
        }
        OsString::from_vec(v)
    };
    let (cmd, args) = command.split_first().expect("clap requires a program");
    let mut c = std::process::Command::new(cmd);
    c.args(args);
    keep_closed_standard_descriptors(&mut c);
    c.env("LD_LIBRARY_PATH", prepend("LD_LIBRARY_PATH", &lib.dir));
    c.env("LD_PRELOAD", prepend("LD_PRELOAD", &lib.file));
    if let Some(b) = backend {
        c.env("UAIO_BACKEND", b);
        if b == "uring" && !uaio::io_uring_available() {
            // The library then takes the thread pool by itself: say so,
            // rather than let the program run on another backend than asked.
            eprintln!("uaio run: io_uring is not available to this process: the program runs on the thread pool");
        }
    }
    let not_loaded = program_path(cmd).as_deref().and_then(why_not_loaded);
    if let Some(why) = &not_loaded {
        eprintln!(
            "uaio run: {} {why}: uaio's library cannot be used, and the program runs on the kernel's AIO",
            Path::new(cmd).display()
        );
    }
    if verbose && not_loaded.is_none() {
        // One line, in this form (scripts/fio-compare.sh looks for it). A
        // value of UAIO_BACKEND the library does not know leaves it to
        // choose.
        let env = std::env::var("UAIO_BACKEND").ok().filter(|b| !b.is_empty());
        let named = match backend.or(env.as_deref()) {
            None => "auto".to_string(),
            Some(b @ ("uring" | "io_uring" | "threads" | "thread" | "pool")) => b.to_string(),
            Some(b) => format!("auto: UAIO_BACKEND={b} names none"),
        };
        eprintln!("uaio run: {} with {} (backend {named})", Path::new(cmd).display(), lib.file.display());
    }
    if let Some(json) = stats {
        return run_with_stats(c, cmd, json.as_deref());
    }
    let err = c.exec();
    eprintln!("uaio run: {}: {err}", Path::new(cmd).display());
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

/// Runs `c` (the program `cmd`) as a child with `UAIO_STATS` set, waits for
/// it, prints the statistics and returns its exit status; a program killed
/// by a signal is reported the same way: `uaio` then ends by that signal
/// (without a second core dump), as if the program had run directly
/// (before, it exited with 128 + the signal, which a shell or a parent's
/// `waitpid` cannot tell from an exit). The program is killed if `uaio`
/// dies first (`PR_SET_PDEATHSIG`): it no longer runs on unwatched.
fn run_with_stats(mut c: std::process::Command, cmd: &OsString, json: Option<&Path>) -> ExitCode {
    if let Some(out) = json {
        // Found out before the program runs, not after it (its records
        // would be lost).
        if let Err(e) = std::fs::OpenOptions::new().append(true).create(true).open(out) {
            eprintln!("uaio run --stats-json: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    let file = match crate::runstats::record_file() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("uaio run --stats: {e}");
            return ExitCode::FAILURE;
        }
    };
    c.env("UAIO_STATS", &file);
    let forwarded = forward_signals(&mut c);
    let status = match c.spawn() {
        Ok(mut child) => {
            let pid = child.id() as libc::pid_t;
            std::thread::spawn(move || forward_to(pid, forwarded));
            child.wait()
        }
        Err(e) => Err(e),
    };
    let status = match status {
        Ok(s) => s,
        Err(err) => {
            eprintln!("uaio run: {}: {err}", Path::new(cmd).display());
            return ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    if let Err(e) = crate::runstats::report(&file, json, cmd) {
        eprintln!("uaio run --stats: {e}");
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => {
            if status.core_dumped() {
                let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                // SAFETY: setrlimit(2) with a valid struct: the program
                // dumped its core already.
                unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
            }
            crate::interrupt::die_of(sig)
        }
        _ => ExitCode::FAILURE,
    }
}

/// While `uaio run --stats` waits for its program, signals meant to end
/// it reach the program instead: SIGTERM and SIGHUP are blocked here and
/// passed on by [`forward_to`]; SIGINT and SIGQUIT, which a terminal sends
/// to the program as well, are ignored here. The program starts with the
/// default disposition and mask for all four. Returns the blocked set.
fn forward_signals(c: &mut std::process::Command) -> libc::sigset_t {
    use std::os::unix::process::CommandExt;
    // SAFETY: sigset manipulation on a local set, a mask change for this
    // thread (and the forwarder it starts, which inherits it), and two
    // dispositions set to SIG_IGN.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        set
    };
    // SAFETY: getpid(2) cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: between fork and exec, only async-signal-safe calls: the
    // dispositions back to default and the mask emptied (ignored signals
    // and the mask survive exec), and the death signal set (it survives
    // exec too), then checked against a parent gone before it was set.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(128 + libc::SIGKILL);
            }
            Ok(())
        });
    }
    set
}

/// Passes every signal of `set` this process receives on to `pid`.
fn forward_to(pid: libc::pid_t, set: libc::sigset_t) {
    loop {
        let mut sig = 0;
        // SAFETY: sigwait on a set blocked in this thread; kill of our child.
        unsafe {
            if libc::sigwait(&set, &mut sig) == 0 {
                libc::kill(pid, sig);
            }
        }
    }
}

/// The first usable private directory for `name`, created if needed.
fn private_dir(name: &str) -> Result<PathBuf, String> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    // A relative path would name another place in a child that changes
    // directory (the variables must hold absolute paths; others are
    // ignored, as the XDG specification says).
    let absolute = |v: &str| std::env::var_os(v).map(PathBuf::from).filter(|d| d.is_absolute());
    // (directory, whether its parent may be created)
    let mut candidates = Vec::new();
    if let Some(d) = absolute("XDG_RUNTIME_DIR") {
        candidates.push((d.join(format!("uaio-{name}")), false));
    }
    let tmp = absolute("TMPDIR").unwrap_or_else(|| "/tmp".into());
    candidates.push((tmp.join(format!("uaio-{uid}-{name}")), false));
    if let Some(h) = absolute("HOME") {
        candidates.push((h.join(".cache/uaio").join(name), true));
    }
    let mut why = Vec::new();
    for (dir, make_parent) in candidates {
        if make_parent {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent);
            }
        }
        match usable(&dir, uid) {
            Ok(()) => return Ok(dir),
            Err(e) => why.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(why.join("; "))
}

/// Creates `dir` (mode 0700) unless it exists, and checks that it is a
/// directory of `uid` that nobody else may write to, on a file system that
/// allows executable mappings.
fn usable(dir: &Path, uid: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.to_string()),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !m.is_dir() {
        return Err("not a directory".into());
    }
    if m.uid() != uid {
        return Err(format!("owned by uid {}, not {uid}", m.uid()));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Err(format!("writable by others (mode {:o})", m.permissions().mode() & 0o7777));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs writes one struct into `st`; `c` is a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 && st.f_flag & libc::ST_NOEXEC != 0 {
        return Err("its file system is mounted noexec".into());
    }
    Ok(())
}

/// Makes `path` hold `bytes` (mode 0755), replacing it atomically if it
/// holds anything else.
fn place_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64)
        && std::fs::read(path).is_ok_and(|old| old == bytes)
    {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

/// Makes `dir/name` a symbolic link to `target`, replacing atomically
/// whatever is there if it differs.
fn place_link(dir: &Path, name: &str, target: &Path) -> Result<(), String> {
    let path = dir.join(name);
    if std::fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// FNV-1a, 64 bits (the same hash `build.rs` names the library with).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_library_is_an_elf_shared_object_named_by_its_hash() {
        assert_eq!(&LIBRARY[..4], b"\x7fELF");
        assert_eq!(LIBRARY_HASH, format!("{:016x}", fnv1a(LIBRARY)));
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        let base = std::env::temp_dir().join(format!("uaio-dropin-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let good = base.join("good");
        usable(&good, uid).unwrap();
        assert_eq!(std::fs::metadata(&good).unwrap().permissions().mode() & 0o777, 0o700);
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(usable(&open, uid).unwrap_err().contains("writable by others"));
        let link = base.join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(usable(&link, uid).is_err(), "a symbolic link is not a private directory");
        assert!(usable(&good, uid + 1).unwrap_err().contains("owned by uid"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn placing_twice_keeps_one_file_and_a_link_to_it() {
        let dir = std::env::temp_dir().join(format!("uaio-place-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join(NAMES[0]);
        for content in [&b"one"[..], b"one", b"two"] {
            place_file(&file, content).unwrap();
            place_link(&dir, NAMES[1], Path::new(NAMES[0])).unwrap();
            assert_eq!(std::fs::read(dir.join(NAMES[1])).unwrap(), content);
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, NAMES, "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
