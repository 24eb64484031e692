//! Image references as the engine reads them (Docker's reference grammar, distribution's
//! `reference` package): `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`. A name the engine would refuse
//! is refused here, at its spot in the manifest, before anything runs.

/// The longest name (host and path) the engine takes.
const MAX_NAME: usize = 255;
/// The longest tag.
const MAX_TAG: usize = 128;

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// An image to run or build on: a tag or a digest may pin it.
    Image,
    /// A tag to give the image we build: no digest, and not 64 hex digits (an image id).
    Tag,
}

/// Why the engine would refuse `text` as a reference for `use_`; `None` when it takes it.
pub(crate) fn reference_problem(text: &str, use_: Use) -> Option<String> {
    if text.is_empty() {
        return Some("is empty".into());
    }
    let (named, digest) = match text.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (text, None),
    };
    if let Some(digest) = digest {
        if use_ == Use::Tag {
            return Some("carries a digest (`@…`), which a tag cannot".into());
        }
        if let Some(problem) = digest_problem(digest) {
            return Some(problem);
        }
    }
    let slash = named.rfind('/');
    let (name, tag) = match named.rfind(':') {
        Some(colon) if slash.is_none_or(|s| colon > s) => {
            (&named[..colon], Some(&named[colon + 1..]))
        }
        _ => (named, None),
    };
    if let Some(tag) = tag {
        if let Some(problem) = tag_problem(tag) {
            return Some(problem);
        }
    }
    if name.len() > MAX_NAME {
        return Some(format!("has a name longer than {MAX_NAME} characters"));
    }
    let (domain, path) = split_domain(name);
    if let Some(domain) = domain {
        if !is_domain(domain) {
            return Some(format!(
                "has the registry `{domain}`, which is not HOST or HOST:PORT"
            ));
        }
    }
    if let Some(problem) = path_problem(path) {
        return Some(problem);
    }
    if use_ == Use::Tag && domain.is_none() && path.len() == 64 && is_hex(path) {
        return Some("is 64 hex digits, which the engine takes for an image id".into());
    }
    None
}

/// Whether the reference `text` names its registry (`registry.example.com/app:1`,
/// `localhost:5000/app`), as a push needs; `app:1` is Docker Hub's, by the docker CLI's rule.
pub(crate) fn names_registry(text: &str) -> bool {
    split_domain(text).0.is_some()
}

/// The registry part of a name, when its first component looks like one (a `.`, a `:`,
/// `localhost`, or an uppercase letter, as the engine decides), and the path.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host` or `host:port`; a host is DNS labels or a bracketed IPv6 address.
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            _ => ("x", after.strip_prefix(':')),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    port_ok && host.split('.').all(label_ok)
}

