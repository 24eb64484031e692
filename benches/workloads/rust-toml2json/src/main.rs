//! toml 1.2.1's `examples/toml2json.rs` (MIT OR Apache-2.0), with a `--version` that prints
//! the label the bench's one-line change rewrites in the toml crate.

use std::env;
use std::io;
use std::io::prelude::*;

use serde_json::Value as Json;
use toml::Value as Toml;

fn main() {
    let mut args = env::args();
    if args.len() == 2 && env::args().nth(1).as_deref() == Some("--version") {
        // The bench's one-line change rewrites this label inside the toml crate.
        println!("toml2json {}", toml::BENCH_LABEL);
        return;
    }
    let input = if args.len() > 1 {
        let name = args.nth(1).unwrap();
        std::fs::read_to_string(name).unwrap()
    } else {
        let mut input = String::new();
        io::stdin().read_to_string(&mut input).unwrap();
        input
    };

    match input.parse::<toml::Table>() {
        Ok(table) => {
            let json = convert(Toml::Table(table));
            println!("{}", serde_json::to_string_pretty(&json).unwrap());
        }
        Err(error) => println!("failed to parse TOML: {error}"),
    }
}

fn convert(toml: Toml) -> Json {
    match toml {
        Toml::String(s) => Json::String(s),
        Toml::Integer(i) => Json::Number(i.into()),
        Toml::Float(f) => {
            let n = serde_json::Number::from_f64(f).expect("float infinite and nan not allowed");
            Json::Number(n)
        }
        Toml::Boolean(b) => Json::Bool(b),
        Toml::Array(arr) => Json::Array(arr.into_iter().map(convert).collect()),
        Toml::Table(table) => {
            Json::Object(table.into_iter().map(|(k, v)| (k, convert(v))).collect())
        }
        Toml::Datetime(dt) => Json::String(dt.to_string()),
    }
}
