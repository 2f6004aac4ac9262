//! The README's recipe for building and linking a C program, run exactly
//! as written (issue 10, item 14): the `sh` block of its "Building and
//! linking a C program" section, read from README.md, runs with `sh -e`
//! in a tree that looks like a fresh checkout, and the program it builds
//! must start and run to its end.
//!
//! The tree is the repository's top-level entries as symlinks (so the
//! build sees the real sources) with its `target` a link to the test
//! target dir: the recipe's `cargo build --release` builds the library
//! of the tree (a package at another path, so compiled for itself) but
//! takes the release build of the dependencies that `scripts/test.sh`'s
//! release pass makes (or made) there, instead of compiling them a
//! second time. It does not wait for the outer `cargo test`, whose
//! build lock is on its own profile's directory (`debug`; this suite
//! runs only in the debug pass). Nothing in the tree is prepared for the
//! recipe (any SONAME link from an earlier run is removed first), and the
//! test support code that links C programs for the other tests is not
//! used.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The recipe builds the library in release mode; a first build may be
/// slow on a busy machine.
const LIMIT: Duration = Duration::from_secs(1200);

/// The first ```sh block after the heading `heading` in `text`.
fn sh_block_after(text: &str, heading: &str) -> Option<String> {
    let rest = &text[text.find(heading)? + heading.len()..];
    let start = rest.find("```sh\n")? + "```sh\n".len();
    let end = start + rest[start..].find("```")?;
    Some(rest[start..end].to_string())
}

/// A tree like a fresh checkout of the repository, its `target` a link to
/// `target`.
fn checkout_like(root: &Path, tree: &Path, target: &Path) {
    std::fs::create_dir_all(tree).unwrap();
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), tree.join(&name)).unwrap();
    }
    std::fs::create_dir_all(target).unwrap();
    std::os::unix::fs::symlink(target, tree.join("target")).unwrap();
    // Whatever an earlier run made besides the build is gone.
    if let Ok(dir) = std::fs::read_dir(target.join("release")) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("libstagebus.so.") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}

#[test]
fn readme_c_recipe_builds_a_program_that_starts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let recipe = sh_block_after(&readme, "### Building and linking a C program")
        .expect("README.md has the section with an sh block");
    assert!(recipe.contains("-lstagebus"), "{recipe}");

    // CARGO_TARGET_TMPDIR is <target>/tmp, wherever the target dir is.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target: PathBuf = tmp.parent().unwrap_or(tmp).to_path_buf();
    // Always the same path: cargo keys its build on the package's path,
    // so a fixed one lets later runs reuse the first run's build.
    let tree = tmp.join("readme-recipe-tree");
    let _ = std::fs::remove_dir_all(&tree);
    checkout_like(root, &tree, &target);

    // The user's shell, not the outer build's: no redirected target dir,
    // no flags meant for the tests' build.
    let mut child = Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(&recipe)
        .current_dir(&tree)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the recipe ran longer than {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "the README's recipe failed ({status}):\n{recipe}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("stagebus {}", env!("CARGO_PKG_VERSION")))
            && stdout.contains("a broker listened on tcp://127.0.0.1:"),
        "the program did not run to its end:\n{stdout}\n{stderr}"
    );
}