/// Path components: lowercase letters and digits, separated inside by `.`, `_`, `__` or `-`s.
fn path_problem(path: &str) -> Option<String> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("has uppercase letters; repository names are lowercase".into());
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Some(if component.is_empty() {
                "has an empty name component (a leading, trailing or doubled `/`)".into()
            } else {
                format!(
                    "has the name component `{component}`: lowercase letters and digits, joined by one `.`, one or two `_`, or `-`s"
                )
            });
        }
    }
    None
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(|b| alnum(*b)) || !bytes.last().is_some_and(|b| alnum(*b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(dashes || matches!(separator, "." | "_" | "__")) {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn tag_problem(tag: &str) -> Option<String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    (!ok).then(|| {
        format!(
            "has the tag {tag:?}: up to {MAX_TAG} letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        )
    })
}

/// `ALGORITHM:HEX`, e.g. `sha256:` and 64 hex digits.
fn digest_problem(digest: &str) -> Option<String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Some(format!(
            "has the digest {digest:?}, which is not ALGORITHM:HEX"
        ));
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        c.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    let length_ok = match algorithm {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => hex.len() >= 32,
    };
    (!(algorithm_ok && length_ok && is_hex(hex))).then(|| {
        format!("has the digest {digest:?}, which is not ALGORITHM:HEX (sha256: and 64 hex digits)")
    })
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How to write a reference: the lowercase spelling when that is all it takes.
pub(crate) fn reference_help(text: &str, use_: Use) -> String {
    let lower = text.to_ascii_lowercase();
    if lower != text && reference_problem(&lower, use_).is_none() {
        return format!("write {lower:?}");
    }
    match use_ {
        Use::Image => "write [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], NAME in lowercase, e.g. \"gcc:12\" or \"registry.example:5000/team/app:1.0\"".into(),
        Use::Tag => "write [HOST[:PORT]/]NAME[:TAG], NAME in lowercase, without a digest, e.g. \"app:1.0\" or \"registry.example:5000/team/app:1.0\"".into(),
    }
}

/// The one spelling of a tag the engine stores: `app` is `docker.io/library/app:latest`, so
/// two spellings of one tag are found to be one.
pub(crate) fn canonical_tag(tag: &str) -> String {
    let slash = tag.rfind('/');
    let tagged = tag.rfind(':').is_some_and(|c| slash.is_none_or(|s| c > s));
    let (domain, path) = split_domain(tag);
    let domain = match domain {
        None | Some("index.docker.io") => "docker.io",
        Some(domain) => domain,
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    format!("{domain}/{path}{}", if tagged { "" } else { ":latest" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_the_engine_takes() {
        for good in [
            "app",
            "app:1.0",
            "app:_x",
            "team/app:v1-rc.2",
            "a--b",
            "a__b",
            "a.b_c-d",
            "localhost/app",
            "localhost:5000/app:1",
            "Registry.Example:5000/team/app",
            "registry.example/a/b/c:latest",
            "[::1]:5000/app",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(reference_problem(good, Use::Image), None, "{good:?}");
        }
        let pinned = format!("app@{SHA}");
        assert_eq!(reference_problem(&pinned, Use::Image), None);
        assert_eq!(reference_problem(&format!("app:1@{SHA}"), Use::Image), None);
    }

    #[test]
    fn references_the_engine_refuses() {
        for (bad, why) in [
            ("", "is empty"),
            ("App:1", "uppercase"),
            ("app:", "the tag \"\""),
            ("app:-x", "the tag \"-x\""),
            ("app:.x", "the tag \".x\""),
            ("app:a b", "the tag \"a b\""),
            ("a-.b", "`a-.b`"),
            ("a___b", "`a___b`"),
            ("app/", "empty name component"),
            ("/app", "empty name component"),
            ("a//b", "empty name component"),
            ("-app", "`-app`"),
            ("app!", "`app!`"),
            ("registry.example:port/app", "registry"),
            ("-bad.example/app", "registry"),
            ("app@sha256:abc", "digest"),
            ("app@nohex", "digest"),
        ] {
            let problem = reference_problem(bad, Use::Image).unwrap_or_default();
            assert!(problem.contains(why), "{bad:?}: {problem:?}");
        }
        let long_tag = format!("app:{}", "x".repeat(129));
        assert!(reference_problem(&long_tag, Use::Image).is_some());
        let long_name = "a".repeat(256);
        assert!(reference_problem(&long_name, Use::Image).is_some());
    }

    #[test]
    fn spellings_of_one_tag_are_one() {
        for same in [
            "app",
            "app:latest",
            "docker.io/app",
            "docker.io/library/app:latest",
            "index.docker.io/library/app",
        ] {
            assert_eq!(
                canonical_tag(same),
                "docker.io/library/app:latest",
                "{same:?}"
            );
        }
        assert_eq!(
            canonical_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(canonical_tag("team/app:1"), "docker.io/team/app:1");
        assert_ne!(canonical_tag("app:1"), canonical_tag("app:2"));
    }

    #[test]
    fn a_tag_has_no_digest_and_is_not_an_image_id() {
        let pinned = format!("app@{SHA}");
        assert!(reference_problem(&pinned, Use::Tag).is_some_and(|p| p.contains("digest")));
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(reference_problem(id, Use::Tag).is_some_and(|p| p.contains("image id")));
        assert!(reference_problem(&format!("{id}:1"), Use::Tag).is_some());
        assert_eq!(reference_problem("app:latest", Use::Tag), None);
    }
}
