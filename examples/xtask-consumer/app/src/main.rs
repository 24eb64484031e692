//! The program this example ships: it says hello, with the arguments it was given.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        println!("Hello from an image built by `cargo xtask image`!");
    } else {
        println!("Hello, {}!", args.join(" "));
    }
}
