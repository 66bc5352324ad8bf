//! Builds the dashboard's CSS: the stylesheet source in `style/tenki.css` (theme and base layer),
//! then the utilities for the Tailwind classes used in `app/src` (encre-css, a
//! Tailwind-compatible generator in Rust: no Node in the build). The server embeds the result.

use std::fs;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let app_src = manifest_dir.join("../app/src");
    let source = manifest_dir.join("../style/tenki.css");
    println!("cargo:rerun-if-changed={}", source.display());
    let base = fs::read_to_string(&source)?;
    println!("cargo:rerun-if-changed={}", app_src.display());
    let mut sources = Vec::new();
    collect_rust_files(&app_src, &mut sources)?;
    let mut contents = Vec::new();
    for path in &sources {
        println!("cargo:rerun-if-changed={}", path.display());
        contents.push(fs::read_to_string(path)?);
    }
    let config = encre_css::Config::default();
    let utilities = encre_css::generate(contents.iter().map(String::as_str), &config);
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("tenki.css");
    fs::write(out, format!("{base}\n{utilities}"))?;
    Ok(())
}

fn collect_rust_files(dir: &Path, into: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_rust_files(&path, into)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
    Ok(())
}
